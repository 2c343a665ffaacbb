"""The causation tree of a correlation (pure: tidings.policy.chains)."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given
from hypothesis import strategies as st

from tidings.policy.chains import Node, causation_tree, correlation_of


@dataclass(frozen=True)
class Ev:
    id: str
    seq: int
    causation_id: str | None = None
    correlation_id: str | None = None


def shape(nodes: list[Node[Ev]]) -> list[tuple[str, int, str | None]]:
    return [(n.event.id, n.depth, n.parent_id) for n in nodes]


def test_correlation_of() -> None:
    assert correlation_of(Ev("a", 1)) == "a"
    assert correlation_of(Ev("b", 2, "a", "a")) == "a"


def test_a_tree_in_pre_order_siblings_oldest_first() -> None:
    events = [
        Ev("root", 1),
        Ev("b", 3, "root", "root"),
        Ev("a", 2, "root", "root"),
        Ev("b1", 5, "b", "root"),
        Ev("a1", 4, "a", "root"),
        Ev("a1x", 6, "a1", "root"),
    ]
    assert shape(causation_tree(events)) == [
        ("root", 0, None),
        ("a", 1, "root"),
        ("a1", 2, "a"),
        ("a1x", 3, "a1"),
        ("b", 1, "root"),
        ("b1", 2, "b"),
    ]


def test_causes_outside_the_set_and_self_causes_make_roots() -> None:
    events = [Ev("x", 1, "elsewhere", "c"), Ev("y", 2, "y", "c"), Ev("z", 3, "x", "c")]
    assert shape(causation_tree(events)) == [("x", 0, None), ("z", 1, "x"), ("y", 0, None)]


def test_a_cycle_is_broken_at_its_oldest_event() -> None:
    events = [Ev("r", 1), Ev("p", 2, "q", "r"), Ev("q", 3, "p", "r"), Ev("s", 4, "q", "r")]
    assert shape(causation_tree(events)) == [
        ("r", 0, None),
        ("p", 0, None),
        ("q", 1, "p"),
        ("s", 2, "q"),
    ]


def test_what_hangs_below_a_cycle_stays_below_it() -> None:
    # s (oldest of the three) was caused by q, which is in a cycle with p.
    events = [Ev("r", 1), Ev("s", 2, "q", "r"), Ev("p", 3, "q", "r"), Ev("q", 4, "p", "r")]
    assert shape(causation_tree(events)) == [
        ("r", 0, None),
        ("p", 0, None),
        ("q", 1, "p"),
        ("s", 2, "q"),
    ]


def test_a_very_deep_chain_needs_no_recursion() -> None:
    events = [Ev("e0", 0)] + [Ev(f"e{i}", i, f"e{i - 1}", "e0") for i in range(1, 20_000)]
    nodes = causation_tree(events[::-1])
    assert [n.depth for n in nodes] == list(range(20_000))


def test_empty() -> None:
    assert causation_tree([]) == []


@st.composite
def linked_events(draw: st.DrawFn) -> list[Ev]:
    n = draw(st.integers(0, 40))
    ids = [f"e{i}" for i in range(n)]
    seqs = draw(st.permutations(list(range(n))))
    pool = [*ids, "outside"]
    return [Ev(ids[i], seqs[i], draw(st.none() | st.sampled_from(pool)), "c") for i in range(n)]


@given(linked_events())
def test_every_event_once_parents_first(events: list[Ev]) -> None:
    nodes = causation_tree(events)
    assert sorted(n.event.id for n in nodes) == sorted(e.id for e in events)
    position = {n.event.id: i for i, n in enumerate(nodes)}
    for i, node in enumerate(nodes):
        if node.parent_id is None:
            assert node.depth == 0
            continue
        # The parent is the event's own cause, and the nearest earlier node one level up:
        # pre-order, so everything between belongs to the parent's earlier subtrees.
        assert node.parent_id == node.event.causation_id
        parent = position[node.parent_id]
        assert parent < i
        assert nodes[parent].depth == node.depth - 1
        assert all(nodes[j].depth >= node.depth for j in range(parent + 1, i))
    # Siblings, and the roots that head no cycle, come oldest first.
    by_parent: dict[str | None, list[int]] = {}
    for node in nodes:
        by_parent.setdefault(node.parent_id, []).append(node.event.seq)
    for parent_id, seqs in by_parent.items():
        if parent_id is not None:
            assert seqs == sorted(seqs)


@given(linked_events())
def test_only_the_oldest_of_a_cycle_loses_its_parent(events: list[Ev]) -> None:
    """An event whose cause is among the events keeps it as its parent, unless it is the
    oldest member of a causation cycle (which must become a root)."""
    by_id = {e.id: e for e in events}

    def cycle_through(e: Ev) -> list[Ev] | None:
        path: list[Ev] = [e]
        at = e
        while True:
            c = at.causation_id
            if c is None or c == at.id or c not in by_id:
                return None
            at = by_id[c]
            if at.id == e.id:
                return path
            if at in path:
                return None  # a cycle further up, not through e
            path.append(at)

    for node in causation_tree(events):
        e = node.event
        c = e.causation_id
        if c is None or c == e.id or c not in by_id:
            assert node.parent_id is None
            continue
        cycle = cycle_through(e)
        if cycle is not None and e == min(cycle, key=lambda x: x.seq):
            assert node.parent_id is None and node.depth == 0
        else:
            assert node.parent_id == c


@given(linked_events())
def test_without_cycles_every_cause_in_the_set_is_the_parent(events: list[Ev]) -> None:
    ids = {e.id for e in events}
    cause = {e.id: e.causation_id for e in events}

    def cyclic(start: str) -> bool:
        seen, at = set(), start
        while at in ids and at not in seen:
            seen.add(at)
            nxt = cause[at]
            if nxt is None or nxt == at:
                return False
            at = nxt
        return at in seen

    if any(cyclic(e.id) for e in events):
        return
    for node in causation_tree(events):
        c = node.event.causation_id
        expected = c if c is not None and c != node.event.id and c in ids else None
        assert node.parent_id == expected
