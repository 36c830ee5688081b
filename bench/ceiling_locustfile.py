"""Locust users for `bench.http_ceiling`: the load the gateways' retail payers make (the same
user class settings, wait time and a payment-sized JSON body) against an endpoint that does
nothing, so the figure is the HTTP path's alone: Locust's work plus the server stack's."""

from __future__ import annotations

import itertools
import random

from locust import FastHttpUser, between, task

_ids = itertools.count(random.getrandbits(40) << 20)


class NoopPayer(FastHttpUser):
    wait_time = between(0.0, 0.02)
    network_timeout = 5.0
    connection_timeout = 5.0
    default_headers = {"Authorization": "Bearer " + "x" * 43}

    @task
    def pay(self) -> None:
        payer, payee = random.randint(1, 1200), random.randint(1, 1200)
        body = {"id": next(_ids), "debit_account_id": payer, "credit_account_id": payee,
                "amount": random.randint(1, 5_000), "ledger": 156, "code": 1}
        self.client.post("/transfers", json=body, name="pay")
