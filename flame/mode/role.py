"""`flame.mode.role.Role`: the base of every Flame role class, over flame_sdk's `Role`."""

from __future__ import annotations

import abc
import sys
from pathlib import Path
from typing import Any

from flame.config import as_flame_config
from flame.runtime import running_chain
from flame_sdk.config import Config as SdkConfig
from flame_sdk.config import ConfigError
from flame_sdk.roles.base import Role as SdkRole
from flame_sdk.weights import ModelAdapter, adapter_for

ConfigSource = SdkConfig | str | Path | dict[str, Any]


class FlameRoleMeta(abc.ABCMeta):
    """Builds a Flame role the way Flame's user code expects: the user's `__init__(config)`
    runs first (it sets `self.config`, `self.model`, ... and never calls the base class), then
    the SDK role's own state is added around what it set. `config` may be a path, a dict, our
    SDK's Config (flame-sim) or a `flame.config.Config`; the role always sees the latter."""

    def __call__(cls, config: ConfigSource, *args: Any, **kw: Any) -> Any:
        flame_config = as_flame_config(config)
        role = super().__call__(flame_config, *args, **kw)
        role.attach_sdk(flame_config)
        return role


def framework_of(role: SdkRole) -> str:
    """The model framework: the `framework` hyperparameter or class attribute, else Flame's
    rule (torch when the role's program imported it); Keras/TensorFlow is refused."""
    name = role.config.hyperparameters.get("framework") or type(role).framework
    if name:
        return str(name)
    if "torch" in sys.modules:
        return "torch"
    if "tensorflow" in sys.modules:
        raise ConfigError(
            "Keras/TensorFlow role code is not supported by the Flame compatibility layer "
            "(PyTorch or numpy models only; see docs/flame-compat.md)"
        )
    return "numpy"


class Role(SdkRole, metaclass=FlameRoleMeta):
    """Flame's role base. Subclasses of the mode classes implement `initialize`, `load_data`,
    `train` and `evaluate`; a fully custom mode also implements `compose` (with
    `flame.mode.composer.Composer`), `run` and its own `internal_init`, and talks through
    `flame.channel_manager.ChannelManager` (blocking calls)."""

    def __init__(self, config: Any, *args: Any, **kwargs: Any) -> None:
        """What a Flame user's `__init__` replaces; the SDK's state comes in `attach_sdk`."""
        self.config = config

    def attach_sdk(self, config: SdkConfig) -> None:
        """Initialise the SDK role, keeping every attribute the user's `__init__` set."""
        mine = dict(vars(self))
        super().__init__(config)
        vars(self).update(mine)
        self.config = as_flame_config(self.config)

    @property
    def adapter(self) -> ModelAdapter:
        if self._adapter is None:
            self._adapter = adapter_for(framework_of(self))
        return self._adapter

    @property
    def registry_client(self) -> Any:
        """Flame's name for the role's registry."""
        return self.registry

    async def arun(self) -> None:
        await running_chain(super().arun)
