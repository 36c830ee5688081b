"""Locust users that behave like a bank's customers, against geoledger's region gateways.

Configured by environment (set by `geoledger load`, or by hand):
  GEOLEDGER_GATEWAYS   comma-separated gateway base URLs, one per region (first = host)
  GEOLEDGER_CUSTOMERS  number of customer accounts (ids 1..N), homed round-robin by region
  GEOLEDGER_CORPORATE  id of the corporate account that pays salaries
  GEOLEDGER_UNITS      number of units (shards); card holds stay within one unit
  GEOLEDGER_ACK_LOG    file where every acknowledged transfer id is appended (for the verdict)
  GEOLEDGER_SHAPE      ramp | spike | soak (a LoadTestShape), or unset for -u/-r/-t

Every client retries a timed-out or failed transfer with the same id: the ledger's
idempotency turns a retry into EXISTS, never into a second debit.
"""

from __future__ import annotations

import itertools
import os
import random
import threading
import time
from typing import Any

from locust import FastHttpUser, LoadTestShape, between, events, task

GATEWAYS = [g for g in os.environ.get("GEOLEDGER_GATEWAYS", "http://127.0.0.1:8100").split(",") if g]
CUSTOMERS = int(os.environ.get("GEOLEDGER_CUSTOMERS", "1000"))
CORPORATE = int(os.environ.get("GEOLEDGER_CORPORATE", "1"))
UNITS = int(os.environ.get("GEOLEDGER_UNITS", "6"))
"""Accounts are sharded into units, customer id i in unit (i - 1) mod UNITS."""
LEDGER = 156
ACKED = {"OK", "EXISTS"}
RETRIES = 8

_ack_lock = threading.Lock()
_ack_file: Any = None
_ids = itertools.count(1)
_id_base = random.SystemRandom().getrandbits(80) << 40


def next_transfer_id() -> int:
    """Unique across processes: a random 80-bit prefix per process, a counter below it."""
    return _id_base | next(_ids)


def record_ack(transfer_id: int, region: str, result: str) -> None:
    global _ack_file
    path = os.environ.get("GEOLEDGER_ACK_LOG")
    if not path:
        return
    with _ack_lock:
        if _ack_file is None:
            _ack_file = open(path, "a", buffering=1)  # noqa: SIM115 - kept open for the run
        _ack_file.write(f"{transfer_id} {region} {result}\n")


def home_gateway(account_id: int) -> str:
    return GATEWAYS[(account_id - 1) % len(GATEWAYS)]


class BankUser(FastHttpUser):
    abstract = True
    host = GATEWAYS[0]
    wait_time = between(0.0, 0.02)
    network_timeout = 5.0
    connection_timeout = 5.0

    def transfer(self, base: str, body: dict[str, Any], name: str, path: str = "/transfers") -> str | None:
        """Submit until the gateway answers, always with the same id; returns the result code."""
        for attempt in range(RETRIES):
            with self.client.post(f"{base}{path}", json=body, name=name, catch_response=True) as response:
                if response.status_code in (200, 201):
                    payload = response.json()
                    result = payload["result"]
                    events.request.fire(
                        request_type="RESULT", name=result, response_time=0, response_length=0,
                        exception=None, context={},
                    )
                    if result in ACKED:
                        record_ack(int(payload["id"]), payload["region"], result)
                    response.success()
                    return result
                if response.status_code == 422:
                    response.failure(f"rejected: {response.text[:200]}")
                    return None
                response.failure(f"status {response.status_code}, retrying the same id")
            time.sleep(min(0.05 * 2**attempt, 1.0))
        return None

    def random_customer(self) -> int:
        return random.randint(1, CUSTOMERS)


class RetailCustomer(BankUser):
    """Pays other customers: mostly at home, sometimes across regions."""

    weight = 6

    @task
    def pay(self) -> None:
        payer = self.random_customer()
        payee = self.random_customer()
        if payee == payer:
            return
        body = {"id": next_transfer_id(), "debit_account_id": payer, "credit_account_id": payee,
                "amount": random.randint(1, 5_000), "ledger": LEDGER, "code": 1}
        self.transfer(home_gateway(payer), body, "pay")


class CardAuthorisation(BankUser):
    """A card hold (pending), then the merchant posts part of it or voids it."""

    weight = 2

    @task
    def authorise(self) -> None:
        card = self.random_customer()
        # Two-phase transfers stay inside one unit: a hold cannot span shards.
        merchant = card + UNITS * random.randint(1, 3)
        if merchant > CUSTOMERS:
            merchant = card - UNITS * random.randint(1, max(1, (card - 1) // UNITS))
        if merchant < 1 or merchant == card:
            return
        hold = random.randint(100, 20_000)
        pending_id = next_transfer_id()
        base = home_gateway(card)
        body = {"id": pending_id, "debit_account_id": card, "credit_account_id": merchant, "amount": hold,
                "ledger": LEDGER, "code": 2, "flags": 2, "timeout": 3600}
        if self.transfer(base, body, "authorise") != "OK":
            return
        if random.random() < 0.8:
            self.transfer(base, {"id": next_transfer_id(), "amount": random.randint(1, hold)},
                          "capture", path=f"/transfers/{pending_id}/post")
        else:
            self.transfer(base, {"id": next_transfer_id()}, "void", path=f"/transfers/{pending_id}/void")


class SalaryBatch(BankUser):
    """A corporate customer pays a payroll of 50 employees in one batch request."""

    weight = 1
    wait_time = between(0.5, 1.0)

    @task
    def payroll(self) -> None:
        base = home_gateway(CORPORATE)
        batch = [
            {"id": next_transfer_id(), "debit_account_id": CORPORATE, "credit_account_id": employee,
             "amount": 1_000, "ledger": LEDGER, "code": 3}
            for employee in random.sample(range(1, CUSTOMERS + 1), min(50, CUSTOMERS))
            if home_gateway(employee) == base
        ]
        if not batch:
            return
        for attempt in range(RETRIES):
            with self.client.post(f"{base}/transfers/batch", json=batch, name="payroll",
                                  catch_response=True) as response:
                if response.status_code == 200:
                    for outcome in response.json():
                        if outcome["result"] in ACKED:
                            record_ack(int(outcome["id"]), outcome["region"], outcome["result"])
                    response.success()
                    return
                response.failure(f"status {response.status_code}, retrying the same ids")
            time.sleep(min(0.05 * 2**attempt, 1.0))


class StatementReader(BankUser):
    """Opens the app and reads the latest page of the statement (a person, not a poller:
    a pause between reads, so that reads do not crowd out the payments under test)."""

    weight = 1
    wait_time = between(0.05, 0.25)

    @task
    def read(self) -> None:
        customer = self.random_customer()
        self.client.get(f"{home_gateway(customer)}/accounts/{customer}/transfers?limit=20&reverse=true",
                        name="statement")


class Ramp(LoadTestShape):
    """Ramp to GEOLEDGER_USERS over the first half of GEOLEDGER_DURATION, hold, stop."""

    def tick(self) -> tuple[int, float] | None:
        users = int(os.environ.get("GEOLEDGER_USERS", "20"))
        duration = float(os.environ.get("GEOLEDGER_DURATION", "30"))
        t = self.get_run_time()
        if t > duration:
            return None
        return max(1, int(users * min(1.0, 2 * t / duration))), max(1.0, users / 5)


class Spike(LoadTestShape):
    """A quarter of the users, a spike to all of them in the middle fifth, then back."""

    def tick(self) -> tuple[int, float] | None:
        users = int(os.environ.get("GEOLEDGER_USERS", "20"))
        duration = float(os.environ.get("GEOLEDGER_DURATION", "30"))
        t = self.get_run_time()
        if t > duration:
            return None
        spiking = 0.4 * duration <= t < 0.6 * duration
        return (users if spiking else max(1, users // 4)), float(users)


class Soak(LoadTestShape):
    """Steady users for the whole duration: leaks and lag show up over time."""

    def tick(self) -> tuple[int, float] | None:
        users = int(os.environ.get("GEOLEDGER_USERS", "20"))
        duration = float(os.environ.get("GEOLEDGER_DURATION", "300"))
        return None if self.get_run_time() > duration else (users, float(users))


_SHAPES = {"ramp": Ramp, "spike": Spike, "soak": Soak}
_chosen = os.environ.get("GEOLEDGER_SHAPE")
# Locust picks up every LoadTestShape subclass in the module; keep only the one asked for.
# (Locust scans the module's globals for shape classes: the loop variables must not outlive
# the loop, or the last shape, Soak, would run every time and override --spawn-rate.)
for _name, _shape in _SHAPES.items():
    if _name != _chosen:
        del globals()[_shape.__name__]
del _name, _shape
