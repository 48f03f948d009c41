"""Built-in plugin: the ``memory`` (one process) and ``redis`` (a fleet) limiters."""
