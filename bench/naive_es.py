"""The model a newcomer would write with `eventsourcing`: the baseline geoledger must beat.

One aggregate per account, one event per debit and per credit, both saved together in one
SQLite transaction per transfer, with the library's aggregate cache on.
"""

from __future__ import annotations

from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event


class NaiveAccount(Aggregate):
    def __init__(self, number: int) -> None:
        self.number = number
        self.balance = 0

    @staticmethod
    def create_id(number: int) -> UUID:
        return uuid5(NAMESPACE_URL, f"/accounts/{number}")

    @event("Debited")
    def debit(self, amount: int, transfer_id: int) -> None:
        self.balance -= amount

    @event("Credited")
    def credit(self, amount: int, transfer_id: int) -> None:
        self.balance += amount


class NaiveBank(Application):
    def open_account(self, number: int) -> None:
        self.save(NaiveAccount(number))

    def transfer(self, transfer_id: int, debit: int, credit: int, amount: int) -> None:
        dr: NaiveAccount = self.repository.get(NaiveAccount.create_id(debit))
        cr: NaiveAccount = self.repository.get(NaiveAccount.create_id(credit))
        dr.debit(amount, transfer_id)
        cr.credit(amount, transfer_id)
        self.save(dr, cr)


def naive_bank(db_path: str) -> NaiveBank:
    return NaiveBank(
        env={
            "PERSISTENCE_MODULE": "eventsourcing.sqlite",
            "SQLITE_DBNAME": db_path,
            "AGGREGATE_CACHE_MAXSIZE": "100000",
        }
    )
