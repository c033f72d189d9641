"""Archive safety of the flamelet's code unpacking, and multipart manifest parsing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flamelet.manifest import ManifestError, parse_manifest
from flamelet.runner import log_tail
from flamelet.unpack import UnsafeArchive, unpack_zip
from tests.agents.helpers import multipart
from tests.support.zips import make_zip, symlink


def test_good_archive_unpacks_below_the_destination(tmp_path: Path) -> None:
    data = make_zip([("trainer/main.py", b"print(1)\n"), ("trainer/lib/util.py", b"x = 1\n")])
    written = unpack_zip(data, tmp_path / "code")
    assert sorted(p.relative_to(tmp_path / "code").as_posix() for p in written) == [
        "trainer/lib/util.py",
        "trainer/main.py",
    ]
    assert (tmp_path / "code/trainer/main.py").read_bytes() == b"print(1)\n"


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("../evil.py", "escapes"),
        ("trainer/../../evil.py", "escapes"),
        ("/etc/evil.py", "absolute"),
        ("C:/evil.py", "absolute"),
        ("trainer\\..\\evil.py", "backslash"),
    ],
)
def test_dangerous_names_are_refused_before_anything_is_written(
    tmp_path: Path, name: str, message: str
) -> None:
    data = make_zip([("trainer/main.py", b"ok"), (name, b"boom")])
    with pytest.raises(UnsafeArchive, match=message):
        unpack_zip(data, tmp_path / "code")
    assert not (tmp_path / "code").exists()
    assert not (tmp_path / "evil.py").exists()


def test_symbolic_links_are_refused(tmp_path: Path) -> None:
    with pytest.raises(UnsafeArchive, match="symbolic link"):
        unpack_zip(make_zip([symlink("trainer/data", "/etc/passwd")]), tmp_path / "code")


def test_oversized_archives_are_refused(tmp_path: Path) -> None:
    bomb = make_zip([("trainer/zeros.bin", b"\0" * 2_000_000)])
    assert len(bomb) < 20_000
    with pytest.raises(UnsafeArchive, match="limit"):
        unpack_zip(bomb, tmp_path / "code", max_bytes=1_000_000)
    assert not (tmp_path / "code").exists()


def test_lying_size_headers_are_caught_while_streaming(tmp_path: Path) -> None:
    data = bytearray(make_zip([("trainer/zeros.bin", b"\0" * 100_000)]))
    # patch the central directory's uncompressed size (offset 24 of the entry) down to 10 bytes
    cd = data.rfind(b"PK\x01\x02")
    data[cd + 24 : cd + 28] = (10).to_bytes(4, "little")
    with pytest.raises(UnsafeArchive, match="corrupt"):
        unpack_zip(bytes(data), tmp_path / "code", max_bytes=50_000)


def test_duplicate_entries_and_non_zips_are_refused(tmp_path: Path) -> None:
    with pytest.raises(UnsafeArchive, match="not a zip"):
        unpack_zip(b"hello", tmp_path / "a")
    with pytest.warns(UserWarning):
        dup = make_zip([("trainer/main.py", b"1"), ("trainer/main.py", b"2")])
    with pytest.raises(UnsafeArchive, match="twice"):
        unpack_zip(dup, tmp_path / "b")


def test_manifest_parts_are_split() -> None:
    config = {"role": "trainer", "job": {"id": "j", "name": "n"}}
    body, ctype = multipart(
        {"config": json.dumps(config).encode(), "code.zip": b"PK\x03\x04\r\n--x"}
    )
    manifest = parse_manifest(body, ctype)
    assert manifest.config == config and manifest.role == "trainer"
    assert manifest.code_zip == b"PK\x03\x04\r\n--x"


@pytest.mark.parametrize(
    ("parts", "ctype", "message"),
    [
        ({"config": b"{}"}, None, "lacks part"),
        ({"config": b"nope", "code.zip": b""}, None, "not JSON"),
        ({"config": b'{"role": ""}', "code.zip": b""}, None, "role"),
        ({"config": b"{}", "code.zip": b""}, "application/json", "not multipart"),
    ],
)
def test_bad_manifests_are_named(parts: dict[str, bytes], ctype: str | None, message: str) -> None:
    body, real_ctype = multipart(parts)
    with pytest.raises(ManifestError, match=message):
        parse_manifest(body, ctype or real_ctype)


def test_log_tail_keeps_whole_last_lines(tmp_path: Path) -> None:
    log = tmp_path / "task.log"
    log.write_text("".join(f"line {i}\n" for i in range(1000)))
    tail = log_tail(log, limit=100)
    assert tail.endswith("line 999\n") and tail.startswith("line ")
    assert len(tail.encode()) <= 100
    assert log_tail(tmp_path / "missing.log") == ""
