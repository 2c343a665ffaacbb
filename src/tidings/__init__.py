"""Tidings: durable event fan-out.

This package's public surface is the SDK (added with the client issue); everything else
is internal and may change between releases.
"""

__version__ = "0.2.0"

__all__ = ["__version__"]
