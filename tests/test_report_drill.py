"""`geoledger drill`: runbook timeline, SLO verdicts, exit codes and JUnit XML."""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from simulator import drill as drill_mod
from simulator.run_view import load_run
from tests.support.reports import cli, result_of, tiny_run, tiny_scenario, with_series


def _junit(path: Path) -> dict[str, Any]:
    suite = ET.parse(path).getroot().find("testsuite")
    assert suite is not None
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    return {"suite": suite, "cases": cases}


@pytest.mark.slow
def test_drill_passes_and_writes_junit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out, junit = tmp_path / "run", tmp_path / "ci" / "drill.xml"
    assert cli("drill", str(tiny_scenario()), "--runtime", "deterministic", "--out", str(out),
               "--junit", str(junit)) == 0
    text = capsys.readouterr().out
    for step in ("fault began", "promoted: new home or new leader", "writes resumed", "fault healed",
                 "failure detected", "old home rejoined", "DRILL PASSED", "RTO crash beijing @1 s"):
        assert step in text, step
    for name in ("result.json", "history.jsonl", "final_state.json", "report.html", "drill.json"):
        assert (out / name).exists(), name
    j = _junit(junit)
    assert j["suite"].get("failures") == "0" and int(j["suite"].get("tests")) == len(j["cases"]) >= 10
    assert {"conservation", "durability", "RTO crash beijing @1 s", "RPO"} <= set(j["cases"])
    d = json.loads((out / "drill.json").read_text())
    assert d["passed"] is True and d["incidents"][0]["rto_s"] is not None


@pytest.mark.slow
def test_drill_fails_on_an_slo_miss(tmp_path: Path) -> None:
    out, junit = tmp_path / "run", tmp_path / "drill.xml"
    code = cli("drill", str(tiny_scenario(rto_s=0.05)), "--runtime", "deterministic", "--out", str(out),
               "--junit", str(junit))
    assert code == 1
    j = _junit(junit)
    failure = j["cases"]["RTO crash beijing @1 s"].find("failure")
    assert failure is not None and "target ≤ 0.05 s" in failure.get("message", "")
    assert j["cases"]["conservation"].find("failure") is None


class CorruptingRuntime:
    """A stand-in runtime: replays a recorded run but reports a conservation violation, to
    check that the drill treats any runtime's outputs the same way."""

    name = "corrupting"
    live = True

    def __init__(self) -> None:
        self.snapshots: list[drill_mod.Snapshot] = []

    def run(self, scenario: Any, seed: int, out: Path, on_progress: drill_mod.ProgressFn) -> Path:
        shutil.copytree(tiny_run(), out, dirs_exist_ok=True)
        r = with_series(result_of(out))
        self.spoil(r)
        (out / "result.json").write_text(json.dumps(r))
        for snap in drill_mod.snapshots(load_run(out)):  # a live runtime reports as it goes
            on_progress(snap)
        return out / "result.json"

    def spoil(self, r: dict[str, Any]) -> None:
        r["invariants"]["conservation"].update(ok=False, first_violation={"t": 3.0, "region": "beijing",
                                                                           "problem": "debits != credits"})
        r["violated"] = ["conservation"]


class FaultlessRuntime(CorruptingRuntime):
    """Every invariant held, but the runtime could not carry out a fault (Ray reported the
    region's restart failed): the drill did not test what its scenario says."""

    name = "faultless"

    def spoil(self, r: dict[str, Any]) -> None:
        r.setdefault("ray", {})["controller_errors"] = ["Controller._restart: ActorUnavailableError('restarting')"]


def _drill_on(runtime: type[CorruptingRuntime], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[int, str]:
    """`geoledger drill` of the tiny scenario on a stand-in runtime: exit code, terminal text."""
    monkeypatch.setitem(drill_mod.RUNTIMES, runtime.name, runtime)
    console = Console(file=open(tmp_path / "out.txt", "w"), width=120)  # noqa: SIM115
    code = drill_mod.drill(str(tiny_scenario()), runtime=runtime.name, out=tmp_path / "run",
                           junit=tmp_path / "drill.xml", console=console)
    console.file.close()
    return code, (tmp_path / "out.txt").read_text()


def test_drill_fails_on_a_violation_from_any_runtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code, text = _drill_on(CorruptingRuntime, tmp_path, monkeypatch)
    junit = tmp_path / "drill.xml"
    assert code == 1
    assert "VIOLATED (promised): conservation" in text and "DRILL FAILED" in text
    # the recorded timeline fills in every runbook step
    assert "heartbeats missed" in text and "caught up to v2" in text and "not recorded" not in text
    failure = _junit(junit)["cases"]["conservation"].find("failure")
    assert failure is not None and "debits != credits" in (failure.text or "")


def test_snapshots_follow_the_phases() -> None:
    view = load_run(tiny_run())
    snaps = list(drill_mod.snapshots(view))
    assert len(snaps) == 7 and snaps[-1].t == 7.0
    assert snaps[0].phase == "steady" and not snaps[0].faults
    assert snaps[1].faults == ["crash beijing (1–2.5 s)"]
    assert snaps[1].phase.startswith(("outage", "failing over", "failed over"))
    assert snaps[-1].phase.startswith("quiesce")
    assert snaps[0].lag_ms is not None and snaps[0].lag_ms["beijing"] is not None  # recorded per second
    assert sum(len(s.events) for s in snaps) == len(view.events)


def test_drill_bad_input_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli("drill", "no-such-scenario", "--runtime", "deterministic", "--out", str(tmp_path / "o")) == 2
    assert "not found" in capsys.readouterr().err
    assert cli("drill", str(tiny_scenario()), "--runtime", "deterministic", "--mode", "quorum9",
               "--out", str(tmp_path / "o")) == 2
    assert "mode" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        cli("drill", str(tiny_scenario()), "--runtime", "no-such-runtime")
    assert e.value.code == 2
    assert not (tmp_path / "o").exists()


def test_drill_fails_when_the_runtime_could_not_carry_out_a_fault(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    code, text = _drill_on(FaultlessRuntime, tmp_path, monkeypatch)
    junit = tmp_path / "drill.xml"
    assert code == 1
    assert "RUNTIME ERROR: Controller._restart" in text and "DRILL FAILED" in text
    assert "VIOLATED" not in text, "every invariant held: the failure is the runtime's"
    j = _junit(junit)
    assert j["suite"].get("failures") == "1"
    failure = j["cases"]["scenario carried out"].find("failure")
    assert failure is not None and "ActorUnavailableError" in (failure.text or "")
    assert json.loads((tmp_path / "run" / "drill.json").read_text())["runtime_errors"]
