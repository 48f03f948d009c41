"""Spend accounting: the cost-policy contract."""
