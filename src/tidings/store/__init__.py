"""Persistence: one `Store` interface (base.py) and its implementations.

All SQL of the project lives in this package, under `sql/`. Nothing outside `store/`
may build or run a query.
"""

from tidings.store.base import Conflict, NotFound, Store, StoreError, StoreUnavailable, open_store

__all__ = ["Conflict", "NotFound", "Store", "StoreError", "StoreUnavailable", "open_store"]
