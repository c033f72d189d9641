"""Same-host bulk path of the broker backends: payloads in shared-memory files, handles on the wire.

A sender writes a payload once into a file of a tmpfs directory both ends see (`/dev/shm/flame-
<uid>`), gives each receiver its own hard link and publishes only the link's name. The receiver
opens the link without following symlinks, checks it (a regular file of the announced size,
owned by its own uid), unlinks it and copies the bytes out (never mapped: a sender still holding
the file could truncate it under a mapping). Ends share a *domain* (boot id, the directory's
device and inode, uid) exactly when they see the same directory; peers learn each other's
domain from the payload of JOIN/HELLO frames and use this path only when the domains match.

Cleanup without an owner: names carry their fate. A file being written is `w-<pid>-<hex>`
(swept once that pid is gone); a link is `<expiry unix s>-<hex>.<n>` (swept after the expiry,
set past the longest a handle can wait: two outage bounds and a liveness timeout). Every
backend sweeps the directory when it starts and then every `SWEEP_SECONDS`.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import secrets
import stat
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from flame_common.logs import get_logger

log = get_logger(__name__)

DEFAULT_THRESHOLD = 256 * 1024  # smaller payloads go through the broker as before
SWEEP_SECONDS = 10.0
FREE_SPACE_FACTOR = 2  # write only when the directory has twice the payload free
MAX_DOMAIN = 200
_LINK = re.compile(r"(\d{10})-([0-9a-f]{32})\.(\d{1,6})")
_WRITING = re.compile(r"w-(\d{1,10})-([0-9a-f]{32})")


class SegmentError(OSError):
    """A handle that does not lead to a readable segment of the announced size."""


def default_dir() -> str:
    return os.environ.get("FLAME_SHM_DIR") or f"/dev/shm/flame-{os.getuid()}"


def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return "no-boot-id"


@dataclass
class SegmentStore:
    """One process's view of the shared directory; `domain` is None when it is unusable."""

    path: str
    expiry_seconds: float
    threshold: int = DEFAULT_THRESHOLD
    domain: str | None = None
    stats: dict[str, int] = field(
        default_factory=lambda: {"sent": 0, "written.bytes": 0, "received": 0, "swept": 0}
    )
    _next_sweep: float = 0.0

    @classmethod
    def open(cls, path: str, expiry_seconds: float, threshold: int) -> SegmentStore:
        """Create (0700) or adopt the directory; an unusable one disables the path, logged."""
        store = cls(path, expiry_seconds, threshold)
        try:
            os.makedirs(path, mode=0o700, exist_ok=True)
            info = os.lstat(path)
            if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
                raise PermissionError(f"{path} is not a directory of uid {os.getuid()}")
            if stat.S_IMODE(info.st_mode) & 0o077:
                raise PermissionError(f"{path} is open to other users (mode {info.st_mode:o})")
        except OSError as exc:
            log.warning("shared memory path off", dir=path, reason=str(exc))
            return store
        store.domain = f"shm1:{_boot_id()}:{info.st_dev}:{info.st_ino}:{os.getuid()}"
        return store

    def usable_for(self, size: int, peer_domain: str | None) -> bool:
        return (
            self.domain is not None
            and peer_domain == self.domain
            and size >= self.threshold
            and self._room_for(size)
        )

    def _room_for(self, size: int) -> bool:
        try:
            info = os.statvfs(self.path)
        except OSError:
            return False
        return info.f_bavail * info.f_frsize >= FREE_SPACE_FACTOR * size

    # -- sending ----------------------------------------------------------------------------
    def write(self, views: Sequence[memoryview], links: int) -> list[str]:
        """Write the payload once and return `links` names of it, one per receiver; on an
        error nothing is left behind and OSError propagates (the caller uses the broker)."""
        token = secrets.token_hex(16)
        temp = os.path.join(self.path, f"w-{os.getpid()}-{token}")
        expiry = math.ceil(time.time() + self.expiry_seconds)
        names = [f"{expiry:010d}-{token}.{n}" for n in range(links)]
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            try:
                _write_all(fd, views)
            finally:
                os.close(fd)
            for name in names:
                os.link(temp, os.path.join(self.path, name))
        except OSError:
            self.discard(names)
            raise
        finally:
            with contextlib.suppress(OSError):
                os.unlink(temp)
        self.stats["written.bytes"] += sum(len(v) for v in views)
        self.stats["sent"] += links
        return names

    def discard(self, names: Sequence[str]) -> None:
        """Remove links whose handles were never published."""
        for name in names:
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(self.path, name))

    # -- receiving --------------------------------------------------------------------------
    def take(self, name: str, size: int) -> bytearray:
        """Read and remove the segment a handle names; SegmentError if it is not acceptable."""
        if _LINK.fullmatch(name) is None:
            raise SegmentError(f"bad segment name {name[:80]!r}")
        path = os.path.join(self.path, name)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError as exc:
            raise SegmentError(f"segment {name} cannot be opened: {exc.strerror}") from None
        try:
            with contextlib.suppress(OSError):
                os.unlink(path)
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid():
                raise SegmentError(f"segment {name} is not a regular file of this user")
            if info.st_size != size:
                raise SegmentError(f"segment {name} holds {info.st_size} bytes, handle says {size}")
            buffer = bytearray(size)
            view, done = memoryview(buffer), 0
            while done < size:
                n = os.readv(fd, [view[done:]])
                if n == 0:
                    raise SegmentError(f"segment {name} shrank while read ({done} of {size})")
                done += n
        finally:
            os.close(fd)
        self.stats["received"] += 1
        return buffer

    # -- cleanup ----------------------------------------------------------------------------
    def sweep(self, now: float | None = None) -> int:
        """Remove expired links and files whose writer died; returns how many went."""
        if self.domain is None:
            return 0
        wall = time.time() if now is None else now
        removed = 0
        try:
            names = os.listdir(self.path)
        except OSError:
            return 0
        for name in names:
            if (link := _LINK.fullmatch(name)) is not None:
                stale = int(link.group(1)) < wall
            elif (writing := _WRITING.fullmatch(name)) is not None:
                stale = not _alive(int(writing.group(1)))
            else:
                continue
            if stale:
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(self.path, name))
                    removed += 1
        if removed:
            log.info("stale shared memory segments removed", dir=self.path, count=removed)
            self.stats["swept"] += removed
        return removed

    def sweep_due(self) -> None:
        """`sweep` at most every SWEEP_SECONDS (called from the liveness ticker)."""
        now = time.monotonic()
        if now >= self._next_sweep:
            self._next_sweep = now + SWEEP_SECONDS
            self.sweep()


def _write_all(fd: int, views: Sequence[memoryview]) -> None:
    for view in views:
        while view:
            written = os.write(fd, view)
            view = view[written:]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
