"""Optional dependency groups (pyproject extras): import checks that name the extra to install."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable

DISTRIBUTION = "flame-fl"

# The modules each extra provides that Flame imports (the distributions are in pyproject.toml).
EXTRAS: dict[str, tuple[str, ...]] = {
    "server": (
        "fastapi",
        "uvicorn",
        "beanie",
        "pymongo",
        "faststream",
        "nx_27017",
        "cryptography",
        "prometheus_client",
        "aiomqtt",
        "bson",  # with pymongo
        "starlette",  # with fastapi
    ),
    "ml": ("torch", "sklearn", "mlflow"),
    "k8s": ("kubernetes",),
    "mqtt": ("aiomqtt", "paho"),
}


class MissingExtra(ImportError):
    """A feature needs packages of an extra that is not installed."""

    def __init__(self, extra: str, what: str, missing: Iterable[str]) -> None:
        self.extra = extra
        self.missing = tuple(missing)
        super().__init__(
            f"{what} needs the '{extra}' extra ({', '.join(self.missing)} not installed): "
            f"pip install '{DISTRIBUTION}[{extra}]'"
        )


def missing_modules(extra: str, modules: Iterable[str] | None = None) -> list[str]:
    """The modules of `extra` (or just `modules`) that cannot be imported here."""
    names = EXTRAS[extra] if modules is None else tuple(modules)
    return [name for name in names if importlib.util.find_spec(name) is None]


def require(extra: str, what: str, modules: Iterable[str] | None = None) -> None:
    """Raise MissingExtra (naming `what` and the pip command) unless `extra`'s modules exist."""
    if missing := missing_modules(extra, modules):
        raise MissingExtra(extra, what, missing)
