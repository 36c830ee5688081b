"""Who may call a gateway, and as what: bearer tokens, one per role, checked before any work.

A gateway moves money, so no request does anything before its caller is known. Every
route declares the roles it admits (`roles(...)`, kept in the route's OpenAPI entry as
``x-geoledger-roles``, so /docs shows them); a route that declares none is refused to
everyone, and `check_policies` refuses to build an app with such a route, so a new
endpoint cannot go public by omission. Only the liveness probe and the API description
(`PUBLIC`) are open.

Roles (least privilege: none of them holds another's rights):

* ``payments`` — creates, posts and voids transfers and reads accounts, transfers and
  statements; customer accounts only: a request naming a bank-internal account (a unit's
  fund ``2^40+u`` or transit ``2^40+2^20+u``) is refused with 403 naming the rule, at the
  gateway, before the node sees it.
* ``auditor`` — reads everything, the bank's accounts and `/metrics` included; writes nothing.
* ``operator`` — the internal endpoints (chaos, raw state), account provisioning and
  `/metrics`; moves no money.

Tokens are 256-bit random strings. Gateways hold only their SHA-256 digests (in the run's
config), so a config file, a core dump or a region process never yields a usable token;
a presented token is hashed and compared with every role's digest in constant time
(`hmac.compare_digest`, all of them, no early exit). 401 means no or an unknown token
(with ``WWW-Authenticate: Bearer``), 403 a known token whose role the route does not admit.
No message ever repeats a presented token.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.routing import APIRoute
from starlette.routing import Match

from replication.accounts import FUND_BASE, TRANSIT_BASE, UNIT_MASK

ROLES_KEY = "x-geoledger-roles"
"""Where a route's admitted roles live (its `openapi_extra`)."""
PUBLIC = frozenset({"/health", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"})
"""Paths anyone may call: the liveness probe and the API's description."""
SCOPE_ROLE = "geoledger.role"
SCOPE_ROUTE = "geoledger.route"
BANK_ACCOUNTS = range(FUND_BASE, TRANSIT_BASE + UNIT_MASK + 1)
"""Every id a unit's fund or transit account can have, whatever the run's unit count."""
BANK_ACCOUNT_RULE = "ACCOUNT_IS_BANK_INTERNAL"


class Role(StrEnum):
    PAYMENTS = "payments"
    AUDITOR = "auditor"
    OPERATOR = "operator"


def roles(*admitted: Role) -> dict[str, Any]:
    """A route's `openapi_extra`: the roles it admits, and the bearer scheme for /docs."""
    return {ROLES_KEY: [r.value for r in admitted], "security": [{"bearer": []}]}


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Credentials:
    """The tokens of one run, one per role. `serve` writes them, owner-only, for its users."""

    tokens: Mapping[Role, str]

    @classmethod
    def generate(cls) -> Credentials:
        return cls({role: secrets.token_urlsafe(32) for role in Role})

    def digests(self) -> dict[str, str]:
        """What gateways hold: role -> SHA-256 of its token (no secret)."""
        return {role.value: digest(token) for role, token in self.tokens.items()}

    def header(self, role: Role) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}

    def save(self, path: Path, gateways: list[str]) -> None:
        """Write the tokens to `path`, readable and writable by its owner only (0600): created
        with that mode, never widened, replaced atomically (no moment a wider file exists)."""
        body = {"gateways": gateways, "tokens": {r.value: t for r, t in self.tokens.items()},
                "usage": "Authorization: Bearer <token>; payments moves customers' money, auditor reads "
                         "everything, operator runs the internal endpoints"}
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(body, f, indent=2)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    @classmethod
    def load(cls, path: Path) -> Credentials:
        """Read a credentials file; refused if others than its owner may read it (as ssh
        refuses a private key anyone can read: the tokens may already be someone else's)."""
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise PermissionError(f"{path} is readable by others (mode {stat.filemode(mode)}): chmod 600 it, "
                                  "and treat its tokens as leaked")
        raw = json.loads(path.read_text())
        return cls({Role(name): token for name, token in raw["tokens"].items()})


def gateways_in(path: Path) -> list[str]:
    """The gateway URLs a credentials file names (what a client should call)."""
    return [str(g) for g in json.loads(path.read_text()).get("gateways", [])]


class TokenVerifier:
    """Role of a presented bearer token, from the roles' SHA-256 digests, in constant time."""

    def __init__(self, digests: Mapping[str, str]) -> None:
        self._digests = [(Role(name), bytes.fromhex(d)) for name, d in sorted(digests.items())]
        if not self._digests:
            raise ValueError("a gateway needs at least one role's token digest")

    def role_of(self, authorization: str | None) -> Role | None:
        if not authorization:
            return None
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        presented = hashlib.sha256(token.strip().encode("utf-8", "surrogateescape")).digest()
        found: Role | None = None
        for role, want in self._digests:  # every digest, always: the time says nothing about which
            if hmac.compare_digest(presented, want):
                found = role
        return found


def check_policies(app: FastAPI) -> None:
    """Refuse an app with a route that is neither public nor declares its roles."""
    bare = [f"{sorted(r.methods or ())} {r.path}" for r in app.routes
            if isinstance(r, APIRoute) and r.path not in PUBLIC and ROLES_KEY not in (r.openapi_extra or {})]
    if bare:
        raise RuntimeError(f"routes without a role policy (declare roles(...)): {', '.join(bare)}")


def _admitted(route: Any) -> frozenset[str] | None:
    extra = getattr(route, "openapi_extra", None) or {}
    names = extra.get(ROLES_KEY)
    return frozenset(names) if names is not None else None


class BearerAuth:
    """Raw ASGI middleware: finds the route, then admits the caller or answers 401/403 before
    the body is read. Stores the route's template and the caller's role in the scope (for
    metrics labels and the payments rule)."""

    def __init__(self, app: Any, verifier: TokenVerifier, routes: Iterable[Any]) -> None:
        self.app = app
        self.verifier = verifier
        self.routes = routes  # the app's own list: routes added after the middleware count too

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = next((r for r in self.routes if r.matches(scope)[0] == Match.FULL), None)
        if route is None:  # the router answers 404 / 405; nothing runs
            scope[SCOPE_ROUTE] = "unmatched"
            await self.app(scope, receive, send)
            return
        scope[SCOPE_ROUTE] = route.path
        if route.path in PUBLIC:
            await self.app(scope, receive, send)
            return
        presented = next((v for k, v in scope["headers"] if k == b"authorization"), b"")
        role = self.verifier.role_of(presented.decode("latin-1"))
        if role is None:
            await _refuse(send, 401, "authentication required: Authorization: Bearer <token>",
                          [(b"www-authenticate", b'Bearer realm="geoledger"')])
            return
        admitted = _admitted(route)
        if admitted is None or role.value not in admitted:
            allowed = ", ".join(sorted(admitted or ())) or "nobody"
            await _refuse(send, 403, f"role {role.value} may not call {scope['method']} {route.path} "
                                     f"(admitted: {allowed})")
            return
        scope[SCOPE_ROLE] = role
        await self.app(scope, receive, send)


async def _refuse(send: Any, status: int, detail: str, extra: list[tuple[bytes, bytes]] | None = None) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
               *(extra or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def role_of(request: Request) -> Role | None:
    return request.scope.get(SCOPE_ROLE)


def refuse_bank_accounts(role: Role | None, named: Iterable[tuple[int, str, int]]) -> None:
    """The payments rule: (index, field, account id) a request names; 403 naming the first
    bank-internal one if the caller (`role`) acts for customers. Other roles pass (an auditor
    reads the bank's books; no role but payments writes transfers)."""
    if role is not Role.PAYMENTS:
        return
    for index, field, account in named:
        if account in BANK_ACCOUNTS:
            where = f"item {index}: " if index >= 0 else ""
            raise HTTPException(403, {"rule": BANK_ACCOUNT_RULE, "field": field, "index": index,
                                      "msg": f"{where}{field}: account {account} is the bank's own (a unit's fund "
                                             "or transit account); the payments role acts for customers only"})


__all__ = ["BANK_ACCOUNTS", "BANK_ACCOUNT_RULE", "PUBLIC", "BearerAuth", "Credentials", "Role", "TokenVerifier",
           "check_policies", "digest", "gateways_in", "refuse_bank_accounts", "role_of", "roles"]
