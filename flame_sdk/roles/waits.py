"""Bounds on every wait for a peer: the default timeouts and the error a role ends with."""

from __future__ import annotations

from flame_sdk.config import Config, ConfigError

JOIN_TIMEOUT = "joinTimeout"
ROUND_TIMEOUT = "roundTimeout"
UPSTREAM_TIMEOUT = "upstreamTimeout"
REJOIN_TIMEOUT = "rejoinTimeout"

DEFAULTS = {
    JOIN_TIMEOUT: 300.0,
    ROUND_TIMEOUT: 600.0,
    UPSTREAM_TIMEOUT: 1800.0,
    REJOIN_TIMEOUT: 30.0,
}
"""Seconds: waiting for peers to be present (`joinTimeout`), for the updates of a round or of
a FedBuff version (`roundTimeout`), for the next message of the role above while it is
present (`upstreamTimeout`: the aggregator's next model, the coordinator's next instruction),
and for an aggregator once the one serving this role left mid-training (`rejoinTimeout`: a
departure is seen only while this role hears the broker, so an outage of its own is not one)."""

EXIT_PEER_WAIT = 3
"""Exit code of a role process that ended because a wait for a peer ran out (`Role.run`)."""

EXIT_BROKER_OUTAGE = 4
"""Exit code of a role process whose broker backend gave up after a long outage."""


class PeerWaitError(RuntimeError):
    """A role waited for a peer longer than its bound; the message names the peer and the wait."""


def wait_seconds(config: Config, name: str) -> float:
    """The hyperparameter `name` (seconds, per role if a mapping; null means the default)."""
    value = config.hyperparameter(name)
    if value is None:
        return DEFAULTS[name]
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise ConfigError(
            f"hyperparameter {name} must be a number of seconds, got {value!r}"
        ) from None
    if not seconds > 0:
        raise ConfigError(f"hyperparameter {name} must be positive, got {value!r}")
    return seconds
