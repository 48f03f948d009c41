"""Guardrails: the chain and the built-ins."""
