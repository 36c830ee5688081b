"""The deterministic simulator end to end: determinism, the modes' promises, the outputs."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from geoledger.cli import build_parser
from replication.config import INVARIANTS
from simulator.cli import cmd_simulate
from simulator.run import run_scenario
from simulator.scenario import ScenarioError, load_scenario, parse_scenario


def small(name: str, mode: str, **workload: object):  # type: ignore[no-untyped-def]
    s = load_scenario(name).with_mode(mode)
    return replace(s, workload=replace(s.workload, **workload)) if workload else s


@pytest.mark.slow
def test_same_seed_same_digest_other_seed_other_digest():
    s = replace(small("fuzz", "unit+semi-sync"), duration=4.0, quiesce=4.0)
    _, a = run_scenario(s, 7)
    _, b = run_scenario(s, 7)
    _, c = run_scenario(s, 8)
    assert a["digest"] == b["digest"]
    assert a["metrics"]["latency_ms"] == b["metrics"]["latency_ms"]
    assert a["digest"] != c["digest"]


@pytest.fixture(scope="module")
def partition_async():  # type: ignore[no-untyped-def]
    return run_scenario(small("partition", "async", rate=400), 1)[1]


@pytest.mark.slow
def test_async_under_partition_is_caught_overdrawing(partition_async):  # type: ignore[no-untyped-def]
    v = partition_async["invariants"]["no_overdraft"]
    assert v["ok"] is False and v["promised"] is False
    fv = v["first_violation"]
    assert fv["seed"] == 1 and fv["transfer_ids"] and fv["t"] > 5.0
    regions = {d["region"] for d in fv["acknowledged_debits"]}
    assert len(regions) >= 2  # the same money acknowledged in two regions
    assert partition_async["violated"] == []  # async never promised it: exit code 0


@pytest.mark.slow
def test_escrow_never_overdraws_under_partition():
    _, res = run_scenario(small("partition", "escrow", rate=400), 1)
    inv = res["invariants"]
    assert all(v["ok"] for k, v in inv.items() if v["promised"]), inv
    assert inv["no_overdraft"]["promised"] and inv["no_overdraft"]["ok"]


@pytest.mark.slow
def test_unit_semi_sync_loses_nothing_in_a_region_outage_and_reports_rto():
    _, res = run_scenario(small("region-outage", "unit+semi-sync", rate=400), 1)
    assert res["violated"] == []
    assert res["metrics"]["rpo"]["lost_acknowledged"] == 0
    rto = res["metrics"]["rto"][0]
    assert rto["fault"] == "crash" and 0 < rto["rto_s"] < 5
    assert res["metrics"]["promotions"]


@pytest.mark.slow
def test_unit_async_shipping_reports_rpo_loss_but_never_overdraws():
    _, res = run_scenario(small("partition", "unit+async", rate=400), 1)
    inv = res["invariants"]
    assert inv["durability"]["promised"] is False
    assert inv["durability"]["rpo"]["lost_acknowledged"] > 0  # the cut-off home's tail
    assert res["metrics"]["divergence_reports"] > 0
    assert inv["no_overdraft"]["ok"] and inv["conservation"]["ok"] and inv["convergence"]["ok"]


@pytest.mark.slow
def test_simulate_writes_the_output_contract(tmp_path):  # type: ignore[no-untyped-def]
    args = build_parser().parse_args(["simulate", "fuzz", "--seed", "3", "--mode", "unit+semi-sync",
                                      "--out", str(tmp_path), "--check-invariants"])
    assert cmd_simulate(args) == 0
    result = json.loads((tmp_path / "result.json").read_text())
    for key in ("seed", "mode", "runtime", "scenario", "digest", "invariants", "metrics"):
        assert key in result
    for name in INVARIANTS:
        assert set(result["invariants"][name]) >= {"ok", "promised", "first_violation"}
    lines = (tmp_path / "history.jsonl").read_text().splitlines()
    first = json.loads(lines[0])
    assert set(first) >= {"op", "id", "debit", "credit", "amount", "ledger", "flags", "pending_id", "region",
                          "invoke_t", "complete_t", "outcome", "result"}
    assert {json.loads(x)["outcome"] for x in lines} <= {"ok", "fail", "timeout"}
    final = json.loads((tmp_path / "final_state.json").read_text())
    region = next(iter(final["regions"].values()))
    acct = next(iter(region["accounts"].values()))
    assert set(acct) == {"debits_pending", "debits_posted", "credits_pending", "credits_posted", "flags"}
    # anyone can re-check conservation from the raw state
    totals = [sum(a["debits_posted"] for a in region["accounts"].values()),
              sum(a["credits_posted"] for a in region["accounts"].values())]
    assert totals[0] == totals[1]


@pytest.mark.slow
def test_simulate_exit_code_is_nonzero_only_for_a_promised_violation(tmp_path):  # type: ignore[no-untyped-def]
    path = tmp_path / "async-partition.toml"
    path.write_text((load_scenario.__globals__["SCENARIO_DIR"] / "partition.toml").read_text()
                    .replace('mode = "unit"', 'mode = "async"').replace("rate = 1000", "rate = 300"))
    args = build_parser().parse_args(["simulate", str(path), "--seed", "1", "--out", str(tmp_path / "out")])
    assert cmd_simulate(args) == 0  # overdraft shown, but async never promised it
    result = json.loads((tmp_path / "out" / "result.json").read_text())
    assert result["invariants"]["no_overdraft"]["ok"] is False


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"workload": {"rte": 5}}, "workload.rte"),
        ({"workload": {"mix": {"cross_unti": 0.1}}}, "workload.mix.cross_unti"),
        ({"regions": {"names": ["changchun", "atlantis"]}}, "regions.names"),
        ({"mode": "paxos"}, "mode"),
        ({"chaos": [{"at": 1, "fault": "meteor", "target": "beijing", "duration": 1}]}, "chaos[0].fault"),
        ({"chaos": [{"at": 1, "fault": "crash", "target": "mars", "duration": 1}]}, "chaos[0].target"),
        ({"chaos": [{"at": 1, "fault": "loss", "target": "beijing", "duration": 1, "q": 1}]}, "chaos[0].q"),
        ({"workload": {"customers": "many"}}, "workload.customers"),
        ({"durations": 3}, "durations"),
        ({"regions": {"names": ["changchun", "beijing", "shanghai"], "replicas": [2, 2]}}, "regions.replicas"),
        ({"regions": {"names": ["changchun", "beijing", "shanghai"], "replicas": [2, 0, 1]}}, "regions.replicas"),
        ({"regions": {"names": ["changchun", "beijing", "shanghai"], "replicas": [2, "2", 1]}}, "regions.replicas"),
        ({"regions": {"names": ["changchun", "beijing", "shanghai"], "replicas": [3, 1, 1]}}, "regions.replicas"),
        ({"node": {"quorum_groups": "account"}}, "node.quorum_groups"),
        ({"node": {"snapshot_every": 0}}, "node.snapshot_every"),
        ({"node": {"snapshot_every": 1.5}}, "node.snapshot_every"),
    ],
)
def test_scenario_errors_name_the_key(data, key):  # type: ignore[no-untyped-def]
    with pytest.raises(ScenarioError) as e:
        parse_scenario(data)
    assert str(e.value).startswith(key), str(e.value)


def test_mode_names_pick_the_design_and_reject_unknown_variants():
    s = load_scenario("baseline")
    assert s.with_mode("quorum+ledger").node.quorum_groups == "ledger"
    assert s.with_mode("quorum+ledger").mode_label == "quorum+ledger"
    assert s.with_mode("quorum").mode_label == "quorum" and s.with_mode("quorum").node.quorum_groups == "unit"
    assert s.with_mode("unit+async").mode_label == "unit+async"
    with pytest.raises(ScenarioError, match="quorum"):
        s.with_mode("quorum+account")


def test_shipped_scenarios_load():
    for name in ("baseline", "region-outage", "primary-outage", "partition", "flaky-wan", "clock-skew",
                 "split-brain-attempt"):
        s = load_scenario(name)
        assert s.name == name and len(s.regions) == 3
    eight = parse_scenario({"regions": {"names": ["changchun", "beijing", "shanghai", "guangzhou", "chengdu",
                                                  "wuhan", "xian", "shenzhen"]}})
    rtt = eight.rtt_matrix()
    assert len(rtt) == 8 and rtt[0][1] < rtt[0][3]  # Changchun-Beijing closer than Changchun-Guangzhou


def _slow_store_run(settle_max_s: int, monkeypatch: pytest.MonkeyPatch) -> dict[str, object]:
    """region-outage, shortened, over a store whose group commits take 700 ms (virtual): the
    backlog is still draining when its 2 s quiesce ends."""
    import simulator.runtime as runtime
    from simulator.plan import shortened

    monkeypatch.setattr(runtime, "SETTLE_MAX_S", settle_max_s)
    s = shortened(small("region-outage", "unit+semi-sync", rate=40), 8.0, 2.0)
    return run_scenario(replace(s, node=replace(s.node, commit_ms=700.0)), 1)[1]


def test_a_run_is_judged_once_drained_not_mid_backlog(monkeypatch: pytest.MonkeyPatch) -> None:
    drained = _slow_store_run(30, monkeypatch)
    assert drained["violated"] == []
    settle = drained["metrics"]["sim"]["settle_s"]  # type: ignore[index]
    assert 0 < settle <= 30 and drained["metrics"]["sim"]["virtual_s"] == 10.0 + settle  # type: ignore[index]
    # judged at the quiesce's end (the settle off), the same run reads as money stuck in transit
    cut = _slow_store_run(0, monkeypatch)
    assert cut["metrics"]["sim"]["settle_s"] is None  # type: ignore[index]
    assert "conservation" in cut["violated"]  # type: ignore[operator]
    assert "transit" in cut["invariants"]["conservation"]["first_violation"]["problem"]  # type: ignore[index]


def test_a_quiesce_long_enough_needs_no_settle() -> None:
    _, result = run_scenario(replace(small("region-outage", "unit+semi-sync", rate=40), duration=8.0), 1)
    assert result["violated"] == [] and result["metrics"]["sim"]["settle_s"] == 0.0
