"""Use the server-side libraries once (run by a scratch venv's python, with its nx-27017 on PATH).

Imports alone miss API changes; this exercises what the lower bounds must support: Beanie on
pymongo's AsyncMongoClient against nx-27017, a FastAPI request, a multipart body (flamelet's
parser) and a FastStream broker object. Prints `smoke ok` and exits 0, else raises.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path


async def database(data_dir: Path) -> None:
    from flame_common.db import init_db
    from flame_common.documents import DesignDoc
    from flame_common.embedded import start_embedded_mongo
    from flame_common.settings import FlameSettings

    server = start_embedded_mongo(data_dir)
    try:
        settings = FlameSettings(mongo_url=server.url, mongo_db="smoke", home=data_dir / "home")
        client = await init_db(settings)
        try:
            assert await DesignDoc.find_all().to_list() == []
            # the raw collection, as the controller's store writes it (Beanie 2's name for it)
            assert await DesignDoc.get_pymongo_collection().count_documents({}) == 0
        finally:
            await client.close()
    finally:
        server.stop()


async def web(home: Path) -> None:
    import httpx

    from flame_apiserver.app import create_app
    from flame_common.settings import FlameSettings

    app = create_app(FlameSettings(home=home, mongo_url="", log_json=False))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://smoke") as client:
        answer = await client.get("/healthz")
    assert answer.status_code == 200 and answer.json() == {"status": "ok"}, answer.text


def multipart() -> None:
    from flamelet.manifest import parse_manifest

    boundary = "smokeboundary"
    parts = [("config", b'{"role": "trainer"}'), ("code.zip", b"PK\x05\x06" + b"\0" * 18)]
    body = b""
    for name, data in parts:
        body += f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
        body += data + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    manifest = parse_manifest(body, f"multipart/form-data; boundary={boundary}")
    assert manifest.config == {"role": "trainer"} and manifest.code_zip == parts[1][1]


def broker() -> None:
    from flame_common.bus import events_exchange, make_broker
    from flame_common.settings import FlameSettings

    settings = FlameSettings()
    make_broker(settings)  # built, not connected
    assert events_exchange(settings).name


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(database(Path(tmp) / "mongo"))
        asyncio.run(web(Path(tmp) / "home"))
    multipart()
    broker()
    print("smoke ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
