"""Agents: the agent contract and the model client it drives (``gateway.agents.base``)."""
