"""Console entry `flame-apiserver`: the REST API under uvicorn (HTTPS with FLAME_API_TLS_CERT)."""

from __future__ import annotations

from flame_common.cli import require_server, service_parser
from flame_common.logs import configure_logging
from flame_common.settings import FlameSettings
from flame_common.titles import set_title


def main(argv: list[str] | None = None) -> None:
    service_parser(
        "flame-apiserver", "Flame's REST API (designs, datasets, jobs, tasks, events) on :10100."
    ).parse_args(argv)
    require_server("flame-apiserver")
    import uvicorn

    from flame_apiserver.app import create_app

    set_title("flame-apiserver")
    settings = FlameSettings()
    configure_logging("apiserver", level=settings.log_level, json=settings.log_json)
    uvicorn.run(
        create_app(settings),
        host=settings.api_host,
        port=settings.api_port,
        log_config=None,
        access_log=False,
        ssl_certfile=settings.api_tls_cert or None,
        ssl_keyfile=settings.api_tls_key or None,
    )


if __name__ == "__main__":
    main()
