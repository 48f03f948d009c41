"""Built-in plugin: the cost policies ``price_table``, ``reject``, ``downgrade`` and
``cheapest_capable``."""
