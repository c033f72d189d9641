"""Service GC settings: start-up objects frozen, young collections far apart."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from flame_common.gc_tuning import GEN0_THRESHOLD, tune_gc


@pytest.fixture
def restored_gc() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


@pytest.mark.usefixtures("restored_gc")
def test_tune_gc_freezes_what_exists_and_spaces_young_collections() -> None:
    gc.unfreeze()
    older = gc.get_threshold()[1:]
    existing = [object() for _ in range(10)]
    tune_gc()
    assert gc.get_freeze_count() > len(existing)
    assert gc.get_threshold() == (GEN0_THRESHOLD, *older)
