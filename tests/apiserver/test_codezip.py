"""Unit tests of the code-zip checks (no services): path tricks, lying headers, per-role zips."""

from __future__ import annotations

import io
import struct
import zipfile

import pytest

from flame_apiserver.codezip import ZipLimits, role_zip, validate_code_zip
from schemas.errors import Invalid, NotFound, TooLarge
from tests.apiserver.conftest import MNIST_CODE
from tests.support.zips import make_zip

LIMITS = ZipLimits(max_files=100, max_unpacked_bytes=1_000_000)


@pytest.mark.parametrize(
    "name",
    ["trainer\\..\\..\\evil.py", "C:/evil.py", "\\evil.py", "trainer/./../../x"],
)
def test_unsafe_names(name: str) -> None:
    with pytest.raises(Invalid):
        validate_code_zip(make_zip({"trainer/main.py": b"x", name: b"x"}), LIMITS)


def test_duplicate_entries() -> None:
    with pytest.warns(UserWarning):
        data = make_zip([("trainer/main.py", b"a"), ("trainer/main.py", b"b")])
    with pytest.raises(Invalid, match="more than once"):
        validate_code_zip(data, LIMITS)


def _lie_about_size(data: bytes, size: int) -> bytes:
    """Rewrite the uncompressed size in the local and central headers of a one-entry zip."""
    raw = bytearray(data)
    local = raw.find(b"PK\x03\x04")
    struct.pack_into("<I", raw, local + 22, size)
    central = raw.find(b"PK\x01\x02")
    struct.pack_into("<I", raw, central + 24, size)
    return bytes(raw)


def test_lying_header_is_caught() -> None:
    bomb = _lie_about_size(make_zip({"trainer/big.bin": b"\0" * 2_000_000}), 10)
    with pytest.raises(Invalid, match="corrupt"):
        validate_code_zip(bomb, LIMITS)


def test_declared_size_limit() -> None:
    with pytest.raises(TooLarge):
        validate_code_zip(make_zip({"trainer/big.bin": b"\0" * 2_000_000}), LIMITS)


def test_valid_zip_roles_and_role_zip() -> None:
    data = make_zip({**MNIST_CODE, "trainer/": b"", "lib/x.py": b"1"})
    assert validate_code_zip(data, LIMITS) == ("aggregator", "lib", "trainer")
    trainer = zipfile.ZipFile(io.BytesIO(role_zip(data, "trainer", LIMITS)))
    assert sorted(trainer.namelist()) == ["trainer/main.py", "trainer/util.py"]
    assert trainer.read("trainer/util.py") == MNIST_CODE["trainer/util.py"]
    with pytest.raises(NotFound):
        role_zip(data, "coordinator", LIMITS)
