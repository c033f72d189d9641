"""Warm starts: the pre-forked child runs a script as `python script config` would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import psutil
import pytest

from flamelet import warm
from tests.support.wait import wait_until

pytestmark = pytest.mark.skipif(not warm.available(), reason="warm starts need Linux")

# Forks a warm child in a fresh single-threaded interpreter (never fork the test process),
# then launches it (or not) and prints {"pid", "code"}.
DRIVER = textwrap.dedent(
    """
    import asyncio, json, os, signal, sys, time
    from pathlib import Path
    from flamelet.warm import WarmProcess

    script, config, log, mode = sys.argv[1:5]
    TITLE = "flame-role trainer task=t1 job=j1"
    child = WarmProcess.fork("flame-role (idle) task=t1 job=j1")
    print(json.dumps({"pid": child.pid}), flush=True)
    env = {"ONLY": "this", "PATH": os.environ["PATH"], "CODE": mode}
    if mode == "orphan":  # the role code runs (sleeps) when its agent dies
        child.launch(Path(script), Path(config), Path(log), env, TITLE)
        for _ in range(500):
            if os.path.exists(log) and "to stderr" in open(log).read():
                os.kill(os.getpid(), signal.SIGKILL)
            time.sleep(0.02)

    async def main():
        if mode == "unused":
            child.close()
        else:
            child.launch(Path(script), Path(config), Path(log), env, TITLE)
        return await child.wait()

    print(json.dumps({"code": asyncio.run(main())}), flush=True)
    """
)

ROLE = textwrap.dedent(
    """
    import atexit, json, os, sys, threading, time
    import sibling

    atexit.register(lambda: print("atexit ran"))
    threading.Thread(target=lambda: (time.sleep(0.2), print("thread finished"))).start()
    print(json.dumps({
        "name": __name__, "argv": sys.argv, "cwd": os.getcwd(), "env": dict(os.environ),
        "path0": sys.path[0], "sibling": sibling.VALUE, "stdin": sys.stdin.read(),
        "leader": os.getpgid(0) == os.getpid() == os.getsid(0), "pid": os.getpid(),
        "title": open("/proc/self/cmdline", "rb").read().split(b"\\0")[0].decode(),
    }))
    print("to stderr", file=sys.stderr)
    if os.environ["CODE"] == "raise":
        raise RuntimeError("role code broke")
    if os.environ["CODE"] == "orphan":
        time.sleep(60)
    sys.exit(int(os.environ["CODE"]))
    """
)


def drive(tmp_path: Path, mode: str) -> tuple[list[dict[str, int]], Path]:
    code_dir = tmp_path / "code" / "trainer"
    code_dir.mkdir(parents=True, exist_ok=True)
    (code_dir / "main.py").write_text(ROLE)
    (code_dir / "sibling.py").write_text("VALUE = 42\n")
    config = tmp_path / "config"
    config.write_text("{}")
    log = tmp_path / "task.log"
    out = subprocess.run(
        [sys.executable, "-c", DRIVER, str(code_dir / "main.py"), str(config), str(log), mode],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[2],
    )
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert lines, out.stderr
    return lines, log


def test_role_runs_as_a_fresh_script_would(tmp_path):
    lines, log = drive(tmp_path, "7")
    assert lines[-1]["code"] == 7
    output = log.read_text().splitlines()
    seen = json.loads(output[0])
    script = tmp_path / "code" / "trainer" / "main.py"
    assert seen["name"] == "__main__"
    assert seen["argv"] == [str(script), str(tmp_path / "config")]
    assert seen["cwd"] == str(tmp_path)
    assert seen["env"] == {"ONLY": "this", "PATH": os.environ["PATH"], "CODE": "7"}
    assert seen["path0"] == str(script.parent) and seen["sibling"] == 42
    assert seen["stdin"] == "" and seen["leader"] and seen["pid"] == lines[0]["pid"]
    assert seen["title"] == "flame-role trainer task=t1 job=j1"  # what `ps -eo args` shows
    # stderr shares the log; non-daemon threads finish before atexit handlers, as at shutdown
    assert output[1:] == ["to stderr", "thread finished", "atexit ran"]


def test_uncaught_exception_prints_a_traceback_and_exits_1(tmp_path):
    lines, log = drive(tmp_path, "raise")
    assert lines[-1]["code"] == 1
    text = log.read_text()
    assert "Traceback (most recent call last)" in text
    assert "RuntimeError: role code broke" in text
    # as from `python main.py`: the traceback starts in the script, no frame of the warm start
    frames = [line for line in text.splitlines() if line.startswith('  File "')]
    assert frames and all("main.py" in line for line in frames), frames


def test_unused_child_exits_at_once(tmp_path):
    lines, log = drive(tmp_path, "unused")
    assert lines[-1]["code"] == 0
    assert not log.exists()


def test_child_dies_with_its_agent(tmp_path):
    lines, log = drive(tmp_path, "orphan")
    pid = lines[0]["pid"]
    assert "to stderr" in log.read_text()  # the role code was running

    def gone() -> bool:
        try:
            return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True

    wait_until(gone, timeout=10, what=f"warm child {pid} ending with its agent")
