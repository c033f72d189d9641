"""`python -m flamelet.rolemain <title> <script> <args...>`: run the role code under a title.

The fresh-interpreter start of the role code (warm starts title themselves): the process shows
`title` in `ps`, then runs `script` exactly as `python <script> <args...>` would (same
`sys.argv`, `sys.path[0]`, `__main__`, traceback and exit code).
"""

from __future__ import annotations

import sys

from flame_common.titles import set_title
from flamelet import script


def main() -> None:
    if len(sys.argv) < 3:
        sys.exit("usage: python -m flamelet.rolemain <title> <script> [args...]")
    title, argv = sys.argv[1], sys.argv[2:]
    set_title(title)
    try:
        script.run(argv)
    except Exception:
        script.report_uncaught(argv[0])
        sys.exit(1)


if __name__ == "__main__":
    main()
