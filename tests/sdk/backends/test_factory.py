"""The backend factory and the adapters' address/name validation."""

from __future__ import annotations

import pytest

from flame_sdk.backends import create_backend
from flame_sdk.backends.local import LocalBackend, hub_for
from flame_sdk.backends.mqtt import MQTTBackend, broker_login, parse_broker
from flame_sdk.backends.p2p import P2PBackend
from flame_sdk.backends.rabbitmq import RabbitMQBackend, broadcast_key, unicast_key


def test_factory_builds_each_sort() -> None:
    assert isinstance(create_backend("local", "", "j", "e"), LocalBackend)
    assert isinstance(create_backend("rabbitmq", "amqp://h/", "j", "e"), RabbitMQBackend)
    assert isinstance(create_backend("mqtt", "localhost:1884", "j", "e"), MQTTBackend)
    assert isinstance(create_backend("p2p", "amqp://h/", "j", "e"), P2PBackend)


def test_unknown_sort_is_named_in_the_error() -> None:
    with pytest.raises(ValueError, match=r"unknown backend sort 'grpc'.*p2p"):
        create_backend("grpc", "", "j", "e")


def test_local_backends_of_one_job_share_a_hub() -> None:
    a, b = create_backend("local", "", "job-x", "a"), create_backend("local", "", "job-x", "b")
    c = create_backend("local", "", "job-y", "c")
    assert isinstance(a, LocalBackend) and isinstance(b, LocalBackend)
    assert isinstance(c, LocalBackend)
    assert a.hub is b.hub is hub_for("job-x") and c.hub is not a.hub


def test_rabbitmq_needs_an_amqp_url() -> None:
    with pytest.raises(ValueError, match="amqp:// or amqps:// URL"):
        create_backend("rabbitmq", "localhost:5672", "j", "e")


@pytest.mark.parametrize("sort", ["rabbitmq", "mqtt"])
@pytest.mark.parametrize("seconds", [0.0, -1.0, float("nan"), float("inf"), 1e12])
def test_the_outage_bound_is_itself_bounded(sort: str, seconds: float) -> None:
    """It becomes a reconnection deadline and, on RabbitMQ, how long a queue waits for its end."""
    broker = "amqp://h/" if sort == "rabbitmq" else "h:1883"
    with pytest.raises(ValueError, match=r"brokerOutageTimeout\) must be in \(0, 86400\]"):
        create_backend(sort, broker, "j", "e", outage_timeout=seconds)
    backend = create_backend(sort, broker, "j", "e", outage_timeout=86400)
    assert isinstance(backend, RabbitMQBackend | MQTTBackend) and backend.outage_timeout == 86400


def test_routing_keys_escape_dots_and_wildcards() -> None:
    assert unicast_key("a.b", "g", "trainer", "t#1") == "u.a%2Eb.g.trainer.t%231"
    assert broadcast_key("c", "*", "r") == "b.c.%2A.r"


def test_mqtt_broker_addresses() -> None:
    assert parse_broker("mqtt://h:1884") == ("h", 1884)
    assert parse_broker("h") == ("h", 1883)
    assert parse_broker("10.0.0.1:1900") == ("10.0.0.1", 1900)
    with pytest.raises(ValueError, match="mqtt broker must look like"):
        parse_broker("http://h:80")


def test_mqtt_logins_come_from_the_broker_url_and_stay_out_of_errors() -> None:
    served = "mqtt://ns.job.j1:p%40ss%2Fword@h:1884"
    assert parse_broker(served) == ("h", 1884)
    assert broker_login(served) == ("ns.job.j1", "p@ss/word")
    assert broker_login("u:pw@h") == ("u", "pw")
    assert broker_login("mqtts://h:8883?cafile=/ca.pem") == broker_login("h") == (None, None)
    backend = MQTTBackend(served, "j1", "t1")
    assert (backend.username, backend.password) == ("ns.job.j1", "p@ss/word")
    with pytest.raises(ValueError, match="mqtt broker must look like") as info:
        parse_broker("http://u:secret@h:80")
    assert "secret" not in str(info.value)


def test_mqtt_refuses_names_that_break_topics() -> None:
    with pytest.raises(ValueError, match="job id 'a/b'"):
        create_backend("mqtt", "h", "a/b", "e")


def test_liveness_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="heartbeat_interval < liveness_timeout"):
        create_backend("rabbitmq", "amqp://h/", "j", "e", heartbeat_interval=5, liveness_timeout=1)
