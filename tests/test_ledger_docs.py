"""The documentation is code that runs: the README's API example, the change-stream
recipes of docs/changes.md, and docs/api.md, which must be what docs/gen_api.py writes."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ledger import Account, Ledger, Transfer

ROOT = Path(__file__).resolve().parents[1]


def python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S)


def test_the_api_reference_is_generated_from_the_current_docstrings() -> None:
    run = subprocess.run([sys.executable, str(ROOT / "docs" / "gen_api.py"), "--check"], capture_output=True,
                         text=True)
    assert run.returncode == 0, run.stderr


def test_the_readme_api_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    readme = ROOT / "README.md"
    section = readme.read_text().split("## The library API", 1)[1].split("\n## ", 1)[0]
    (code,) = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    monkeypatch.chdir(tmp_path)  # it writes bank.db where it runs
    namespace: dict[str, object] = {}
    exec(compile(code, str(readme), "exec"), namespace)
    assert [a.id for a in namespace["mine"]] == [1]  # type: ignore[attr-defined]
    assert [t.id for t in namespace["card"]] == [9, 8]  # type: ignore[attr-defined]  # a post keeps its code
    assert namespace["history"] and namespace["then"] is not None


def test_the_change_stream_recipes_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with Ledger.open("sqlite:///bank.db") as led:
        led.create_accounts([Account(id=1, ledger=1, code=1), Account(id=2, ledger=1, code=1)])
        led.create_transfers([Transfer(id=10 + i, debit_account_id=1 + i % 2, credit_account_id=2 - i % 2,
                                       amount=i, ledger=1, code=1) for i in range(1, 7)])
    follow_code, follower_code = python_blocks(ROOT / "docs" / "changes.md")
    namespace: dict[str, object] = {}
    exec(compile(follow_code, "docs/changes.md", "exec"), namespace)
    follow = namespace["follow"]
    follow("sqlite:///bank.db", "state.json")  # type: ignore[operator]
    follow("sqlite:///bank.db", "state.json")  # type: ignore[operator]  # nothing new: nothing twice
    state = json.loads(Path("state.json").read_text())
    assert state["totals"] == {"2": 1 + 3 + 5, "1": 2 + 4 + 6} and state["cursor"] == 3
    exec(compile(follower_code, "docs/changes.md", "exec"), namespace)
    spending, spent = namespace["spending"], namespace["Spent"]
    spending.pull()  # type: ignore[attr-defined]
    totals = {i: spending.repository.get(spent.create_id(i)).total for i in (1, 2)}  # type: ignore[attr-defined]
    assert totals == {1: 12, 2: 9}
    spending.close()  # type: ignore[attr-defined]
