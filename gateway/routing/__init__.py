"""Routing: the strategy contract, backend state and dispatch."""
