"""Response caching: the cache-backend contract."""
