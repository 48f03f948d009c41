"""Guardrails: checks on requests, responses and stream chunks (``gateway.guardrails.base``)."""
