"""Scheduling: admission around dispatch, the scheduler contract (``gateway.scheduling.base``)."""
