"""Transports move bytes to destinations.

Each transport implements `deliver(...) -> AttemptResult`: one attempt, reported as it
happened, with no retry policy applied (the engine owns retries, leases and ordering).
A transport must never raise for a delivery failure; only programming errors escape.
"""
