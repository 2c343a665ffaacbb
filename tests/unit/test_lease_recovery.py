"""Dispatcher._recover_lost: a worker never takes its own lease for lost while the
outcome of that delivery is being written, even when the write lands while the query
for expired leases runs (seen in CI: a 'lost' attempt beside the delivered one, after a
database outage)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tidings.engine.dispatcher import Dispatcher, EngineOptions, _Destination
from tidings.model import LostLease


class RacingStore:
    """Answers one expired lease of worker w1, after the flush wrote its outcome."""

    def __init__(self) -> None:
        self.dispatcher: Dispatcher | None = None

    async def expired_leases(
        self, now: int, limit: int, destination_ids: Sequence[str]
    ) -> list[LostLease]:
        assert self.dispatcher is not None
        self.dispatcher._unwritten.discard("dlv_1")  # the flush, meanwhile
        return [
            LostLease(
                delivery_id="dlv_1", destination_id="dst_1", lane_key="k", attempts=1, owner="w1"
            )
        ]


async def test_an_outcome_written_during_the_query_is_not_taken_for_lost() -> None:
    store = RacingStore()
    dispatcher = Dispatcher(store=store, transports={}, options=EngineOptions(owner="w1"))  # type: ignore[arg-type]
    store.dispatcher = dispatcher
    destination: Any = object()
    dispatcher._dests["dst_1"] = _Destination(current=destination, transport=object())  # type: ignore[arg-type]
    dispatcher._unwritten.add("dlv_1")
    await dispatcher._recover_lost()
    assert dispatcher._completions == []
