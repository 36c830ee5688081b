"""A live region in tests: one region (`solo`, unit mode, two units) and its payments."""

from __future__ import annotations

import asyncio

from cext.codec import transfers_to_rows
from ledger import Transfer
from load.region import ServeConfig
from region.driver import LiveRegion
from replication.ids import transfer_id
from replication.outcomes import Outcome

CFG = ServeConfig(regions=["solo"], mode="unit", ship="async", customers=20, units_per_region=2)
AMAP = CFG.amap()


def payment(local: int) -> Transfer:
    payer = 1 + local % 2 * 2  # customers 1 and 3 are both in unit 0 (of 2)
    return Transfer(id=transfer_id(AMAP.unit_of(payer), local), debit_account_id=payer,
                    credit_account_id=5 if AMAP.unit_of(5) == AMAP.unit_of(payer) else payer + 2,
                    amount=1, ledger=156, code=1)


async def pay(live: LiveRegion, local: int) -> Outcome:
    reply = await live.submit(transfers_to_rows([payment(local)]))
    return Outcome(int(reply.results[0]))


async def until_writable(live: LiveRegion) -> None:
    """A new home takes its lease over its first ticks: UNAVAILABLE until then."""
    for attempt in range(200):
        if await pay(live, 1_000_000 + attempt) == Outcome.OK:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the region never became writable")
