"""Bank topologies (两地三中心, 三地五中心) and city loss: the scenarios are what they claim
to be, every promised invariant holds when a whole city is lost, and every row of the table
in scenarios/README.md ("City loss: which designs keep RPO 0") is true — checked on
shortened runs of the same scenarios (the README's figures are the full-length sweep's)."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from replication.config import promises
from simulator.decision import measure
from simulator.run import run_scenario
from simulator.run_view import runbook, view_of
from simulator.scenario import Scenario, load_scenario, parse_scenario, scenario_document
from simulator.sweep import apply_override, parse_param

README = Path(__file__).resolve().parent.parent / "scenarios" / "README.md"
TOPOLOGIES = ("two-cities-three-dcs", "three-cities-five-dcs")
SHORT = ("duration=4.5", "quiesce=4.0", "chaos[0].at=1.5", "chaos[0].duration=2.5", "workload.rate=60",
         "workload.customers=200", "workload.units_per_region=1")
ACCOUNTS = {"never stopped (no failover)": "no-failover", "failover": "failover",
            "back with the city (no promotion)": "restart"}


def readme_table(topology: str) -> dict[str, dict[str, str]]:
    """The README's city-loss table for one topology: design -> column -> cell."""
    text = README.read_text()
    section = text[text.index("## City loss"):]
    section = section[section.index(f"### {topology}"):]
    rows: list[list[str]] = []
    for ln in section.splitlines()[1:]:
        if ln.startswith("|"):
            rows.append([c.strip() for c in ln.strip().strip("|").split("|")])
        elif rows:
            break  # the first table under the heading ends here
    head, body = rows[0], rows[2:]
    return {r[0].strip("`"): dict(zip(head, r, strict=True)) for r in body}


@cache
def short_scenario(topology: str) -> Scenario:
    """The topology with a short load, a small bank and a 2.5 s city loss (same faults, same sites)."""
    doc, name = scenario_document(topology)
    base = parse_scenario(doc, name)
    for kv in SHORT:
        p = parse_param(kv)
        apply_override(doc, p.path, p.values[0], base)
    return parse_scenario(doc, name)


def votes_in(s: Scenario, city: str) -> tuple[int, int]:
    votes = dict(zip(s.regions, s.replicas or (1,) * len(s.regions), strict=True))
    return sum(votes[d] for d in s.city_groups()[city]), sum(votes.values())


# ---------------------------------------------------------------------- the layouts
@pytest.mark.parametrize("topology, cities", [
    ("two-cities-three-dcs", {"beijing": 2, "shanghai": 1}),
    ("three-cities-five-dcs", {"beijing": 2, "shanghai": 2, "shenzhen": 1}),
])
def test_topologies_are_datacentres_in_cities(topology: str, cities: dict[str, int]) -> None:
    s = load_scenario(topology)
    groups = s.city_groups()
    assert {c: len(d) for c, d in groups.items()} == cities
    m = s.rtt_matrix()
    idx = {r: i for i, r in enumerate(s.regions)}
    city_of = {d: c for c, ds in groups.items() for d in ds}
    for a in s.regions:
        for b in s.regions:
            if a == b:
                continue
            rtt = m[idx[a]][idx[b]]
            if city_of[a] == city_of[b]:
                assert 1 <= rtt <= 2, (a, b, rtt)  # a metro link
            else:
                assert 10 <= rtt <= 99, (a, b, rtt)  # tens of ms between cities
    assert len(s.replicas) == len(s.regions)  # votes given per datacentre
    # the fault is a whole city, as one crash per datacentre at the same time
    assert {f.label for f in s.chaos} == {"city-loss beijing"}
    assert sorted(f.target[0] for f in s.chaos) == sorted(groups["beijing"])
    assert len({(f.at, f.duration) for f in s.chaos}) == 1


# ---------------------------------------------------------------------- the README's table, row by row
CASES = [(t, d) for t in TOPOLOGIES for d in readme_table(t)]


def test_the_table_covers_every_design() -> None:
    for t in TOPOLOGIES:
        assert set(readme_table(t)) == {"async", "unit+async", "unit+semi-sync", "escrow", "quorum",
                                        "quorum+region", "quorum+ledger"}, t


@pytest.mark.slow
@pytest.mark.parametrize("topology, design", CASES)
def test_city_loss_row_holds(topology: str, design: str) -> None:
    row_doc = readme_table(topology)[design]
    s = short_scenario(topology).with_mode(design)
    _, result = run_scenario(s, 1)
    row: dict[str, Any] = measure(result)
    # every promised invariant held, and the run really lost the whole city
    assert row["violated"] == [], row["violated"]
    assert {f["fault"] for f in row["rto"]["faults"]} == {"city-loss beijing"}
    # RPO: what the design guarantees, and what was measured
    durable = promises(s.mode, s.ship)["durability"]
    assert row_doc["RPO 0 guaranteed"] == ("yes" if durable else "no")
    assert row["rpo_lost"] == int(row_doc["RPO measured"])
    # what happened to the lost city's accounts: failover, waited for the city, or never stopped
    assert row["rto"]["status"] == ACCOUNTS[row_doc["lost city's accounts"]]
    if row["rto"]["status"] == "failover":
        assert row["rto"]["worst_s"] < 2.5  # within the outage, on every crashed datacentre's units
    # can an acknowledged write sit only in the lost city? async shipping: always; a majority
    # design: when the city's votes are a majority on their own
    inside, total = votes_in(s, "beijing")
    expected = (2 * inside > total) if durable else True
    assert row_doc["acks only in the lost city"] == ("yes" if expected else "no")
    # the report lives it as one incident on the whole city, its RTO the worst datacentre's
    incidents = runbook(view_of(result))
    assert [(i.window.label, i.window.targets) for i in incidents] == [
        (f"city-loss beijing: crash {','.join(s.city_groups()['beijing'])}", s.city_groups()["beijing"])]
    rtos = [r["rto_s"] for r in result["metrics"]["rto"]]
    assert incidents[0].rto_s == (None if None in rtos else max(rtos))


def test_the_table_figures_look_measured() -> None:
    """The figures are the sweep's (medians of seeds 1-3), in the units the page shows."""
    for t in TOPOLOGIES:
        for design, cells in readme_table(t).items():
            status = ACCOUNTS[cells["lost city's accounts"]]
            assert (cells["RTO"] == "—") == (status == "no-failover"), (t, design)
            if status != "no-failover":
                assert re.fullmatch(r"\d+\.\d\d s", cells["RTO"]), cells["RTO"]
            assert re.fullmatch(r"\d+(\.\d)?%", cells["availability"]), cells["availability"]
            assert re.fullmatch(r"\d+\.\d ms", cells["p50"]), cells["p50"]
