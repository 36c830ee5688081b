"""`region.audit.StoreAudit`: a region's SQLite store read for an audit, as an operator reads
the disk of a node that is gone.

It finds what a region's own start refuses (a damaged entry, a record that cannot be read,
a broken chain value, a hole, a missing file) and reports it as the first bad record
instead of raising; it never writes (no lock, no clean-up, the file's bytes unchanged);
and the `audit_chain` checker judges it like any store.
"""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest

from ledger.errors import StoreError
from region.audit import StoreAudit
from region.sqlite import SqliteRegionStore
from tests.support.records import entry, every_record_kind


def _store(path: Path) -> list[bytes]:
    """A closed store at `path` with one of every record kind; its chain values."""
    s = SqliteRegionStore(path)
    for p in every_record_kind():
        s.append(p)
    s.close()
    return [r.chain for r in s.records]


def _set(path: Path, sql: str, *args: object) -> None:
    with sqlite3.connect(path) as c:
        c.execute(sql, args)


def _files(path: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(path.parent.iterdir())}


def test_an_intact_store_verifies_and_nothing_on_disk_changes(tmp_path: Path) -> None:
    db = tmp_path / "region.db"
    chains = _store(db)
    before = _files(db)
    a = StoreAudit(db)
    assert a.verify_chain() == (True, None) and a.problem is None
    assert [r.chain for r in a.records] == chains
    after = _files(db)
    # SQLite reads a WAL database through its shared-memory index (-shm, and an empty -wal
    # if there was none): every file that was there is byte for byte what it was
    assert {k: after[k] for k in before} == before and set(after) - set(before) <= {"region.db-shm", "region.db-wal"}
    with pytest.raises(StoreError):
        a.append(entry(99))


def test_an_intact_store_reads_while_its_writer_holds_the_lock(tmp_path: Path) -> None:
    """A reader needs no writer lock (the writer of a lost node's store is gone anyway)."""
    db = tmp_path / "region.db"
    _store(db)
    writer = SqliteRegionStore(db)
    try:
        assert StoreAudit(db).verify_chain() == (True, None)
    finally:
        writer.close()


def test_an_entry_damaged_in_place_is_the_first_bad_record(tmp_path: Path) -> None:
    db = tmp_path / "region.db"
    _store(db)
    s = SqliteRegionStore(db)
    s.corrupt(2)  # bit rot under the entry's own checksum: the chain still links it
    s.close()
    assert StoreAudit(db).verify_chain() == (False, 2)


@pytest.mark.parametrize("damage, problem", [
    ("UPDATE records SET payload = x'deadbeef' WHERE idx = 3", "record 3 cannot be read"),
    ("UPDATE records SET chain = zeroblob(32) WHERE idx = 3", "record 3: its chain value does not match"),
    ("DELETE FROM records WHERE idx = 3", "record 3 is missing"),
])
def test_what_a_region_would_refuse_to_start_from_is_found_not_raised(tmp_path: Path, damage: str,
                                                                      problem: str) -> None:
    db = tmp_path / "region.db"
    _store(db)
    _set(db, damage)
    a = StoreAudit(db)
    assert a.verify_chain() == (False, 3) and a.problem is not None and problem in a.problem, a.problem
    assert len(a.records) == 3, "the records before it were read (and verify)"


def test_a_missing_file_is_a_failed_audit_not_a_pass(tmp_path: Path) -> None:
    a = StoreAudit(tmp_path / "gone.db")
    assert a.verify_chain() == (False, 0) and a.problem is not None and "no such file" in a.problem
    assert not (tmp_path / "gone.db").exists(), "nothing created"


def test_the_audit_chain_checker_judges_it_like_any_store(tmp_path: Path) -> None:
    """The checker's verdict names the region, the record, and the audit's finding."""
    from types import SimpleNamespace

    from simulator.checkers import audit_chain

    db = tmp_path / "region.db"
    _store(db)
    _set(db, "DELETE FROM records WHERE idx = 4")
    sim = SimpleNamespace(stores=[StoreAudit(db)], regions=["beijing"], nodes=[None])
    bad = audit_chain(sim, 9.0)  # type: ignore[arg-type]
    assert bad is not None and bad["region"] == "beijing" and bad["record"] == 4, bad
    assert "record 4 is missing" in bad["problem"]
