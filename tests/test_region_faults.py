"""A live region under disk faults and failures: it never acknowledges what it did not persist,
never leaves a hole, and when it cannot go on it stops, says why, and stays stopped.

Before issue 14 a full disk killed the group-commit loop without a log line (every write
then answered UNAVAILABLE while nothing said why, even once space was back), and without
group commit the next transfer was acknowledged over a hole in the records, after which
the region refused to start and that transfer was gone. Each test here fails on that.
"""

from __future__ import annotations

import asyncio
import errno
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from region.driver import LiveRegion
from region.sqlite import SqliteRegionStore
from replication.outcomes import UNAVAILABLE, Outcome
from tests.support.live_region import CFG, pay, payment, until_writable


class FlakyDisk(SqliteRegionStore):
    """An SQLite region store whose writes fail with ENOSPC while `full` is set."""

    full = False
    failed_writes = 0

    def _write(self, rows: Any) -> None:
        if self.full:
            self.failed_writes += 1
            raise OSError(errno.ENOSPC, "No space left on device")
        super()._write(rows)


def recovered_ids(path: Path) -> set[int]:
    """Reopen the store as a restarted region would and list the transfers it recovers."""
    store = SqliteRegionStore(path)  # refuses a hole in the records: CorruptStoreError
    try:
        from replication.node import RegionNode

        node, _ = RegionNode.recover(CFG.node_config(0), store)
        engine = node.engine
        rows = engine.transfers[: engine.n_transfers]
        return {int(lo) | int(hi) << 64 for lo, hi in zip(rows["id_lo"], rows["id_hi"], strict=True)}
    finally:
        store.close()


def ids(locals_: list[int]) -> set[int]:
    return {payment(n).id for n in locals_}


@pytest.mark.parametrize("group_commit", [True, False], ids=["group commit", "immediate"])
def test_a_disk_full_for_good_stops_the_region_and_no_acknowledged_transfer_is_lost(
        tmp_path: Path, group_commit: bool, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "region.db"
    fatal: list[BaseException] = []

    async def main() -> tuple[list[int], list[int]]:
        store = FlakyDisk(path)
        live = LiveRegion(CFG.node_config(0), store, lambda *_: None, group_commit=group_commit,
                          on_fatal=fatal.append, flush_retry_delays=(0.01, 0.02))
        await until_writable(live)
        acked = [n for n in range(1, 21) if await pay(live, n) == Outcome.OK]
        store.full = True
        during = await asyncio.gather(*(pay(live, n) for n in range(21, 31)))
        store.full = False  # space is back: a stopped region still answers nothing
        after = [await pay(live, n) for n in range(31, 36)]
        assert live.failure is not None and "No space left on device" in live.failure
        assert len(fatal) == 1 and isinstance(fatal[0].__cause__ or fatal[0], Exception)
        assert set(during) == {Outcome(UNAVAILABLE)} and set(after) == {Outcome(UNAVAILABLE)}
        store.full = True
        live.close()  # as if the process died: what was not flushed never will be
        return acked, [n for n, r in zip(range(21, 31), during, strict=True) if r == Outcome.OK]

    with caplog.at_level(logging.CRITICAL, logger="region.driver"):
        acked, acked_during = asyncio.run(main())
    assert acked_during == [] and len(acked) == 20
    assert any("region 0 stopped" in r.getMessage() for r in caplog.records)
    recovered = recovered_ids(path)  # opens: no hole in the record sequence
    assert ids(acked) <= recovered


def test_group_commit_rides_out_a_short_disk_full_and_acknowledges_only_after_the_flush(tmp_path: Path) -> None:
    path = tmp_path / "region.db"

    async def main() -> list[int]:
        store = FlakyDisk(path)
        live = LiveRegion(CFG.node_config(0), store, lambda *_: None, group_commit=True,
                          flush_retry_delays=(0.05, 0.1, 0.2, 0.4))
        await until_writable(live)
        answered_while_full: list[int] = []

        async def tracked(n: int) -> Outcome:
            outcome = await pay(live, n)
            if store.full:
                answered_while_full.append(n)
            return outcome

        store.full = True
        pending = asyncio.gather(*(tracked(n) for n in range(1, 11)))
        await asyncio.sleep(0.1)
        assert store.failed_writes >= 1
        store.full = False
        results = await pending
        assert answered_while_full == [] and live.failure is None
        assert set(results) == {Outcome.OK}
        assert await pay(live, 11) == Outcome.OK  # and it carries on
        live.close()
        return list(range(1, 12))

    acked = asyncio.run(main())
    assert ids(acked) <= recovered_ids(path)


def test_a_failing_step_stops_the_region_loudly(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    fatal: list[BaseException] = []

    async def main() -> None:
        live = LiveRegion(CFG.node_config(0), SqliteRegionStore(tmp_path / "r.db"), lambda *_: None,
                          group_commit=True, on_fatal=fatal.append)
        await until_writable(live)

        def broken(*_: Any) -> Any:
            raise RuntimeError("a bug in a step")

        live.node.handle_many = broken  # type: ignore[method-assign]
        assert await pay(live, 1) == Outcome(UNAVAILABLE)
        assert live.failure == "the group-commit loop failed: RuntimeError: a bug in a step"
        assert [type(e) for e in fatal] == [RuntimeError]
        live.close()

    with caplog.at_level(logging.CRITICAL, logger="region.driver"):
        asyncio.run(main())
    assert any("a bug in a step" in r.getMessage() for r in caplog.records)


def test_an_unknown_message_is_reported_not_fatal(tmp_path: Path) -> None:
    async def main() -> None:
        live = LiveRegion(CFG.node_config(0), SqliteRegionStore(tmp_path / "r.db"), lambda *_: None,
                          group_commit=True)
        await until_writable(live)
        live.deliver_many([object(), np.zeros(3)])  # type: ignore[list-item]
        assert await pay(live, 1) == Outcome.OK
        assert live.failure is None
        assert "rejected_message" in {kind for _, kind, _ in live.stats.reports}
        live.close()

    asyncio.run(main())


def test_a_peer_flooding_misfits_is_counted_logged_sparingly_and_costs_no_memory(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """3,000 heartbeats with heads for five regions (a peer configured for another
    topology; this region is alone in its own): each refused, the region keeps paying, the
    report list stays bounded, the count is exact, and the log has a line at the 1st, 2nd,
    4th, ... refusal only."""
    from replication.messages import Heartbeat

    async def main() -> None:
        live = LiveRegion(CFG.node_config(0), SqliteRegionStore(tmp_path / "r.db"), lambda *_: None,
                          group_commit=True)
        await until_writable(live)
        for _ in range(30):
            live.deliver_many([Heartbeat(1, 1, 1, (0, 0, 0, 0, 0)) for _ in range(100)])
            await asyncio.sleep(0)
        assert await pay(live, 1) == Outcome.OK
        assert live.failure is None
        assert live.stats.report_counts["peer_message_refused"] == 3000
        assert len(live.stats.reports) <= 1000
        live.close()

    with caplog.at_level(logging.WARNING, logger="region.driver"):
        asyncio.run(main())
    lines = [r.getMessage() for r in caplog.records if "refused a peer message" in r.getMessage()]
    assert [int(line.split("(")[1].split()[0]) for line in lines] == [2**k for k in range(12)]
    assert "heads has 5 values, one per region wanted (1)" in lines[0]
