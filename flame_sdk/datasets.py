"""Offline datasets named by the task config's `dataset` URL (nothing is ever downloaded).

Schemes:
- `digits://<i>/<n>`: client shard `i` (0-based) of `n` equal contiguous shards of the digits
  workload's 1,500 training rows (scikit-learn `load_digits`, X/16 as float32, rows shuffled
  with `RandomState(0)`); `digits://test`: its 297-row central test set. Optional query
  `?cache=path/digits.npz` reads (or first writes) the raw arrays there, so that worker
  processes need not import scikit-learn.
- `fashion-mnist://<i>/<n>` and `fashion-mnist://test`: the same sharding over the IDX files
  under `/usr/share/datasets/fashion-mnist/` (Debian `dataset-fashion-mnist`), when present.
- `adult://<i>/<n>`, `adult://test`, `compas://<i>/<n>`, `compas://test`: the same sharding over
  synthetic tabular sets shaped like the Adult census (income > 50K) and COMPAS (two-year
  recidivism) data, drawn deterministically by numpy (2,000 training and 500 test rows; see
  `adult_table`, `compas_table`).
- `file:///path/data.npz`: arrays `x` and `y` of an `.npz` file.

Bounds (`DataBounds`): a URL reads only under the work dir (the role's current directory) or a
read root (`FLAME_DATA_ROOTS`), and writes (the digits cache) only under the work dir; relative
paths are taken from the work dir, symlinks and `..` are resolved before the check.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import numpy as np

from flame_common.extras import require

DIGITS_TRAIN_ROWS = 1500
TABLE_TRAIN_ROWS, TABLE_TEST_ROWS = 2000, 500
COMPAS_GROUP_COLUMN = 0
"""The column of `compas://` rows that holds the sensitive group (1 = African-American)."""
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")


class DatasetError(ValueError):
    """A dataset URL that cannot be resolved offline."""


@dataclass(frozen=True)
class DataBounds:
    """Where dataset URLs may reach: writes under `work_dir`, reads there or under a read root."""

    work_dir: Path
    read_roots: Sequence[Path] = ()

    @classmethod
    def of_process(cls) -> DataBounds:
        """The role's bounds: its current directory (the flamelet runs role code in the task's
        work dir) and the read roots of `FLAME_DATA_ROOTS`."""
        from flame_common.settings import FlameSettings

        return cls(Path.cwd(), tuple(FlameSettings().data_roots))

    def readable(self, url: str, path: Path) -> Path:
        """`path` resolved, if it lies under the work dir or a read root; else DatasetError."""
        real = self._resolve(path)
        roots = [self._resolve(self.work_dir), *(self._resolve(r) for r in self.read_roots)]
        if not any(real.is_relative_to(root) for root in roots):
            raise DatasetError(
                f"dataset URL {url!r} reads {real}, outside the work dir and the read roots "
                f"({', '.join(map(str, roots))}); add its directory to FLAME_DATA_ROOTS"
            )
        return real

    def writable(self, url: str, path: Path) -> Path:
        """`path` resolved, if it lies under the work dir; else DatasetError."""
        real, work = self._resolve(path), self._resolve(self.work_dir)
        if not real.is_relative_to(work):
            raise DatasetError(
                f"dataset URL {url!r} would write {real}, outside the work dir {work} "
                "(a cache must be a path inside it)"
            )
        return real

    def _resolve(self, path: Path) -> Path:
        return Path(os.path.realpath(self.work_dir / path))


@dataclass(frozen=True)
class Dataset:
    x: np.ndarray
    y: np.ndarray
    shard: int = 0  # client index within the split (0 for whole sets)

    def __len__(self) -> int:
        return len(self.y)


def load_dataset(url: str, bounds: DataBounds | None = None) -> Dataset:
    """Resolve a dataset URL to arrays (see module docstring for the schemes) within `bounds`
    (default: `DataBounds.of_process()`)."""
    parsed = urlparse(url)
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise DatasetError(f"dataset URL {url!r} names host {parsed.netloc!r}: local only")
        path = (bounds or DataBounds.of_process()).readable(url, Path(parsed.path))
        return _load_npz(path)
    if parsed.scheme == "digits":
        cache = parse_qs(parsed.query).get("cache", [""])[0]
        x, y = _digits(_cache_path(url, cache, bounds or DataBounds.of_process()))
        return _split(x, y, DIGITS_TRAIN_ROWS, parsed.netloc, parsed.path, url)
    if parsed.scheme == "fashion-mnist":
        x, y = _fashion()
        return _split(x, y, 60000, parsed.netloc, parsed.path, url)
    if parsed.scheme in TABLES:
        x, y = TABLES[parsed.scheme]()
        return _split(x, y, TABLE_TRAIN_ROWS, parsed.netloc, parsed.path, url)
    raise DatasetError(
        f"unsupported dataset URL {url!r} (digits://, fashion-mnist://, adult://, compas://, file://)"
    )


def _cache_path(url: str, cache: str, bounds: DataBounds) -> str:
    """The digits cache of `url`, resolved: an existing file may be read from any readable place,
    a new one is written only under the work dir."""
    if not cache:
        return ""
    path = bounds.readable(url, Path(cache)) if (bounds.work_dir / cache).exists() else None
    return str(path or bounds.writable(url, Path(cache)))


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
    require("ml", "the digits:// dataset", ["sklearn"])
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


def _sigmoid_draw(rng: np.random.Generator, logit: np.ndarray) -> np.ndarray:
    """0/1 labels drawn with probability sigmoid(`logit`)."""
    return (rng.random(len(logit)) < 1.0 / (1.0 + np.exp(-logit))).astype(np.int64)


def _one_hot(rng: np.random.Generator, p: list[float], n: int) -> tuple[np.ndarray, np.ndarray]:
    """`n` draws of a categorical with probabilities `p`: (codes, one-hot float32 columns)."""
    codes = rng.choice(len(p), size=n, p=p)
    return codes, np.eye(len(p), dtype=np.float32)[codes]


@lru_cache(maxsize=1)
def adult_table() -> tuple[np.ndarray, np.ndarray]:
    """Adult-shaped rows: 18 float32 columns, label income > 50K (about 24% positive).

    Columns: age, education years, weekly hours (standardised), log1p(capital gain)/10, then
    one-hot workclass (private, self-employed, government, other), marital status (married,
    never married, other), occupation (professional, managerial, sales, service, manual) and
    sex (male, female). The label is drawn from a logistic model of them, so a linear model
    reaches about 0.88 test accuracy against 0.78 for always predicting the majority class.
    """
    rng = np.random.default_rng(48842)
    n = TABLE_TRAIN_ROWS + TABLE_TEST_ROWS
    age = np.clip(rng.normal(38.6, 13.6, n), 17, 90)
    education = np.clip(np.rint(rng.normal(10.1, 2.6, n)), 1, 16)
    hours = np.clip(rng.normal(40.4, 12.3, n), 1, 99)
    gain = np.where(rng.random(n) < 0.08, rng.lognormal(8.5, 1.0, n), 0.0)
    work, work_1h = _one_hot(rng, [0.70, 0.11, 0.13, 0.06], n)
    marital, marital_1h = _one_hot(rng, [0.47, 0.33, 0.20], n)
    job, job_1h = _one_hot(rng, [0.20, 0.13, 0.12, 0.25, 0.30], n)
    sex, sex_1h = _one_hot(rng, [0.67, 0.33], n)
    logit = (
        -3.1
        + 0.45 * (education - 10)
        + 0.04 * (age - 38)
        + 0.04 * (hours - 40)
        + 2.0 * (marital == 0)
        - 0.5 * (marital == 1)
        + 1.0 * (job < 2)
        - 0.5 * (job == 4)
        + 0.4 * (sex == 0)
        + 1.5 * (gain > 0)
        + 0.4 * (work == 1)
    )
    y = _sigmoid_draw(rng, 1.8 * logit)
    numeric = np.stack(
        [(age - 38.6) / 13.6, (education - 10.1) / 2.6, (hours - 40.4) / 12.3, np.log1p(gain) / 10],
        axis=1,
    ).astype(np.float32)
    return np.concatenate([numeric, work_1h, marital_1h, job_1h, sex_1h], axis=1), y


@lru_cache(maxsize=1)
def compas_table() -> tuple[np.ndarray, np.ndarray]:
    """COMPAS-shaped rows: 6 float32 columns, label two-year recidivism (about 48% positive).

    Columns: the group (column `COMPAS_GROUP_COLUMN`, 1 = African-American, about half the
    rows), male, standardised age, log1p(prior counts) - 1, juvenile felonies (capped at 3)
    and felony charge. The group raises the prior counts and, a little, the label, so the
    label's base rate differs by group (0.33 vs 0.61 on the test rows) and an accurate
    classifier has a large statistical-parity gap.
    """
    rng = np.random.default_rng(7214)
    n = TABLE_TRAIN_ROWS + TABLE_TEST_ROWS
    group = (rng.random(n) < 0.51).astype(np.float64)
    male = (rng.random(n) < 0.81).astype(np.float64)
    age = np.clip(rng.normal(34.5 - 2 * group, 11.5, n), 18, 70)
    priors = rng.poisson(2.0 + 2.0 * group)
    juvenile = rng.poisson(0.08 + 0.12 * group)
    felony = (rng.random(n) < 0.64).astype(np.float64)
    logit = (
        -0.7
        + 0.3 * (priors - 3)
        - 0.06 * (age - 34)
        + 0.35 * male
        + 0.25 * felony
        + 0.5 * juvenile
        + 0.3 * group
    )
    y = _sigmoid_draw(rng, logit)
    columns = [
        group,
        male,
        (age - 34) / 11.5,
        np.log1p(priors) - 1,
        np.minimum(juvenile, 3),
        felony,
    ]
    return np.stack(columns, axis=1).astype(np.float32), y


TABLES = {"adult": adult_table, "compas": compas_table}
