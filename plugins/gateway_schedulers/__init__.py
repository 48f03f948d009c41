"""Built-in plugin: the schedulers ``fifo``, ``priority`` and ``fair_share``."""
