"""Start and stop the embedded MongoDB wire server (nx-27017) on a data directory."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(host: str, port: int, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _command() -> list[str]:
    exe = shutil.which("nx-27017")
    if exe:
        return [exe]
    return [sys.executable, "-m", "nx_27017"]


@dataclass
class EmbeddedMongo:
    """A running nx-27017 process."""

    process: subprocess.Popen[bytes]
    port: int
    data_dir: Path

    @property
    def url(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_embedded_mongo(
    data_dir: Path, port: int | None = None, *, log_file: Path | None = None, timeout: float = 15.0
) -> EmbeddedMongo:
    """Start nx-27017 and wait until it accepts connections."""
    data_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    out = open(log_file, "ab") if log_file else subprocess.DEVNULL  # noqa: SIM115
    # nx-27017's default PID file (/tmp/nx_27017.pid) would allow one server per machine.
    args = ["--data-dir", str(data_dir), "--host", "127.0.0.1", "-p", str(port)]
    args += ["--pid-file", str(data_dir / "nx-27017.pid")]
    proc = subprocess.Popen(
        [*_command(), *args],
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"nx-27017 exited with code {proc.returncode} (data dir {data_dir})")
        if port_open("127.0.0.1", port):
            return EmbeddedMongo(proc, port, data_dir)
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"nx-27017 did not listen on port {port} within {timeout} s")
