"""Import every module of Flame's packages (run by a scratch venv's python; stdlib only).

Modules whose only missing import belongs to an extra that is not installed are skipped; any
other failure is printed and the exit code is 1. `--skip-extra ml` names an extra left out.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
import traceback
import warnings

PACKAGES = (
    "schemas",
    "flame_common",
    "flame_controller",
    "flame_apiserver",
    "flame_notifier",
    "flamelet",
    "flame_sdk",
)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--skip-extra", action="append", default=[])
    args = parser.parse_args()
    from flame_common.extras import EXTRAS

    absent = {m for extra in args.skip_extra for m in EXTRAS[extra]}
    warnings.simplefilter("ignore")
    imported, skipped, failed = 0, 0, []
    for package in PACKAGES:
        root = importlib.import_module(package)
        for info in pkgutil.walk_packages(root.__path__, f"{package}."):
            if info.name.endswith("__main__"):
                continue  # runs the program
            try:
                importlib.import_module(info.name)
                imported += 1
            except ModuleNotFoundError as exc:
                if (exc.name or "").split(".")[0] in absent:
                    skipped += 1
                    continue
                failed.append((info.name, traceback.format_exc()))
            except BaseException:
                failed.append((info.name, traceback.format_exc()))
    for name, trace in failed:
        print(f"FAILED {name}\n{trace}")
    skips = f"skipped {skipped} (extras {args.skip_extra})"
    print(f"imported {imported}, {skips}, failed {len(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
