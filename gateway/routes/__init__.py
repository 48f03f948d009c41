"""Thin Litestar handlers: decode, dispatch, encode."""
