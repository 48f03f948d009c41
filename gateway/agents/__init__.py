"""Tools and agents: their contracts."""
