"""The zygote imports FLAME_WARM_IMPORTS once, so role code forked below it inherits them."""

from __future__ import annotations

import json
import os
import subprocess
import sys

PROBE = """
import sys
import flamelet.zygote as z
before = "graphlib" in sys.modules
z.warm_up()
print(before, "graphlib" in sys.modules)
"""


def test_warm_up_imports_the_listed_modules_and_skips_a_missing_one_naming_it() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLAME_")}
    env["FLAME_WARM_IMPORTS"] = json.dumps(["graphlib", "no_such_module_here"])
    done = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "True"]
    assert "zygote: warm import no_such_module_here skipped" in done.stderr


def test_nothing_is_imported_when_the_list_is_empty() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLAME_")}
    done = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "False"]
