"""`flame up|down|status`: run the local stack (embedded MongoDB and the services) in background.

The services run under a supervisor (`supervisor.py`) that restarts a crashed one; every
process has its own process group, its pid recorded in `$FLAME_HOME/run/<part>.pid` and its
logs in `$FLAME_HOME/logs/<part>.log`. `down` stops only what those pid files name.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import time
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlsplit

import typer

from flame_common.embedded import free_port, port_open
from flame_common.extras import MissingExtra, require
from flame_common.settings import FlameSettings
from flame_common.tls import with_ca_file
from flame_sdk.cli import mqtt, probes
from flame_sdk.cli.bootstrap import (
    admin_token,
    dashboard_link,
    service_secrets,
    write_cli_config,
)
from flame_sdk.cli.services import SERVICES
from flame_sdk.cli.stack_state import Stack
from flame_sdk.cli.supervisor import read_state
from flame_sdk.cli.version import version_callback
from flame_sdk.cli.workers import workers

SUPERVISOR = "flame_sdk.cli.supervisor"
RABBIT_HINT = "apt-get install -y rabbitmq-server && rabbitmq-server -detached"
MONGO_PORT = 27017


PARTS = ("mongo", mqtt.PART, *(s.name for s in SERVICES))

app = typer.Typer(help="Run Flame's local stack in the background.", no_args_is_help=True)


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=version_callback("flame"),
            is_eager=True,
            help="Print the version.",
        ),
    ] = False,
) -> None:
    """Run Flame's local stack in the background."""


def _start_mongo(stack: Stack) -> str:
    data_dir = stack.settings.home / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    port = MONGO_PORT if not port_open("127.0.0.1", MONGO_PORT) else free_port()
    exe = shutil.which("nx-27017")
    argv = [exe] if exe else [sys.executable, "-m", "nx_27017"]
    argv += ["--data-dir", str(data_dir), "--host", "127.0.0.1", "-p", str(port)]
    # nx-27017's default pid/log files are fixed /tmp paths (one server per machine)
    argv += ["--pid-file", str(data_dir / "nx-27017.pid"), "--log-file", str(data_dir / "nx.log")]
    proc = stack.spawn("mongo", argv, dict(os.environ))
    url = f"mongodb://127.0.0.1:{port}/"
    stack.record("mongo", proc, url=url)
    deadline = time.monotonic() + 15
    while not port_open("127.0.0.1", port):
        if not proc.is_running() or time.monotonic() > deadline:
            _fail(f"the embedded MongoDB did not start:\n{stack.log_tail('mongo')}")
        time.sleep(0.05)
    return url


def _mqtt(stack: Stack, settings: FlameSettings) -> tuple[FlameSettings, dict[str, str]]:
    """The stack's own Mosquitto as the MQTT job broker, its admin login for the controller
    (none when FLAME_JOB_BROKERS or FLAME_MQTT_ADMIN_URL is set: the user chose)."""
    if mqtt.JOB_BROKERS in os.environ or settings.mqtt_admin_url:
        return settings, {}
    try:
        local = mqtt.ensure_mqtt(stack)
    except mqtt.MqttUnavailable as exc:
        typer.echo(
            f"warning: no MQTT job broker ({exc}): jobs with backend mqtt cannot run", err=True
        )
        return settings, {}
    brokers = [*(b for b in settings.job_brokers if b.get("sort") != "mqtt"), local.job_broker]
    env = {"FLAME_JOB_BROKERS": json.dumps(brokers), "FLAME_MQTT_ADMIN_URL": local.admin_url}
    return settings.with_overrides(job_brokers=brokers), env


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


def _tls(settings: FlameSettings) -> tuple[FlameSettings, dict[str, str]]:
    """`--tls`: the local CA and server certificate under $FLAME_HOME/tls (made once), the
    apiserver on HTTPS, every client trusting the CA (FLAME_CA_FILE when set, else the local
    one) and amqps:// / mqtts:// broker URLs given that CA file; returns the env to add."""
    from flame_common.certs import DEFAULT_HOSTS, ensure_local_certs

    extra = [] if settings.api_host in ("0.0.0.0", "::", *DEFAULT_HOSTS) else [settings.api_host]
    certs = ensure_local_certs(settings.home / "tls", [*DEFAULT_HOSTS, *extra])
    ca = settings.ca_file or str(certs.ca_file)
    brokers = [
        {**b, "host": with_ca_file(b["host"], ca)} if "host" in b else b
        for b in settings.job_brokers
    ]
    values = {
        "api_tls_cert": str(certs.cert_file),
        "api_tls_key": str(certs.key_file),
        "ca_file": ca,
        "rabbit_url": with_ca_file(settings.rabbit_url, ca),
    }
    env = {f"FLAME_{name.upper()}": value for name, value in values.items()}
    env["FLAME_JOB_BROKERS"] = json.dumps(brokers)
    return settings.with_overrides(**values, job_brokers=brokers), env


def _plain(settings: FlameSettings, mongo_url: str) -> list[str]:
    """What still travels in clear under `--tls` (the local brokers and MongoDB are not ours to
    reconfigure: their URLs say whether they use TLS)."""
    plain = [] if settings.rabbit_url.startswith("amqps://") else ["rabbitmq (FLAME_RABBIT_URL)"]
    urls = [b.get("host", "") for b in settings.job_brokers]
    if any(not u.startswith(("amqps://", "mqtts://")) for u in urls):
        plain.append("job brokers (FLAME_JOB_BROKERS)")
    if "tls=true" not in mongo_url.lower() and "ssl=true" not in mongo_url.lower():
        plain.append("mongodb (FLAME_MONGO_URL)")
    return plain


@app.command()
def up(
    timeout: Annotated[float, typer.Option(help="seconds to wait for the apiserver")] = 60.0,
    tls: Annotated[
        bool,
        typer.Option(
            "--tls",
            help="HTTPS with a local CA's certificate ($FLAME_HOME/tls), verified by every "
            "client; amqps:// and mqtts:// broker URLs get its CA file.",
        ),
    ] = False,
) -> None:
    """Start MongoDB (embedded, unless FLAME_MONGO_URL is set) and the services."""
    try:  # the services (and the embedded MongoDB) come with the 'server' extra
        require("server", "flame up")
    except MissingExtra as exc:
        _fail(str(exc))
    settings = FlameSettings()
    stack = Stack(settings)
    tls_env: dict[str, str] = {}
    if tls:
        settings, tls_env = _tls(settings)
    if not probes.rabbit_answers(settings.rabbit_url):
        _fail(f"RabbitMQ does not answer at {_safe(settings.rabbit_url)}; start it: {RABBIT_HINT}")
    mongo_url = settings.mongo_url
    if not mongo_url:
        running = stack.process("mongo")
        info = stack.info("mongo") or {}
        mongo_url = str(info["url"]) if running and "url" in info else _start_mongo(stack)
    settings, mqtt_env = _mqtt(stack, settings)
    # the admin token is kept before anything starts: a later `up` finds the same one
    config_path = settings.home / "config.yaml"
    token = admin_token(config_path)
    endpoint, ca_file = settings.apiserver_url, settings.ca_file if settings.api_tls_cert else ""
    supervisor = stack.process("supervisor")
    running_at = (stack.info("supervisor") or {}).get("endpoint", endpoint)
    if supervisor is not None and running_at != endpoint:
        _fail(f"the stack already runs at {running_at}; `flame down` first to serve {endpoint}")
    config = write_cli_config(config_path, endpoint, token, ca_file)
    env = {**os.environ, "FLAME_MONGO_URL": mongo_url, "FLAME_HOME": str(settings.home)}
    env.update(service_secrets(token), **tls_env, **mqtt_env)
    asked = time.time()
    if supervisor is None:
        supervisor = stack.spawn("supervisor", [sys.executable, "-m", SUPERVISOR], env)
        stack.record("supervisor", supervisor, endpoint=endpoint, ca_file=ca_file)
    else:
        supervisor.send_signal(signal.SIGHUP)  # restart the services it had left down
    deadline = time.monotonic() + timeout
    while not (probes.http_answers(endpoint, ca_file) and probes.consumers_ready(settings)):
        if not supervisor.is_running() or supervisor.status() == "zombie":
            _fail(f"the supervisor exited:\n{stack.log_tail('supervisor')}")
        supervised = read_state(stack.run_dir)
        for name, svc in supervised.get("services", {}).items():
            if svc.get("state") == "down" and supervised.get("at", 0) > asked:
                _fail(f"{name} keeps crashing ({_last_exit(svc)}):\n{stack.log_tail(name)}")
        if time.monotonic() > deadline:
            _fail(f"the stack did not become ready within {timeout:g} s (see {stack.log_dir})")
        time.sleep(0.2)
    typer.echo(f"apiserver  {endpoint}")
    typer.echo(f"mongodb    {mongo_url}")
    typer.echo(f"rabbitmq   {_safe(settings.rabbit_url)} (namespace {settings.namespace})")
    if mqtt_env:
        typer.echo(
            f"mosquitto  {settings.job_brokers[-1]['host']} (dynamic security: a client per job)"
        )
    typer.echo(f"logs       {stack.log_dir}")
    typer.echo(f"flamectl   {config}")
    typer.echo(f"dashboard  {dashboard_link(config)}  (the admin token: keep it private)")
    if tls:
        typer.echo(f"tls        CA {ca_file} (flamectl, flamelets and the services verify with it)")
        if plain := _plain(settings, mongo_url):
            typer.echo(f"warning: without TLS: {', '.join(plain)} (see docs/security.md, TLS)")


def _safe(url: str) -> str:
    parts = urlsplit(url)
    netloc = parts.hostname or ""
    port = parts.port or (5671 if parts.scheme == "amqps" else 5672)
    return f"{parts.scheme}://{netloc}:{port}{parts.path}"


def _last_exit(svc: dict[str, Any]) -> str:
    last = svc.get("last_exit") or {}
    if not last:
        return "-"
    when = datetime.fromtimestamp(float(last["at"])).strftime("%H:%M:%S")
    return f"{last['reason']} at {when}"


@app.command()
def status() -> None:
    """Show each part of the stack (pid, up since, restarts, last exit, probe) and the workers."""
    settings = FlameSettings()
    stack = Stack(settings)
    supervisor = stack.process("supervisor")
    recorded = stack.info("supervisor") or {}
    endpoint = str(recorded.get("endpoint") or settings.apiserver_url)
    ca_file = str(recorded.get("ca_file") or settings.ca_file)
    services = read_state(stack.run_dir).get("services", {}) if supervisor else {}
    healthy = supervisor is not None
    supervised = f"running (pid {supervisor.pid})" if supervisor else "stopped"
    typer.echo(f"{'supervisor':<11}{supervised}")
    for part in PARTS:
        proc = stack.process(part)
        svc = services.get(part, {})
        state = f"running (pid {proc.pid})" if proc else svc.get("state", "stopped")
        check = ""
        if part in services:
            since = datetime.fromtimestamp(proc.create_time()) if proc else None
            check = f"up since {since:%H:%M:%S}  " if since else ""
            check += f"restarts {svc.get('restarts', 0)}  last exit {_last_exit(svc)}  "
        if part == "apiserver" and proc:
            ok = probes.http_answers(endpoint, ca_file)
            check += f"http {endpoint} {'ok' if ok else 'not answering'}"
            healthy &= ok
        elif part == mqtt.PART and proc:
            port = int((stack.info(part) or {}).get("port", 0))
            ok = port_open("127.0.0.1", port)
            check = f"port {port} {'ok' if ok else 'closed'}"
            healthy &= ok
        elif part == "mongo" and proc:
            url = urlsplit(str((stack.info(part) or {}).get("url", "")))
            ok = port_open(url.hostname or "127.0.0.1", url.port or MONGO_PORT)
            check = f"port {url.port} {'ok' if ok else 'closed'}"
            healthy &= ok
        if proc and (scraped := metrics_url(settings, part, endpoint)):
            check = f"{check.rstrip()}  metrics {scraped}".lstrip()
        if part == "mongo" and settings.mongo_url and not proc:
            state, check = "external", settings.mongo_url
        elif part == mqtt.PART and not proc:
            state = "external" if mqtt.names_mqtt(settings.job_brokers) else "none"
        else:
            healthy &= proc is not None
        typer.echo(f"{part:<11}{state:<24}{check}".rstrip())
        if svc.get("last_exit") and svc["last_exit"].get("log"):
            typer.echo(f"{'':<11}last log line: {svc['last_exit']['log'][:200]}")
    rabbit = probes.rabbit_answers(
        with_ca_file(settings.rabbit_url, ca_file) if ca_file else settings.rabbit_url
    )
    typer.echo(
        f"{'rabbitmq':<11}{'ok' if rabbit else 'not answering':<24}{_safe(settings.rabbit_url)}"
    )
    _show_workers(stack)
    if not (healthy and rabbit):
        raise typer.Exit(1)


def metrics_url(settings: FlameSettings, part: str, endpoint: str) -> str:
    """Where a part of the stack serves its Prometheus metrics ("" for none)."""
    if part == "apiserver":
        return f"{endpoint}/metrics"
    port = getattr(settings, f"metrics_port_{part}", 0)
    return f"http://{settings.metrics_host}:{port}/metrics" if port else ""


def _show_workers(stack: Stack) -> None:
    """One line per job, then one per live worker: task, role, flamelet pid, role code pid."""
    deployer = stack.process("deployer")
    found = workers(deployer) if deployer else []
    jobs = sorted({w.job_id for w in found})
    typer.echo(f"{'workers':<11}{len(found)} in {len(jobs)} job(s)")
    for job_id in jobs:
        typer.echo(f"  job {job_id}")
        for w in (w for w in found if w.job_id == job_id):
            role = f"role pid {w.role_pid}" if w.role_pid else "role not running"
            line = f"task {w.task_id}  role {w.role or '-':<20} flamelet pid {w.pid}  {role}"
            typer.echo(f"    {line}")


@app.command()
def down() -> None:
    """Stop everything `flame up` started (by recorded pid and process group, nothing else)."""
    settings = FlameSettings()
    stack = Stack(settings)
    grace = settings.stop_grace_seconds + 10
    services = [s.name for s in SERVICES if stack.process(s.name)]
    # the supervisor stops the services (together; they stop their own workers) and exits
    stopped = [*stack.stop(["supervisor"], grace + 15), *services]
    stack.stop(services, grace)  # whatever the supervisor left running
    for part in [*stopped, *stack.stop(["mongo", mqtt.PART], grace)]:
        typer.echo(f"stopped {part}")


def main() -> None:
    app()
