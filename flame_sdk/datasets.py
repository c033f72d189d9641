"""Offline datasets named by the task config's `dataset` URL (nothing is ever downloaded).

Schemes:
- `digits://<i>/<n>`: client shard `i` (0-based) of `n` equal contiguous shards of the digits
  workload's 1,500 training rows (scikit-learn `load_digits`, X/16 as float32, rows shuffled
  with `RandomState(0)`); `digits://test`: its 297-row central test set. Optional query
  `?cache=/path/digits.npz` reads (or first writes) the raw arrays there, so that worker
  processes need not import scikit-learn.
- `fashion-mnist://<i>/<n>` and `fashion-mnist://test`: the same sharding over the IDX files
  under `/usr/share/datasets/fashion-mnist/` (Debian `dataset-fashion-mnist`), when present.
- `file:///path/data.npz`: arrays `x` and `y` of an `.npz` file.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import numpy as np

DIGITS_TRAIN_ROWS = 1500
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")


class DatasetError(ValueError):
    """A dataset URL that cannot be resolved offline."""


@dataclass(frozen=True)
class Dataset:
    x: np.ndarray
    y: np.ndarray
    shard: int = 0  # client index within the split (0 for whole sets)

    def __len__(self) -> int:
        return len(self.y)


def load_dataset(url: str) -> Dataset:
    """Resolve a dataset URL to arrays (see module docstring for the schemes)."""
    parsed = urlparse(url)
    if parsed.scheme == "file":
        return _load_npz(Path(parsed.path))
    if parsed.scheme == "digits":
        cache = parse_qs(parsed.query).get("cache", [""])[0]
        x, y = _digits(cache)
        return _split(x, y, DIGITS_TRAIN_ROWS, parsed.netloc, parsed.path, url)
    if parsed.scheme == "fashion-mnist":
        x, y = _fashion()
        return _split(x, y, 60000, parsed.netloc, parsed.path, url)
    raise DatasetError(f"unsupported dataset URL {url!r} (digits://, fashion-mnist://, file://)")


def _split(x: np.ndarray, y: np.ndarray, n_train: int, host: str, path: str, url: str) -> Dataset:
    if host == "test" and path in ("", "/"):
        return Dataset(x[n_train:], y[n_train:])
    try:
        index, count = int(host), int(path.strip("/"))
    except ValueError:
        raise DatasetError(
            f"dataset URL {url!r} must look like scheme://<i>/<n> or scheme://test"
        ) from None
    if not 0 <= index < count or count > n_train:
        raise DatasetError(f"dataset URL {url!r}: shard {index} of {count} does not exist")
    lo, hi = index * n_train // count, (index + 1) * n_train // count
    return Dataset(x[lo:hi], y[lo:hi], shard=index)


def _load_npz(path: Path) -> Dataset:
    try:
        with np.load(path, allow_pickle=False) as data:
            return Dataset(np.asarray(data["x"]), np.asarray(data["y"]))
    except (OSError, KeyError, ValueError) as exc:
        raise DatasetError(f"cannot read npz dataset {path} (needs arrays x and y): {exc}") from exc


@lru_cache(maxsize=2)
def _digits(cache: str) -> tuple[np.ndarray, np.ndarray]:
    data, target = _raw_digits(Path(cache) if cache else None)
    x = (data / 16.0).astype(np.float32)
    y = target.astype(np.int64)
    perm = np.random.RandomState(0).permutation(len(y))
    return x[perm], y[perm]


def _raw_digits(cache: Path | None) -> tuple[np.ndarray, np.ndarray]:
    if cache is not None and cache.exists():
        with np.load(cache, allow_pickle=False) as npz:
            return np.asarray(npz["data"]), np.asarray(npz["target"])
    from sklearn.datasets import load_digits

    digits = load_digits()
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp.npz")
        np.savez(tmp, data=digits.data, target=digits.target)
        tmp.replace(cache)
    return np.asarray(digits.data), np.asarray(digits.target)


@lru_cache(maxsize=1)
def _fashion() -> tuple[np.ndarray, np.ndarray]:
    if not FASHION_DIR.is_dir():
        raise DatasetError(f"Fashion-MNIST is not installed ({FASHION_DIR} is missing)")
    parts = []
    for prefix in ("train", "t10k"):
        images = _idx(prefix + "-images-idx3-ubyte").reshape(-1, 784)
        labels = _idx(prefix + "-labels-idx1-ubyte")
        parts.append(((images / 255.0).astype(np.float32), labels.astype(np.int64)))
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def _idx(stem: str) -> np.ndarray:
    for path in (FASHION_DIR / stem, FASHION_DIR / (stem + ".gz")):
        if path.exists():
            raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
            ndim = raw[3]
            dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
            return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)
    raise DatasetError(f"Fashion-MNIST file {stem} not found under {FASHION_DIR}")
