"""Built-in plugin: the agent types ``tool_loop`` and ``workflow``."""
