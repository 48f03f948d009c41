"""Governance: keys and tenants, limits, usage records and where they are written."""
