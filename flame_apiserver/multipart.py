"""Build `multipart/form-data` response bodies (the task manifest an agent downloads)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass


@dataclass(frozen=True)
class Part:
    """One file part; its form name is also its file name (Flame's `config`, `code.zip`)."""

    name: str
    content: bytes
    content_type: str


def encode_form(parts: list[Part]) -> tuple[bytes, str]:
    """Return (body, content type with boundary); the boundary never occurs in the contents."""
    while True:
        boundary = f"flame-{secrets.token_hex(16)}"
        marker = boundary.encode()
        if not any(marker in part.content for part in parts):
            break
    chunks: list[bytes] = []
    for part in parts:
        chunks.append(
            f"--{boundary}\r\n"
            f'Content-Disposition: form-data; name="{part.name}"; filename="{part.name}"\r\n'
            f"Content-Type: {part.content_type}\r\n\r\n".encode()
        )
        chunks.append(part.content)
        chunks.append(b"\r\n")
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks), f"multipart/form-data; boundary={boundary}"
