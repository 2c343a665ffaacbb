"""store.rows: the pure helpers every SQL store shares."""

from __future__ import annotations

import itertools

import pytest

from tidings.model import DELIVERY_STATES
from tidings.store.rows import deliveries_query
from tidings.store.sql import load_queries

DESTINATIONS = (None, "dst_a")
STATES = (None, *DELIVERY_STATES)
EVENTS = (None, "evt_a")


@pytest.mark.parametrize(
    ("destination_id", "state", "event_id"), list(itertools.product(DESTINATIONS, STATES, EVENTS))
)
def test_deliveries_query_picks_the_narrowest_index(
    destination_id: str | None, state: str | None, event_id: str | None
) -> None:
    chosen = deliveries_query(destination_id, state, event_id)
    if event_id is not None:
        assert chosen == "list_deliveries_of_event"
    elif destination_id is not None and state is not None:
        assert chosen == "list_deliveries_by_destination_state"
    elif state is not None and state != "delivered":
        assert chosen == "list_deliveries_by_state"
    else:
        assert chosen == "list_deliveries"


@pytest.mark.parametrize("dialect", ["sqlite", "postgres"])
def test_every_chosen_query_exists(dialect: str) -> None:
    queries = load_queries(dialect)
    for combo in itertools.product(DESTINATIONS, STATES, EVENTS):
        assert deliveries_query(*combo) in queries
