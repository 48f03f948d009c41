"""Built-in plugin: the ``config``, ``sqlite`` and ``redis`` key stores."""
