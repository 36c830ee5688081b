"""Store records waiting for a good copy from a peer: one mechanism for every design.

A scrub (or a recovery) finds a record whose entry fails its checksum. The region asks its
peers for that entry and asks again every `RETRY_TICKS` ticks until one answers, since a
request or its answer can be lost to a partition; a copy is taken only for a record it asked
about and only if it is that very entry (same log, sequence and the stored checksum), so a
repair never changes the store's hash chain. "Log" is the origin region in the shipping
designs and the Raft group in quorum mode (what a `RepairRequest`'s `origin` names).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from replication.log import Entry
from replication.messages import Effect, RepairRequest, Send

RETRY_TICKS = 5
"""Ticks between two rounds of asking for the same record."""


@dataclass(slots=True)
class Wanted:
    log: int
    seq: int
    checksum: bytes
    asked: int | None  # when peers were last asked; None: at recovery, before this process's clock


class PendingRepairs:
    """The damaged records of one region's store, by store index."""

    def __init__(self, me: int, peers: list[int], tick_every: int) -> None:
        self.me = me
        self.peers = peers
        self.retry_after = RETRY_TICKS * tick_every
        self.wanted: dict[int, Wanted] = {}

    def __contains__(self, index: int) -> bool:
        return index in self.wanted

    def __bool__(self) -> bool:
        return bool(self.wanted)

    def positions(self) -> list[int]:
        return list(self.wanted)

    def ask(self, index: int, log: int, seq: int, checksum: bytes, now: int | None, out: list[Effect]) -> None:
        """Record `index` needs entry `seq` of `log` with `checksum`: ask every peer now."""
        self.wanted[index] = Wanted(log, seq, checksum, now)
        self._send(index, out)

    def resend_due(self, now: int, out: list[Effect]) -> None:
        """Ask again for every record not answered within the retry interval (a record asked
        for at recovery starts its interval at the first tick)."""
        for index, w in self.wanted.items():
            if w.asked is None:
                w.asked = now
            elif now - w.asked >= self.retry_after:
                w.asked = now
                self._send(index, out)

    def matching(self, wants: Callable[[Wanted], bool]) -> list[int]:
        """The indices of the records `wants` says yes to."""
        return [index for index, w in self.wanted.items() if wants(w)]

    def forget_before(self, position: int) -> None:
        """A store checkpoint at `position` replaced the records before it: none is waited for."""
        for index in [i for i in self.wanted if i < position]:
            del self.wanted[index]

    def take(self, index: int, log: int, entry: Entry) -> bool:
        """Whether `entry` (of `log`) is the good copy record `index` waits for; if so, it is
        no longer waited for."""
        w = self.wanted.get(index)
        if w is None or (log, entry.seq, entry.checksum) != (w.log, w.seq, w.checksum) or not entry.intact():
            return False
        del self.wanted[index]
        return True

    def _send(self, index: int, out: list[Effect]) -> None:
        w = self.wanted[index]
        for p in self.peers:
            out.append(Send(p, RepairRequest(self.me, w.log, w.seq, index)))


__all__ = ["RETRY_TICKS", "PendingRepairs", "Wanted"]
