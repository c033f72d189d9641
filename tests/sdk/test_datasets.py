"""Dataset URLs read only under the work dir and the data roots, write only under the work dir."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from flame_sdk.datasets import DataBounds, DatasetError, load_dataset


def _npz(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, x=np.ones((4, 2), np.float32), y=np.arange(4))
    return path


def test_file_urls_read_inside_the_work_dir_and_the_data_roots(tmp_path: Path) -> None:
    work, data, secret = tmp_path / "work", tmp_path / "data", tmp_path / "home"
    bounds = DataBounds(work, [data])
    _npz(work / "own.npz")
    _npz(data / "shared.npz")
    _npz(secret / "other-user.npz")
    assert len(load_dataset(f"file://{work}/own.npz", bounds)) == 4
    assert len(load_dataset("file:own.npz", bounds)) == 4  # relative: from the work dir
    assert len(load_dataset(f"file://{data}/shared.npz", bounds)) == 4

    outside = f"file://{secret}/other-user.npz"
    with pytest.raises(DatasetError, match="outside the work dir and the read roots") as caught:
        load_dataset(outside, bounds)
    assert outside in str(caught.value) and "FLAME_DATA_ROOTS" in str(caught.value)
    for sneaky in (f"file://{work}/../home/other-user.npz", "file:../home/other-user.npz"):
        with pytest.raises(DatasetError, match="outside"):
            load_dataset(sneaky, bounds)
    (work / "link.npz").symlink_to(secret / "other-user.npz")
    with pytest.raises(DatasetError, match="outside"):
        load_dataset("file:link.npz", bounds)
    with pytest.raises(DatasetError, match="local only"):
        load_dataset(f"file://elsewhere{work}/own.npz", bounds)


def test_the_digits_cache_is_written_only_inside_the_work_dir(tmp_path: Path) -> None:
    work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    bounds = DataBounds(work)
    target = elsewhere / "digits.npz"
    url = f"digits://0/4?cache={target}"
    with pytest.raises(DatasetError, match=r"would write .* outside the work dir") as caught:
        load_dataset(url, bounds)
    assert url in str(caught.value)
    assert not elsewhere.exists()  # nothing written, not even the directory

    shard = load_dataset("digits://0/4?cache=cache/digits.npz", bounds)
    assert len(shard) == 375 and (work / "cache" / "digits.npz").is_file()
    # an existing cache may be read from a data root, never written there
    roots = DataBounds(tmp_path / "other-work", [work / "cache"])
    cached = load_dataset(f"digits://test?cache={work}/cache/digits.npz", roots)
    assert len(cached) == 297


def test_the_role_bounds_come_from_its_directory_and_flame_data_roots(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FLAME_DATA_ROOTS", json.dumps(["/srv/data"]))
    bounds = DataBounds.of_process()
    assert bounds.work_dir == Path(os.getcwd()) and list(bounds.read_roots) == [Path("/srv/data")]
