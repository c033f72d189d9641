"""default, random and fedbuff selectors: per-round freezing, sampling, in-flight tracking."""

from __future__ import annotations

from typing import Any

import pytest

from flame_sdk.selectors import END_RECVD, END_SENT, END_STATE, End, EndState, create_selector


def ends(*ids: str, **states: str) -> dict[str, End]:
    return {i: End(i, {END_STATE: states[i]} if i in states else {}) for i in ids}


def props(round_: int = 0, state: str = "send", requester: str = "agg") -> dict[str, Any]:
    return {"round": round_, "state": state, "requester": requester}


def test_end_dataclass_satisfies_the_protocol() -> None:
    assert isinstance(End("a"), EndState)


def test_default_selects_all_and_freezes_until_the_round_increases() -> None:
    sel = create_selector("default", {})
    assert sel.select(ends("b", "a"), props(1)) == ["a", "b"]
    # a late joiner waits; a vanished end is dropped
    assert sel.select(ends("a", "b", "c"), props(1)) == ["a", "b"]
    assert sel.select(ends("b", "c"), props(1)) == ["b"]
    assert sel.select(ends("a", "b", "c"), props(2)) == ["a", "b", "c"]
    # everything picked vanished: pick again at once
    assert sel.select(ends("d"), props(2)) == ["d"]
    assert sel.select({}, props(3)) == []


def test_random_draws_k_per_round_and_is_seeded() -> None:
    pool = ends(*"abcdefgh")
    first = create_selector("random", {"k": 3, "seed": 7})
    second = create_selector("random", {"k": 3, "seed": 7})
    picked = first.select(pool, props(1))
    assert len(picked) == 3 and len(set(picked)) == 3 and set(picked) <= set(pool)
    assert second.select(pool, props(1)) == picked
    assert first.select(pool, props(1)) == picked  # frozen within the round
    rounds = [set(first.select(pool, props(r))) for r in range(2, 12)]
    assert len({frozenset(r) for r in rounds}) > 1  # re-drawn when the round increases
    assert sorted(create_selector("random", {"k": 5}).select(ends("a", "b"), props(1))) == [
        "a",
        "b",
    ]


def test_fedbuff_send_returns_only_new_ends_up_to_c() -> None:
    sel = create_selector("fedbuff", {"c": 2, "seed": 1})
    pool = ends("t1", "t2", "t3")
    first = sel.select(pool, props(state="send"))
    assert len(first) == 2
    # both in flight: no room for more
    assert sel.select(ends("t1", "t2", "t3", **dict.fromkeys(first, END_SENT)), props()) == []
    # one update came back: it is freed and the one free slot goes to a not-in-flight end
    back, other = first
    after = ends("t1", "t2", "t3", **{back: END_RECVD, other: END_SENT})
    again = sel.select(after, props(state="send"))
    assert len(again) == 1 and again[0] != other
    # recv returns the in-flight set
    assert sel.select(after, props(state="recv")) == sorted({other, again[0]})


def test_fedbuff_vanished_ends_recv_fallback_and_reset() -> None:
    sel = create_selector("fedbuff", {"c": 2, "seed": 3})
    assert len(sel.select(ends("t1", "t2"), props(state="send"))) == 2
    assert sel.select(ends("t2"), props(state="recv")) == ["t2"]  # t1 vanished
    # another requester sees only ends not in flight anywhere
    assert sel.select(ends("t1", "t2", "t3"), props(state="send", requester="m2")) != []
    assert "t2" not in sel.select(ends("t2", "t4"), props(state="send", requester="m3"))
    # recv with nothing in flight draws up to c free ends
    fresh = create_selector("fedbuff", {"c": 2, "seed": 3})
    got = fresh.select(ends("a", "b", "c"), props(state="recv"))
    assert len(got) == 2 and fresh.select(ends("a", "b", "c"), props(state="recv")) == sorted(got)
    fresh.reset("agg")
    assert len(fresh.select(ends("a", "b", "c"), props(state="send", requester="x"))) == 2


def test_fedbuff_requires_requester_and_state() -> None:
    sel = create_selector("fedbuff", {"c": 1})
    with pytest.raises(ValueError, match="requester"):
        sel.select(ends("a"), {"state": "send"})
    with pytest.raises(ValueError, match="state"):
        sel.select(ends("a"), {"requester": "me", "state": "wait"})


def test_factory_errors_name_sort_and_kwarg() -> None:
    with pytest.raises(ValueError, match="unknown selector sort 'best'"):
        create_selector("best", {})
    with pytest.raises(ValueError, match=r"'random'.*k"):
        create_selector("random", {"k": 0})
    with pytest.raises(ValueError, match=r"'fedbuff'.*c"):
        create_selector("fedbuff", {})
    with pytest.raises(ValueError, match=r"'default'.*k"):
        create_selector("default", {"k": 2})
    with pytest.raises(ValueError, match="round"):
        create_selector("", None).select(ends("a"), {"round": "1"})
