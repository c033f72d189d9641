"""The notifier's lost-agent decision on a fake clock (no services, no sleeping)."""

from __future__ import annotations

from flame_notifier.presence import Silence
from tests.support.clock import FakeClock

TIMEOUT = 3.0


def test_an_agent_is_silent_only_once_the_whole_timeout_passed() -> None:
    clock = FakeClock()
    silence = Silence(TIMEOUT, clock)
    silence.heard("t1")
    clock.advance(TIMEOUT)
    assert silence.silent() == []
    clock.advance(0.001)
    assert silence.silent() == ["t1"]


def test_heartbeats_keep_an_agent_alive_past_the_timeout() -> None:
    clock = FakeClock()
    silence = Silence(TIMEOUT, clock)
    silence.heard("beating")
    silence.heard("quiet")
    for _ in range(5):  # 3 timeouts in all, a beat every 0.6 timeout
        clock.advance(0.6 * TIMEOUT)
        silence.heard("beating")
    assert silence.silent() == ["quiet"]
    clock.advance(TIMEOUT + 0.001)  # the beats stop
    assert sorted(silence.silent()) == ["beating", "quiet"]


def test_a_forgotten_agent_is_never_silent() -> None:
    clock = FakeClock()
    silence = Silence(TIMEOUT, clock)
    silence.heard("done")
    silence.forget("done")
    silence.forget("never-watched")
    clock.advance(100 * TIMEOUT)
    assert silence.silent() == []


def test_hearing_again_after_forgetting_watches_from_now() -> None:
    clock = FakeClock()
    silence = Silence(TIMEOUT, clock)
    silence.heard("t1")
    clock.advance(2 * TIMEOUT)
    silence.forget("t1")
    silence.heard("t1")  # e.g. a new agent registered for the task
    clock.advance(TIMEOUT)
    assert silence.silent() == []
    clock.advance(0.001)
    assert silence.silent() == ["t1"]
