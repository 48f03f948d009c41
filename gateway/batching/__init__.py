"""Micro-batching of embedding requests."""
