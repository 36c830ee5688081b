"""Writes docs/api.md: the reference of geoledger's library API, from its docstrings.

    python docs/gen_api.py            # rewrite docs/api.md
    python docs/gen_api.py --check    # exit 1 if docs/api.md is out of date (tests run this)

Every name in `ledger.__all__` (plus `ledger.follow.LedgerFollower`) gets a section:
classes with their constructor, fields, properties and public methods; enums with every
member and its value; constants with their value. Docstrings of constants and enum
members (a string literal right after the assignment) are read from the source with
`ast`, since Python keeps no such docstrings at runtime.
"""

from __future__ import annotations

import ast
import dataclasses
import enum
import inspect
import sys
import textwrap
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "api.md"
sys.path.insert(0, str(ROOT))

import ledger  # noqa: E402
import ledger.ledger  # noqa: E402  (the application loads lazily; its attribute docs are read here)
import ledger.types  # noqa: E402
from ledger.follow import LedgerFollower  # noqa: E402

GROUPS = [
    ("The ledger", ["Ledger", "VerifyReport", "BATCH_MAX"]),
    ("Accounts and transfers", ["Account", "Transfer", "AccountState", "TransferState", "AccountBalance",
                                "AccountFlags", "TransferFlags", "TransferPendingStatus", "AMOUNT_MAX",
                                "TIMESTAMP_MAX"]),
    ("Result codes", ["CreateAccountResult", "CreateTransferResult"]),
    ("Queries", ["QueryFilter", "QueryFilterFlags"]),
    ("The change stream", ["Change", "ChangeFeed", "CommittedBatch", "LedgerFollower"]),
    ("Errors", ["LedgerError", "InvalidInputError", "LedgerClosedError", "StoreURLError", "StoreError",
                "CorruptStoreError", "ConcurrentWriterError"]),
]


def attribute_docs(module: Any) -> dict[str, str]:
    """`{"NAME": doc, "Class.MEMBER": doc}` for string literals that follow an assignment."""
    tree = ast.parse(inspect.getsource(module))
    docs: dict[str, str] = {}

    def scan(body: list[ast.stmt], prefix: str) -> None:
        for stmt, following in zip(body, body[1:], strict=False):
            target = None
            if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
                target = stmt.targets[0].id
            elif isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
                target = stmt.target.id
            if (target and isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant)
                    and isinstance(following.value.value, str)):
                docs[prefix + target] = inspect.cleandoc(following.value.value)
        for stmt in body:
            if isinstance(stmt, ast.ClassDef):
                scan(stmt.body, prefix + stmt.name + ".")

    scan(tree.body, "")
    return docs


def doc_of(obj: Any) -> str:
    return inspect.cleandoc(obj.__doc__) if obj.__doc__ else ""


def signature(obj: Any, name: str) -> str:
    """`name(params) -> ret`, without private (underscored) parameters."""
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return name
    sig = sig.replace(parameters=[p for p in sig.parameters.values() if not p.name.startswith("_")])
    return f"{name}{sig}".replace("b''", 'b""').replace("'", "")


def members(cls: type) -> list[tuple[str, Any]]:
    """Public attributes defined by the class itself, in source order."""
    own = [(n, v) for n, v in vars(cls).items() if not n.startswith("_") or n in ("__enter__", "__exit__")]
    return [(n, v) for n, v in own if callable(v) or isinstance(v, property | classmethod | staticmethod)]


def render_class(name: str, cls: type, notes: dict[str, str], out: list[str]) -> None:
    kind = "exception" if issubclass(cls, BaseException) else "class"
    bases = [b.__name__ for b in cls.__bases__ if b is not object]
    out.append(f"### `{name}`" + (f" ({kind}: {', '.join(bases)})" if bases else f" ({kind})"))
    out.append("")
    if issubclass(cls, enum.Enum):
        out.append(doc_of(cls))
        out.append("")
        out.append("| member | value | |")
        out.append("| --- | --- | --- |")
        for member in cls:
            note = notes.get(f"{name}.{member.name}", "").replace("\n", " ")
            transient = " transient" if getattr(member, "transient", False) is True else ""
            out.append(f"| `{member.name}` | {int(member.value)} | {note}{transient} |")
        out.append("")
        return
    if dataclasses.is_dataclass(cls):
        out.append(f"`{signature(cls, name)}`")
    elif not issubclass(cls, BaseException):
        out.append(f"`{signature(cls.__init__, name).replace('(self, ', '(').replace('(self)', '()')}`")
    out.append("")
    out.append(doc_of(cls))
    out.append("")
    for attr, value in members(cls):
        if isinstance(value, property):
            out.append(f"- **`{attr}`** (property) — {doc_of(value.fget).replace(chr(10), ' ')}".rstrip(" —"))
            continue
        func = value.__func__ if isinstance(value, classmethod | staticmethod) else value
        sig = signature(func, attr).replace("(self, ", "(").replace("(self)", "()").replace("(cls, ", "(")
        out.append(f"- **`{sig}`**")
        body = doc_of(func)
        if body:
            out.append("")
            out.append(textwrap.indent(body, "  "))
            out.append("")
    out.append("")


def render() -> str:
    notes = {**attribute_docs(ledger.types), **attribute_docs(ledger.ledger)}
    names = {name: getattr(ledger, name) for name in ledger.__all__}
    names["LedgerFollower"] = LedgerFollower
    grouped = [n for _, group in GROUPS for n in group]
    missing = sorted(set(names) - set(grouped))
    assert not missing, f"add to GROUPS: {missing}"
    out = [
        "# geoledger library API reference",
        "",
        "<!-- Generated by `python docs/gen_api.py` from the docstrings; do not edit by hand. -->",
        "",
        doc_of(ledger),
        "",
        "Import everything from `ledger` (`LedgerFollower` from `ledger.follow`). Amounts, ids and user data",
        "are Python ints (u128 up to 2^128-1, never floats); timestamps are ns of ledger time (below 2^63).",
        "Misuse raises `InvalidInputError` and changes nothing; business outcomes are result codes.",
        "",
    ]
    for title, group in GROUPS:
        out.append(f"## {title}")
        out.append("")
        for name in group:
            value = names[name]
            if isinstance(value, type):
                render_class(name, value, notes, out)
            else:
                out.append(f"### `{name}` = {value:_}")
                out.append("")
                out.append(notes.get(name, ""))
                out.append("")
    return "\n".join(line.rstrip() for line in out).rstrip() + "\n"


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        if not OUT.exists() or OUT.read_text() != text:
            print(f"{OUT} is out of date: run python docs/gen_api.py", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text)
    print(f"written: {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
