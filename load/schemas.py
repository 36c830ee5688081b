"""The gateway's wire format: strict JSON models, validated at the boundary.

Strict ints only: `1.0`, `true` and `"1"` are refused with the field named, because a
ledger that guesses what a client meant by a float amount is a ledger nobody should trust.
"""

from __future__ import annotations

from typing import Annotated, NamedTuple

from pydantic import BaseModel, ConfigDict, Field

from ledger.types import (
    ACCOUNT_FLAGS_KNOWN,
    TRANSFER_FLAGS_KNOWN,
    U16_MAX,
    U32_MAX,
    U64_MAX,
    U128_MAX,
    Account,
    Transfer,
)

U128 = Annotated[int, Field(ge=0, le=U128_MAX, strict=True)]
U64 = Annotated[int, Field(ge=0, le=U64_MAX, strict=True)]
U32 = Annotated[int, Field(ge=0, le=U32_MAX, strict=True)]
U16 = Annotated[int, Field(ge=0, le=U16_MAX, strict=True)]
Id = Annotated[int, Field(ge=1, lt=U128_MAX, strict=True)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class AccountIn(Strict):
    id: Id
    ledger: Annotated[int, Field(ge=1, le=U32_MAX, strict=True)]
    code: Annotated[int, Field(ge=1, le=U16_MAX, strict=True)]
    flags: Annotated[int, Field(ge=0, le=ACCOUNT_FLAGS_KNOWN, strict=True)] = 0
    user_data_128: U128 = 0
    user_data_64: U64 = 0
    user_data_32: U32 = 0

    def to_domain(self) -> Account:
        return Account(**self.model_dump())


class TransferIn(Strict):
    id: Id
    debit_account_id: U128 = 0
    credit_account_id: U128 = 0
    amount: U128 = 0
    ledger: U32 = 0
    code: U16 = 0
    flags: Annotated[int, Field(ge=0, le=TRANSFER_FLAGS_KNOWN, strict=True)] = 0
    pending_id: U128 = 0
    timeout: U32 = 0
    user_data_128: U128 = 0
    user_data_64: U64 = 0
    user_data_32: U32 = 0

    def to_domain(self) -> Transfer:
        return Transfer(**self.model_dump())


class ResolveIn(Strict):
    """Post or void a pending transfer: the new transfer's id, and for a post, how much."""

    id: Id
    amount: U128 = U128_MAX


class Outcome(BaseModel):
    id: str
    result: str
    region: str


class AccountOut(BaseModel):
    id: str
    ledger: int
    code: int
    flags: int
    debits_pending: str
    debits_posted: str
    credits_pending: str
    credits_posted: str
    timestamp: int


class TransferOut(BaseModel):
    id: str
    debit_account_id: str
    credit_account_id: str
    amount: str
    pending_id: str
    ledger: int
    code: int
    flags: int
    timeout: int
    timestamp: int


class StatementQuery(NamedTuple):
    """A statement page's filters (`GET /accounts/{id}/transfers`), validated."""

    limit: int = 100
    reverse: bool = False
    timestamp_min: int = 0
    timestamp_max: int = 0


class QueryIn(Strict):
    """TigerBeetle's QueryFilter as a JSON body (POST /query/accounts, /query/transfers).

    Strict as a model (no field-level `strict`), so that `QueryParams` can relax it for
    query strings, where every value arrives as text."""

    user_data_128: Annotated[int, Field(ge=0, le=U128_MAX)] = 0
    user_data_64: Annotated[int, Field(ge=0, le=U64_MAX)] = 0
    user_data_32: Annotated[int, Field(ge=0, le=U32_MAX)] = 0
    ledger: Annotated[int, Field(ge=0, le=U32_MAX)] = 0
    code: Annotated[int, Field(ge=0, le=U16_MAX)] = 0
    timestamp_min: Annotated[int, Field(ge=0, lt=U64_MAX)] = 0
    timestamp_max: Annotated[int, Field(ge=0, lt=U64_MAX)] = 0
    limit: Annotated[int, Field(ge=1, le=U32_MAX)] = 100
    reverse: bool = False


class QueryParams(QueryIn):
    """The same filter as query parameters (GET): numbers parsed from their text."""

    model_config = ConfigDict(extra="forbid", strict=False)


class AccountRecord(AccountOut):
    """An account with its user data (query results)."""

    user_data_128: str
    user_data_64: str
    user_data_32: int


class TransferRecord(TransferOut):
    """A transfer with its user data and, for a pending one, where it stands (query results)."""

    user_data_128: str
    user_data_64: str
    user_data_32: int
    pending_status: str
