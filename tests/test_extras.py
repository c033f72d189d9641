"""A feature whose extra is not installed says which one: `pip install 'flame-fl[<extra>]'`."""

from __future__ import annotations

import importlib.util

import pytest

from flame_common import extras
from flame_common.extras import MissingExtra, missing_modules, require
from flame_sdk.backends import create_backend
from flame_sdk.weights import adapter_for


@pytest.fixture
def without(monkeypatch: pytest.MonkeyPatch):
    """Make the named top-level modules look uninstalled to the extras checks."""

    def hide(*names: str) -> None:
        real = importlib.util.find_spec

        def find_spec(name: str, *args: object, **kwargs: object):
            return None if name in names else real(name, *args, **kwargs)

        monkeypatch.setattr(extras.importlib.util, "find_spec", find_spec)

    return hide


def test_every_extra_is_installed_here() -> None:
    for extra in extras.EXTRAS:
        assert missing_modules(extra) == [], extra


def test_missing_extra_names_the_pip_command(without) -> None:
    without("aiomqtt")
    with pytest.raises(MissingExtra) as raised:
        require("mqtt", "the MQTT backend")
    assert raised.value.extra == "mqtt" and raised.value.missing == ("aiomqtt",)
    assert str(raised.value) == (
        "the MQTT backend needs the 'mqtt' extra (aiomqtt not installed): "
        "pip install 'flame-fl[mqtt]'"
    )
    assert isinstance(raised.value, ImportError)


def test_mqtt_backend_without_the_extra(without) -> None:
    without("paho")
    with pytest.raises(MissingExtra, match=r"pip install 'flame-fl\[mqtt\]'"):
        create_backend("mqtt", "127.0.0.1:1883", "job", "end")


def test_torch_framework_without_the_extra(without) -> None:
    without("torch")
    with pytest.raises(MissingExtra, match=r"framework 'torch' needs the 'ml' extra"):
        adapter_for("torch")
