"""Built-in plugin: usage sinks (``sqlite``, ``jsonl``, ``redis``) and alert sinks (``log``,
``webhook``, ``redis``)."""
