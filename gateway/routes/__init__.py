"""HTTP routes: the ASGI front and its hot inference routes, Litestar handlers for the rest."""
