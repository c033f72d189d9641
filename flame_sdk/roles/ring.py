"""Ring all-reduce over a self-loop channel: every member ends with the size-weighted mean model."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from flame_sdk.channels import Channel
from flame_sdk.roles.aggregator import run_sized
from flame_sdk.weights import Weights, add, divided, nbytes, scaled, sum_dtype
from flame_sdk.wire import Key, Message

KIND = "ring.kind"
"""What a ring message is: `member`, `model`, `part` or `abort` (all carry `round`)."""
DIGEST = "ring.digest"
"""Member message: digest of the sender's member set (`view_digest`)."""
SYNCED = "ring.synced"
"""Member message: whether the sender holds the ring's model (False before its first ring)."""
PHASE = "ring.phase"
"""Part message: `reduce` (a partial sum of one chunk) or `gather` (a finished chunk)."""
STEP = "ring.step"
CHUNK = "ring.chunk"

MEMBER, MODEL, PART, ABORT = "member", "model", "part", "abort"
REDUCE, GATHER = "reduce", "gather"

TIMEOUT_PARAMETER = "ringTimeout"
DEFAULT_TIMEOUT = 600.0
"""Seconds a ring member waits for a peer's message before giving up the round's ring."""


def deadline_after(timeout: float | None) -> float | None:
    return None if timeout is None else time.monotonic() + timeout


def _remaining(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())


def view_digest(members: Iterable[str]) -> str:
    """A digest of a member set (order-free): equal digests mean equal sets."""
    return hashlib.sha256("\n".join(sorted(members)).encode()).hexdigest()[:32]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _well_formed(message: Message) -> bool:
    """Whether a ring message has the fields its kind needs, with the right types."""
    kind = message.get(KIND)
    if not _is_int(message.get(Key.ROUND)):
        return False
    if kind == MEMBER:
        return isinstance(message.get(DIGEST), str) and isinstance(message.get(SYNCED), bool)
    if kind == MODEL:
        return isinstance(message.get(Key.WEIGHTS), dict) and bool(message[Key.WEIGHTS])
    if kind == PART:
        return (
            message.get(PHASE) in (REDUCE, GATHER)
            and _is_int(message.get(STEP))
            and _is_int(message.get(CHUNK))
            and _is_int(message.get(Key.DATASET_SIZE))
            and isinstance(message.get(Key.WEIGHTS), dict)
        )
    return kind == ABORT


class Mailbox:
    """The ring channel's messages, taken by what a step waits for.

    Messages that arrive before their step are stashed; those of rounds before `round` are
    dropped. Member messages are kept apart: the latest one of each end answers the next
    membership check.
    """

    def __init__(self, channel: Channel, log: Any) -> None:
        self.channel = channel
        self.log = log
        self.me = channel.scope.end_id
        self.round = 0
        self._stash: list[tuple[str, Message]] = []
        self._members: dict[str, Message] = {}

    def advance(self, round_: int) -> None:
        """Enter `round_`: stashed messages of earlier rounds are dropped."""
        self.round = round_
        self._stash = [(s, m) for s, m in self._stash if m[Key.ROUND] >= round_]

    def _file(self, sender: str, message: Message) -> Message | None:
        """Sort an arrival: member messages are recorded, bad or stale ones dropped; returns
        the message when a step may want it."""
        if not _well_formed(message):
            self.log.warning(
                "malformed ring message dropped", sender=sender, kind=message.get(KIND)
            )
            return None
        if message[KIND] == MEMBER:
            self._members[sender] = message
            return None
        if message[Key.ROUND] < self.round:
            return None
        return message

    async def take(
        self,
        want: Callable[[str, Message], bool],
        watch: Collection[str],
        deadline: float | None,
        fatal: Collection[str] | None = None,
    ) -> tuple[str, Message | None] | None:
        """The first message from an end of `watch` that `want` accepts (stashed ones first;
        others arriving meanwhile are stashed). `(end, None)` once an end of `fatal` (default:
        all of `watch`) has left; None when the deadline passes."""
        for index, (origin, stashed) in enumerate(self._stash):
            if origin in watch and want(origin, stashed):
                del self._stash[index]
                return origin, stashed
        ends = set(watch)
        fatal = ends if fatal is None else set(fatal)
        while ends:
            got = await self.channel.recv_any(ends, timeout=_remaining(deadline))
            if got is None:
                return None
            sender, message = got
            if message is None:
                if sender in fatal:
                    return sender, None
                ends.discard(sender)
                continue
            kept = self._file(sender, message)
            if kept is None:
                continue
            if want(sender, kept):
                return sender, kept
            self._stash.append((sender, kept))
        return None

    async def drain(self, ends: Iterable[str]) -> None:
        """File every message of `ends` that has already arrived (without waiting)."""
        pending = {e for e in ends if self.channel.has(e)}
        while pending:
            got = await self.channel.recv_any(pending, timeout=0)
            if got is None:
                return
            sender, message = got
            if message is None:
                pending.discard(sender)
            elif (kept := self._file(sender, message)) is not None:
                self._stash.append((sender, kept))

    async def members(
        self, ends: Iterable[str], deadline: float | None
    ) -> dict[str, Message | None]:
        """The latest member message of each end (None: the end left or the deadline passed)."""
        answers: dict[str, Message | None] = {}
        pending = set(ends)
        while True:
            for end in [e for e in pending if e in self._members]:
                answers[end] = self._members.pop(end)
                pending.discard(end)
            if not pending:
                return answers
            got = await self.channel.recv_any(pending, timeout=_remaining(deadline))
            if got is None:
                return {**answers, **dict.fromkeys(pending)}
            sender, message = got
            if message is None:
                answers[sender] = None
                pending.discard(sender)
            elif (kept := self._file(sender, message)) is not None:
                self._stash.append((sender, kept))

    async def await_visible(self, ends: Collection[str], deadline: float | None) -> bool:
        """Wait until every end of `ends` is present on the channel; False if time runs out."""
        while any(not self.channel.has(e) for e in ends if e != self.me):
            wanted = len(self.channel.all_ends()) + 1
            if not await self.channel.await_join(wanted, _remaining(deadline)):
                return False
        return True

    async def abort(self, round_: int) -> None:
        """Tell every end of the channel that this end gives up the ring of `round_`."""
        await self.channel.broadcast({KIND: ABORT, Key.ROUND: round_})


# membership --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Agreement:
    """What every member of a consistent membership check concludes alike."""

    members: list[str]  # ring order: sorted ids
    round: int  # the highest round of any member (late joiners catch up)
    committer: str  # smallest id among members holding the ring's model (else among all)
    unsynced: list[str]  # members that get the committer's model before training


def agree(
    me: str,
    view: Collection[str],
    own_round: int,
    own_synced: bool,
    answers: Mapping[str, Message | None],
) -> tuple[Agreement | None, str]:
    """The agreement of a membership check, or (None, reason) when the members differ: an end
    of `view` did not answer, or an answer names another member set."""
    digest = view_digest(view)
    rounds, synced = [own_round], {me: own_synced}
    for end in view:
        if end == me:
            continue
        answer = answers.get(end)
        if answer is None:
            return None, f"no member message from {end}"
        if answer[DIGEST] != digest:
            return None, f"{end} sees other members"
        rounds.append(int(answer[Key.ROUND]))
        synced[end] = bool(answer[SYNCED])
    members = sorted(view)
    holders = [m for m in members if synced[m]] or members
    agreement = Agreement(
        members=members,
        round=max(rounds),
        committer=holders[0],
        unsynced=[m for m in members if not synced[m]],
    )
    return agreement, ""


# all-reduce --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reduced:
    """A finished all-reduce: the weighted mean model and the members' total sample count."""

    weights: Weights
    total: int


def split_chunks(weights: Mapping[str, np.ndarray], n: int) -> list[list[str]]:
    """`n` contiguous groups of whole arrays (in `weights` order), balanced by bytes; groups may
    be empty when there are fewer arrays than members."""
    chunks: list[list[str]] = [[] for _ in range(n)]
    total = nbytes(weights)
    offset = 0
    for name, array in weights.items():
        middle = offset + array.nbytes / 2
        index = min(n - 1, int(middle * n / total)) if total else 0
        chunks[index].append(name)
        offset += int(array.nbytes)
    return chunks


def _fits(
    part: Mapping[str, Any], names: list[str], like: Mapping[str, np.ndarray], phase: str
) -> bool:
    """Whether a received chunk holds exactly `names`, shaped as in `like`, as partial sums
    (`reduce`) or in the model's own dtypes (`gather`)."""
    if set(part) != set(names):
        return False
    for name in names:
        got, ref = part[name], like[name]
        dtype = sum_dtype(ref.dtype) if phase == REDUCE else ref.dtype
        if not isinstance(got, np.ndarray) or got.shape != ref.shape or got.dtype != dtype:
            return False
    return True


class _RingFailure(Exception):
    """The ring cannot finish this round; the message says why."""


async def allreduce(
    mailbox: Mailbox,
    members: list[str],
    weights: Weights,
    size: int,
    timeout: float | None,
) -> Reduced | None:
    """Ring all-reduce of `size`-weighted `weights` among `members` (in ring order, this end
    included): reduce-scatter then all-gather over chunks of whole arrays, sending to the next
    member and receiving from the previous one. Every member ends with `Σ n_i·w_i / Σ n_i`.

    Returns None (after telling the others) when the previous member left, a peer gave up,
    a message did not fit, or the previous member was silent for `timeout` seconds (per
    message); the caller then keeps its local model.
    """
    n = len(members)
    rank = members.index(mailbox.me)
    right, left = members[(rank + 1) % n], members[(rank - 1) % n]
    peers = [m for m in members if m != mailbox.me]
    round_ = mailbox.round
    chunks = split_chunks(weights, n)

    def wanted(phase: str, step: int) -> Callable[[str, Message], bool]:
        def accept(sender: str, message: Message) -> bool:
            if message[Key.ROUND] != round_:
                return False
            return message[KIND] == ABORT or (
                sender == left
                and message[KIND] == PART
                and (message[PHASE], message[STEP]) == (phase, step)
            )

        return accept

    async def exchange(
        phase: str, step: int, send: int, recv: int, part: Weights, count: int
    ) -> tuple[Weights, int]:
        """Send chunk `send` on, receive chunk `recv` from the previous member."""
        message = {KIND: PART, Key.ROUND: round_, PHASE: phase, STEP: step, CHUNK: send}
        message |= {Key.DATASET_SIZE: count, Key.WEIGHTS: part}
        await mailbox.channel.send(right, message)
        got = await mailbox.take(wanted(phase, step), peers, deadline_after(timeout), [left])
        if got is None:
            raise _RingFailure(f"no message from the previous member {left} in time")
        sender, reply = got
        if reply is None:
            raise _RingFailure(f"the previous member {sender} left")
        if reply[KIND] == ABORT:
            raise _RingFailure(f"{sender} gave up the ring")
        if reply[CHUNK] != recv or not _fits(reply[Key.WEIGHTS], chunks[recv], weights, phase):
            raise _RingFailure(f"chunk {reply[CHUNK]} from {sender} does not fit chunk {recv}")
        return reply[Key.WEIGHTS], int(reply[Key.DATASET_SIZE])

    sizes = [max(int(size), 0)] * n
    acc = [scaled(weights, names, sizes[0]) for names in chunks]
    final: list[Weights] = [{} for _ in range(n)]
    own = (rank + 1) % n  # the chunk this end finishes
    try:
        for step in range(n - 1):  # reduce-scatter
            send, recv = (rank - step) % n, (rank - step - 1) % n
            part, count = await exchange(REDUCE, step, send, recv, acc[send], sizes[send])
            acc[recv] = await run_sized(part, add, acc[recv], part)
            sizes[recv] += count
        total = sizes[own]
        if total <= 0:  # every member has the same total: all give up alike, without messages
            mailbox.log.warning("ring all-reduce skipped: no samples", round=round_, members=n)
            return None
        final[own] = await run_sized(acc[own], divided, acc[own], total, weights)
        for step in range(n - 1):  # all-gather
            send, recv = (rank + 1 - step) % n, (rank - step) % n
            final[recv], _ = await exchange(GATHER, step, send, recv, final[send], total)
    except _RingFailure as failure:
        mailbox.log.warning("ring all-reduce failed", round=round_, reason=str(failure), members=n)
        await mailbox.abort(round_)
        return None
    merged = {name: array for chunk in final for name, array in chunk.items()}
    return Reduced({name: merged[name] for name in weights}, total)


def ring_timeout(value: Any) -> float | None:
    """The `ringTimeout` hyperparameter: seconds, or None (null) to wait without limit."""
    return None if value is None else float(value)
