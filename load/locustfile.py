"""Locust users that behave like a bank's customers, against geoledger's region gateways.

Configured by environment (set by `geoledger load`, or by hand):
  GEOLEDGER_CREDENTIALS  the credentials file `geoledger serve` wrote (it prints where): the
                       payments token, and the gateways if GEOLEDGER_GATEWAYS is unset
  GEOLEDGER_TOKEN      a payments token, instead of (or overriding) the credentials file
  GEOLEDGER_GATEWAYS   comma-separated gateway base URLs, one per region (first = host);
                       `--host` outside that list means: send everything to that gateway
  GEOLEDGER_CUSTOMERS  number of customer accounts (ids 1..N), homed round-robin by region
  GEOLEDGER_CORPORATE  id of the corporate account that pays salaries
  GEOLEDGER_UNITS      number of units (shards); card holds stay within one unit
  GEOLEDGER_ACK_LOG    file where every acknowledged transfer id is appended (for the verdict)
  GEOLEDGER_CHAIN_LOG  file where every linked chain a hostile client sent is appended (ids)
  GEOLEDGER_RESULT_LOG file where each Locust process appends, as it quits, one JSON line of
                       its per-result counts (every answer a transfer got, retries included)
  GEOLEDGER_STATS_FILE file where Locust's final request statistics are written once every
                       user has stopped (its --csv stats file is only as fresh as its last
                       periodic write, which can miss the last second's requests)
  GEOLEDGER_SHAPE      ramp | spike | soak (a LoadTestShape), or unset for -u/-r/-t
  GEOLEDGER_HOSTILE    weight of the HostileClient user class (0: none)

Every client retries a timed-out or failed transfer with the same id: the ledger's
idempotency turns a retry into EXISTS, never into a second debit. Locust's request
statistics hold HTTP requests only; the answers' result codes are counted beside them
(`RESULTS`, written to GEOLEDGER_RESULT_LOG and printed when Locust quits). Transfer ids name the
unit of their debit account (`replication.ids`: a unit's writer is the only one that ever
applies its ids); customer i is in unit (i - 1) mod GEOLEDGER_UNITS, homed at the region
whose gateway is GATEWAYS[(i - 1) mod regions].
"""

from __future__ import annotations

import collections
import itertools
import json
import os
import random
import threading
import time
from pathlib import Path
from typing import Any

from locust import FastHttpUser, LoadTestShape, between, events, task

from load.auth import Credentials, Role, gateways_in
from replication.accounts import BANK_BASE
from replication.ids import CREDIT_BIT, GENESIS_BIT, transfer_id
from replication.ids import UNIT_SHIFT as CLIENT_BITS


def _credentials() -> tuple[dict[str, str], list[str]]:
    """(role -> token, gateways) from GEOLEDGER_CREDENTIALS and GEOLEDGER_TOKEN."""
    tokens: dict[str, str] = {}
    gateways: list[str] = []
    path = os.environ.get("GEOLEDGER_CREDENTIALS")
    if path:
        tokens = {role.value: token for role, token in Credentials.load(Path(path)).tokens.items()}
        gateways = gateways_in(Path(path))
    if os.environ.get("GEOLEDGER_TOKEN"):
        tokens[Role.PAYMENTS.value] = os.environ["GEOLEDGER_TOKEN"]
    return tokens, gateways


TOKENS, _FILE_GATEWAYS = _credentials()
GATEWAYS = [g for g in os.environ.get("GEOLEDGER_GATEWAYS", "").split(",") if g] or _FILE_GATEWAYS or [
    "http://127.0.0.1:8100"]
CUSTOMERS = int(os.environ.get("GEOLEDGER_CUSTOMERS", "1000"))
CORPORATE = int(os.environ.get("GEOLEDGER_CORPORATE", "1"))
UNITS = int(os.environ.get("GEOLEDGER_UNITS", "6"))
"""Accounts are sharded into units, customer id i in unit (i - 1) mod UNITS."""
LEDGER = 156
ACKED = {"OK", "EXISTS"}
RETRIES = 8
EXTREME_AMOUNTS = (1 << 63, 1 << 64, (1 << 64) + 1, 1 << 127, (1 << 128) - 1)
RECENT_PENDINGS: collections.deque[tuple[int, int]] = collections.deque(maxlen=200)  # (pending id, card)

RESULTS: collections.Counter[str] = collections.Counter()
"""Transfer results this process received, by code: kept out of Locust's request statistics,
whose rows (and "Aggregated" line, and --csv files) must count HTTP requests only."""
_log_lock = threading.Lock()
_logs: dict[str, Any] = {}
_ids = itertools.count(1)
_id_base = random.SystemRandom().getrandbits(CLIENT_BITS - 40) << 40


def unit_of(account_id: int) -> int:
    return (account_id - 1) % UNITS


def next_transfer_id(account_id: int) -> int:
    """A new id naming `account_id`'s unit; unique across processes: a random prefix per
    process and a counter below it, in the client's 110 bits."""
    return transfer_id(unit_of(account_id), _id_base | next(_ids))


def _append(env: str, line: str) -> None:
    path = os.environ.get(env)
    if not path:
        return
    with _log_lock:
        if env not in _logs:
            # Buffered (one write per 64 KiB, not per acknowledgement: that was a tenth of
            # Locust's CPU); flushed when the process quits, before the verdict reads it.
            _logs[env] = open(path, "a", buffering=1 << 16)  # noqa: SIM115 - kept open for the run
        _logs[env].write(line + "\n")


def record_ack(transfer_id: int, region: str, result: str) -> None:
    _append("GEOLEDGER_ACK_LOG", f"{transfer_id} {region} {result}")


def record_result(payload: dict[str, Any]) -> None:
    """Count one transfer's answer; log it as acknowledged if it is in the books."""
    result = payload["result"]
    RESULTS[result] += 1
    if result in ACKED:
        record_ack(int(payload["id"]), payload["region"], result)


_environment: list[Any] = []


@events.init.add_listener
def _keep_environment(environment: Any, **_: Any) -> None:
    _environment.append(environment)


@events.quit.add_listener
def _write_final_stats(**_: Any) -> None:
    """Locust's own totals, after its runner stopped every user (master or local runner only:
    a worker's are in the master's)."""
    from locust.runners import WorkerRunner

    path = os.environ.get("GEOLEDGER_STATS_FILE")
    if not path or not _environment or _environment[0].runner is None or isinstance(_environment[0].runner,
                                                                                      WorkerRunner):
        return
    stats = _environment[0].runner.stats
    entries = sorted(stats.entries.values(), key=lambda e: (e.method or "", e.name))
    Path(path).write_text(json.dumps({
        "requests": stats.total.num_requests, "failures": stats.total.num_failures,
        "requests_per_s": stats.total.total_rps, "avg_ms": stats.total.avg_response_time,
        "by_name": [{"method": e.method, "name": e.name, "requests": e.num_requests, "failures": e.num_failures,
                     "p50_ms": e.get_response_time_percentile(0.5) if e.num_requests else None,
                     "p99_ms": e.get_response_time_percentile(0.99) if e.num_requests else None}
                    for e in entries],
    }, indent=1))


@events.quitting.add_listener
def _write_results(**_: Any) -> None:
    """Each Locust process (master, workers) hands its counts on as it quits."""
    if not RESULTS:
        return
    _append("GEOLEDGER_RESULT_LOG", json.dumps({"pid": os.getpid(), "results": dict(RESULTS)}))
    with _log_lock:
        for f in _logs.values():
            f.flush()
    if not os.environ.get("GEOLEDGER_RESULT_LOG"):
        print("transfer results:", ", ".join(f"{k} {v}" for k, v in RESULTS.most_common()))


def gateways_for(host: str | None) -> list[str]:
    """The gateways a user calls: the run's (GEOLEDGER_GATEWAYS, else the credentials file's),
    unless `--host` names a gateway outside them: then everything goes there (its region
    forwards what other regions write)."""
    if not host or host.rstrip("/") in GATEWAYS:
        return GATEWAYS
    return [host.rstrip("/")]


def bearer(role: Role) -> dict[str, str]:
    token = TOKENS.get(role.value)
    return {"Authorization": f"Bearer {token}"} if token else {}


class BankUser(FastHttpUser):
    abstract = True
    host = GATEWAYS[0]
    wait_time = between(0.0, 0.02)
    network_timeout = 5.0
    connection_timeout = 5.0
    default_headers = bearer(Role.PAYMENTS)

    def on_start(self) -> None:
        self.gateways = gateways_for(self.host)

    def home(self, account_id: int) -> str:
        """The gateway of the region the account is homed in."""
        return self.gateways[(account_id - 1) % len(self.gateways)]

    def transfer(self, base: str, body: dict[str, Any], name: str, path: str = "/transfers") -> str | None:
        """Submit until the gateway answers, always with the same id; returns the result code."""
        for attempt in range(RETRIES):
            with self.client.post(f"{base}{path}", json=body, name=name, catch_response=True) as response:
                if response.status_code in (200, 201):
                    payload = response.json()
                    record_result(payload)
                    response.success()
                    return str(payload["result"])
                if response.status_code in (401, 403, 413, 422):  # refused: the same request fails again
                    response.failure(f"refused ({response.status_code}): {response.text[:200]}")
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
        body = {"id": next_transfer_id(payer), "debit_account_id": payer, "credit_account_id": payee,
                "amount": random.randint(1, 5_000), "ledger": LEDGER, "code": 1}
        self.transfer(self.home(payer), body, "pay")


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
        pending_id = next_transfer_id(card)
        base = self.home(card)
        body = {"id": pending_id, "debit_account_id": card, "credit_account_id": merchant, "amount": hold,
                "ledger": LEDGER, "code": 2, "flags": 2, "timeout": 3600}
        if self.transfer(base, body, "authorise") != "OK":
            return
        RECENT_PENDINGS.append((pending_id, card))
        if random.random() < 0.8:
            self.transfer(base, {"id": next_transfer_id(card), "amount": random.randint(1, hold)},
                          "capture", path=f"/transfers/{pending_id}/post")
        else:
            self.transfer(base, {"id": next_transfer_id(card)}, "void", path=f"/transfers/{pending_id}/void")


class SalaryBatch(BankUser):
    """A corporate customer pays a payroll of 50 employees in one batch request."""

    weight = 1
    wait_time = between(0.5, 1.0)

    @task
    def payroll(self) -> None:
        base = self.home(CORPORATE)
        batch = [
            {"id": next_transfer_id(CORPORATE), "debit_account_id": CORPORATE, "credit_account_id": employee,
             "amount": 1_000, "ledger": LEDGER, "code": 3}
            for employee in random.sample(range(1, CUSTOMERS + 1), min(50, CUSTOMERS))
            if self.home(employee) == base
        ]
        if not batch:
            return
        for attempt in range(RETRIES):
            with self.client.post(f"{base}/transfers/batch", json=batch, name="payroll",
                                  catch_response=True) as response:
                if response.status_code == 200:
                    for outcome in response.json():
                        record_result(outcome)
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
        self.client.get(f"{self.home(customer)}/accounts/{customer}/transfers?limit=20&reverse=true",
                        name="statement")


class HostileClient(BankUser):
    """A client that attacks the bank's rules instead of paying anyone (the HTTP twin of
    `simulator.hostile`): u128 extremes, the bank's reserved ids and internal accounts,
    ids reused with the same and with other bodies, the same transfer sent to two regions,
    zero and unknown accounts, linked chains across units, and posts or voids of other
    clients' holds. Whatever it gets back, the run's verdict must hold."""

    weight = int(os.environ.get("GEOLEDGER_HOSTILE", "0") or 0)
    wait_time = between(0.0, 0.05)

    def _payment(self) -> dict[str, Any]:
        payer, payee = self.random_customer(), self.random_customer()
        return {"id": next_transfer_id(payer), "debit_account_id": payer, "credit_account_id": payee,
                "amount": random.randint(1, 5_000), "ledger": LEDGER, "code": 1}

    @task
    def amount_extreme(self) -> None:
        body = self._payment()
        body["amount"] = random.choice(EXTREME_AMOUNTS)
        self.transfer(self.home(body["debit_account_id"]), body, "hostile:amount_extreme")

    @task
    def reserved_id(self) -> None:
        body = self._payment()
        body["id"] = (CREDIT_BIT | body["id"]) if random.random() < 0.5 else (GENESIS_BIT | body["debit_account_id"])
        self.transfer(self.home(body["debit_account_id"]), body, "hostile:reserved_id")

    def refused(self, name: str, expected: int | tuple[int, ...], path: str, body: Any,
                headers: dict[str, str] | None = None, base: str | None = None) -> None:
        """An attack the gateway must refuse with `expected` (a status, or any of several):
        anything else is a failure."""
        allowed = expected if isinstance(expected, tuple) else (expected,)
        with self.client.post(f"{base or random.choice(self.gateways)}{path}", json=body, name=name,
                              headers=headers, catch_response=True) as response:
            if response.status_code in allowed:
                response.success()
            else:
                response.failure(f"expected {expected}, got {response.status_code}: {response.text[:200]}")

    @task
    def bank_account(self) -> None:
        """Debit a unit's fund (it has no overdraft flag) or its transit account: 403 at the gateway."""
        body = self._payment()
        unit = unit_of(body["debit_account_id"])
        bank = BANK_BASE + unit if random.random() < 0.5 else BANK_BASE + (1 << 20) + unit  # a fund or a transit
        body["debit_account_id" if random.random() < 0.5 else "credit_account_id"] = bank
        self.refused("hostile:bank_account", 403, "/transfers", body, base=self.home(unit + 1))

    @task
    def stranger(self) -> None:
        """No token, a made-up one, another role's: 401, 401, 403."""
        body = self._payment()
        self.refused("hostile:no_token", 401, "/transfers", body, headers={"Authorization": ""})
        self.refused("hostile:made_up_token", 401, "/transfers", body, headers={"Authorization": "Bearer guess"})
        if TOKENS.get(Role.AUDITOR.value):
            self.refused("hostile:auditor_pays", 403, "/transfers", body, headers=bearer(Role.AUDITOR))

    @task
    def oversized(self) -> None:
        """One item past the batch limit: 422 (or 413), never a 5xx, never applied."""
        self.refused("hostile:oversized", (413, 422), "/transfers/batch", [self._payment() for _ in range(8191)])

    @task
    def reuse(self) -> None:
        body = self._payment()
        if self.transfer(self.home(body["debit_account_id"]), body, "hostile:reuse") not in ACKED:
            return
        elsewhere = random.choice(self.gateways)
        self.transfer(elsewhere, body, "hostile:reuse_same")  # EXISTS, wherever it is sent
        other = dict(body, amount=body["amount"] + 1)
        self.transfer(elsewhere, other, "hostile:reuse_different")  # EXISTS_WITH_DIFFERENT_AMOUNT

    @task
    def two_regions_at_once(self) -> None:
        body = self._payment()
        for base in random.sample(self.gateways, min(2, len(self.gateways))):
            self.transfer(base, body, "hostile:two_regions")

    @task
    def zero_or_unknown(self) -> None:
        body = self._payment()
        body["debit_account_id" if random.random() < 0.5 else "credit_account_id"] = random.choice(
            [0, CUSTOMERS + 1 + random.randint(0, 1000), (1 << 64) + body["debit_account_id"]])
        self.transfer(self.home(max(1, body["debit_account_id"] % (1 << 64))), body, "hostile:zero_unknown")

    @task
    def chain_across_units(self) -> None:
        first, second = self._payment(), self._payment()
        first["flags"] = 1  # LINKED: the two are one chain
        if random.random() < 0.5:  # one unit named, a debit in another; or two units named
            second["id"] = next_transfer_id(first["debit_account_id"])
        base = self.home(first["debit_account_id"])
        with self.client.post(f"{base}/transfers/batch", json=[first, second], name="hostile:chain",
                              catch_response=True) as response:
            if response.status_code != 200:
                response.failure(f"status {response.status_code}")
                return
            for outcome in response.json():
                record_result(outcome)
            _append("GEOLEDGER_CHAIN_LOG", f"{first['id']} {second['id']}")
            response.success()

    @task
    def someone_elses_hold(self) -> None:
        if not RECENT_PENDINGS:
            return
        pending_id, card = random.choice(RECENT_PENDINGS)
        post = random.random() < 0.5
        body: dict[str, Any] = {"id": next_transfer_id(card)}
        if post:
            body["amount"] = random.randint(1, 100)
        self.transfer(self.home(card), body, "hostile:foreign_pending",
                      path=f"/transfers/{pending_id}/{'post' if post else 'void'}")


if HostileClient.weight <= 0:  # Locust runs every user class in the module: only when asked for
    del HostileClient


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
