"""gateway: an OpenAI-compatible, plugin-based model-serving gateway.

Plugin authors need only ``from gateway import hookimpl``; see docs/plugins.md.
"""

from gateway.hookspecs import hookimpl

__version__ = "0.1.0"

__all__ = ["__version__", "hookimpl"]
