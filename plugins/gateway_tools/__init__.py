"""Built-in plugin: the tools ``calculator``, ``current_time`` and ``http_request``."""
