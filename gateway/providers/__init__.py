"""Provider contract (concrete vendors live in ``plugins/``)."""

from gateway.providers.base import (
    BackendSpec,
    Endpoint,
    Provider,
    ProviderContext,
    ProviderFactory,
    UpstreamRequest,
    UpstreamResponse,
    UpstreamStream,
)

__all__ = [
    "BackendSpec",
    "Endpoint",
    "Provider",
    "ProviderContext",
    "ProviderFactory",
    "UpstreamRequest",
    "UpstreamResponse",
    "UpstreamStream",
]
