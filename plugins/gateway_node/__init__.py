"""Built-in plugin: the node agent's local parts: the ``fake`` GPU backend, the placement
strategies (``best_fit``, ``least_utilized``, ``priority``, ``round_robin``), the
``gateway_admin`` engine registrar, the ``node_agents`` fleet scaler, and ``gateway node``."""
