"""docs/tutorial.md as files: its `wine/...` and `prepare_wine.py` blocks, data root moved."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TUTORIAL = ROOT / "docs" / "tutorial.md"
DATA_ROOT = "/tmp/flame-data"  # where the tutorial keeps its data


def tutorial_files() -> dict[str, str]:
    """Each file the tutorial shows: a line `` `path`: `` or `` `path` — …: `` then its block."""
    text = TUTORIAL.read_text()
    found = re.findall(r"^`([\w./-]+)`[^\n]*:\n\n```(?:json|python)\n(.*?)```", text, re.M | re.S)
    return dict(found)


def tutorial_block(marker: str) -> str:
    """The shell block between `<!-- marker:start -->` and `<!-- marker:end -->`."""
    pattern = rf"<!-- {marker}:start -->\s*```bash\n(.*?)```\s*<!-- {marker}:end -->"
    found = re.search(pattern, TUTORIAL.read_text(), re.S)
    assert found, f"{TUTORIAL}: no ```bash block between the {marker} markers"
    return found.group(1)


def write_tutorial(into: Path, data_root: Path) -> Path:
    """The tutorial's files under `into` (the data root replaced by `data_root`); `into`."""
    for name, content in tutorial_files().items():
        path = into / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content.replace(DATA_ROOT, str(data_root)))
    return into
