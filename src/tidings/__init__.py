"""Tidings: durable event fan-out.

This package's public surface is the SDK: `Client`, `AsyncClient`, `Consumer`, `TidingsError` and
the Structs they answer (docs/sdk.md). Everything else (`tidings.api`, `tidings.store`,
...) is the server's and may change between releases; importing `tidings` loads none
of it.
"""

from tidings.sdk import *  # noqa: F403  (the SDK's names are this package's surface)
from tidings.sdk import __all__ as _sdk_names

__version__ = "0.2.0"

__all__ = [*_sdk_names, "__version__"]
