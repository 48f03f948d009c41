"""The request pipeline: :class:`~gateway.pipeline.pipeline.Pipeline` runs every inference
request through its named stages; :mod:`gateway.pipeline.context` holds what a request carries
and what a client API (a dialect) provides."""
