"""The scenario loader: `extends`, round-trip times by name pair, cities, `city-loss`, and
hostile files (every refusal names the key it is about)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from simulator.scenario import (
    Scenario,
    ScenarioError,
    deep_merge,
    load_scenario,
    parse_scenario,
    scenario_document,
)


def _write(tmp: Path, name: str, text: str) -> Path:
    p = tmp / f"{name}.toml"
    p.write_text(text)
    return p


# ---------------------------------------------------------------------- extends
def test_extends_deep_merges_and_overrides_only_what_differs(tmp_path: Path) -> None:
    p = _write(tmp_path, "faster-detection", 'extends = "region-outage"\n[node]\nsuspect_ms = 300.0\n'
                                             '[workload]\nrate = 200\n')
    s = load_scenario(p)
    base = load_scenario("region-outage")
    assert s.name == "faster-detection" and s.description == ""  # identity is never inherited
    assert s.node.suspect_ms == 300.0 and s.node.lease_ms == base.node.lease_ms
    assert s.workload.rate == 200 and s.workload.customers == base.workload.customers
    assert s.chaos == base.chaos and s.slo == base.slo and s.regions == base.regions


def test_extends_chains_resolve_relative_to_the_file_and_arrays_replace(tmp_path: Path) -> None:
    _write(tmp_path, "mid", 'extends = "partition"\nduration = 12.0\n')
    p = _write(tmp_path, "leaf", 'extends = "mid"\nchaos = []\n')
    s = load_scenario(p)
    assert s.duration == 12.0 and s.chaos == ()  # [[chaos]] replaced whole: the faults are gone
    assert s.workload.spend_all.accounts == load_scenario("partition").workload.spend_all.accounts
    assert deep_merge({"a": {"b": 1, "c": [1]}}, {"a": {"c": [2]}}) == {"a": {"b": 1, "c": [2]}}


@pytest.mark.parametrize("files, start", [
    ({"a": 'extends = "b"\n', "b": 'extends = "a"\n'}, "a"),
    ({"selfish": 'extends = "selfish"\n'}, "selfish"),
    ({"x": 'extends = "y"\n', "y": 'extends = "z"\n', "z": 'extends = "y"\n'}, "x"),
])
def test_extends_cycles_are_refused_with_the_chain(tmp_path: Path, files: dict[str, str], start: str) -> None:
    for name, text in files.items():
        _write(tmp_path, name, text)
    with pytest.raises(ScenarioError, match=r"extends: cycle .* -> "):
        load_scenario(tmp_path / f"{start}.toml")


@pytest.mark.parametrize("text, message", [
    ('extends = "no-such-scenario"\n', "scenario 'no-such-scenario' not found"),
    ("extends = 3\n", "extends: expected a scenario name or path"),
    ('extends = "baseline"\n[node]\nsuspect_mss = 5.0\n', r"node.suspect_mss: unknown key"),
])
def test_extends_errors_name_the_problem(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ScenarioError, match=message):
        load_scenario(_write(tmp_path, "bad", text))


def test_the_document_is_what_the_loader_validates() -> None:
    doc, name = scenario_document("two-cities-three-dcs")
    assert name == "two-cities-three-dcs" and "extends" not in doc
    assert doc["workload"]["customers"] == 3000  # inherited from baseline
    assert parse_scenario(doc, name) == load_scenario("two-cities-three-dcs")


# ---------------------------------------------------------------------- RTTs by name, cities
BASE = 'name = "t"\n[regions]\nnames = ["changchun", "beijing", "shanghai"]\n'


def test_rtt_by_city_pairs_gives_the_matrix() -> None:
    s = load_scenario_text(BASE + 'rtt_ms = { "changchun-beijing" = 14, "changchun-shanghai" = 23, '
                                  '"beijing-shanghai" = 17 }\n')
    assert s.rtt_matrix() == [[0, 14, 23], [14, 0, 17], [23, 17, 0]]


def test_rtt_with_datacentres_most_specific_entry_wins() -> None:
    s = load_scenario_text('name = "t"\n[regions]\nnames = ["bj-1", "bj-2", "sh-1"]\n'
                           'cities = { beijing = ["bj-1", "bj-2"], shanghai = ["sh-1"] }\n'
                           'rtt_ms = { "beijing-beijing" = 1.5, "beijing-shanghai" = 27, "bj-2-sh-1" = 31 }\n')
    m = s.rtt_matrix()
    assert m[0][1] == m[1][0] == 1.5
    assert m[0][2] == m[2][0] == 27 and m[1][2] == m[2][1] == 31  # the datacentre pair beats the city pair
    assert s.city_groups() == {"beijing": ("bj-1", "bj-2"), "shanghai": ("sh-1",)}
    assert s.to_json()["cities"] == {"beijing": ["bj-1", "bj-2"], "shanghai": ["sh-1"]}


@pytest.mark.parametrize("rtt, message", [
    ('{ "changchun-beijing" = 14, "changchun-shanghai" = 23 }', "no round-trip time between beijing and shanghai"),
    ('{ "changchun-beijing" = 14, "changchun-shanghai" = 23, "beijing-shenzhen" = 5 }',
     r'"beijing-shenzhen": not two known names'),
    ('{ "changchun-beijing" = -1, "changchun-shanghai" = 23, "beijing-shanghai" = 17 }',
     r'"changchun-beijing": must be a number of milliseconds >= 0'),
    ('{ "changchun-beijing" = "far", "changchun-shanghai" = 23, "beijing-shanghai" = 17 }',
     r'"changchun-beijing": must be a number'),
    ('{ "changchun-beijing" = 14, "beijing-changchun" = 15, "changchun-shanghai" = 23, "beijing-shanghai" = 17 }',
     r'"beijing-changchun": disagrees with "changchun-beijing"'),
    ('{ "beijing-beijing" = 1, "changchun-beijing" = 14, "changchun-shanghai" = 23, "beijing-shanghai" = 17 }',
     "round trip to itself is 0"),
])
def test_rtt_pair_errors_name_the_pair(rtt: str, message: str) -> None:
    with pytest.raises(ScenarioError, match=message):
        load_scenario_text(BASE + f"rtt_ms = {rtt}\n")


def test_ambiguous_pair_names_are_refused() -> None:
    with pytest.raises(ScenarioError, match="ambiguous"):
        load_scenario_text('name = "t"\n[regions]\nnames = ["a", "a-b", "b-c", "c"]\n'
                           'rtt_ms = { "a-b-c" = 1 }\n')


@pytest.mark.parametrize("cities, message", [
    ('{ beijing = ["bj-1", "bj-9"] }', r"regions.cities.beijing: unknown datacentre 'bj-9'"),
    ('{ beijing = ["bj-1"], north = ["bj-1"] }', r"regions.cities.north: 'bj-1' is already in city 'beijing'"),
    ("{ beijing = [] }", "regions.cities.beijing: expected a non-empty list"),
    ('["bj-1"]', "regions.cities: expected a table"),
    ('{ sh-1 = ["bj-1"] }', "a city may share its name only with its one datacentre"),
])
def test_city_errors_name_the_city(cities: str, message: str) -> None:
    with pytest.raises(ScenarioError, match=message):
        load_scenario_text('name = "t"\n[regions]\nnames = ["bj-1", "bj-2", "sh-1"]\n'
                           f'cities = {cities}\nrtt_ms = [[0, 1, 27], [1, 0, 27], [27, 27, 0]]\n')


# ---------------------------------------------------------------------- city-loss and fault checks
TOPO = ('name = "t"\n[regions]\nnames = ["bj-1", "bj-2", "sh-1"]\n'
        'cities = { beijing = ["bj-1", "bj-2"], shanghai = ["sh-1"] }\n'
        'rtt_ms = { "beijing-beijing" = 1.5, "beijing-shanghai" = 27 }\n')


def test_city_loss_is_one_crash_per_datacentre_labelled_with_the_city() -> None:
    s = load_scenario_text(TOPO + '[[chaos]]\nat = 2.0\nfault = "city-loss"\ntarget = "beijing"\nduration = 3.0\n')
    assert [(f.kind, f.target, f.at, f.duration, f.label) for f in s.chaos] == [
        ("crash", ("bj-1",), 2.0, 3.0, "city-loss beijing"), ("crash", ("bj-2",), 2.0, 3.0, "city-loss beijing")]
    assert s.to_json()["chaos"][0] == {"at": 2.0, "fault": "crash", "target": ["bj-1"], "duration": 3.0,
                                       "city": "beijing"}
    # without cities, every region is its own city
    plain = load_scenario_text(BASE + '[[chaos]]\nat = 1.0\nfault = "city-loss"\ntarget = "shanghai"\n'
                                      'duration = 1.0\n')
    assert [(f.kind, f.target) for f in plain.chaos] == [("crash", ("shanghai",))]


@pytest.mark.parametrize("fault, message", [
    ('fault = "city-loss"\ntarget = "bj-1"', r"chaos\[0\].target: 'city-loss' takes one city, got \['bj-1'\]"),
    ('fault = "city-loss"\ntarget = ["beijing", "shanghai"]', "takes one city"),
    ('fault = "city-loss"\ntarget = "beijing"\nextra_ms = 5.0', r"chaos\[0\].extra_ms: 'city-loss' takes no param"),
    ('fault = "crash"\ntarget = "bj-1"\ncity = "beijing"', r'chaos\[0\].city: set by fault = "city-loss"'),
    ('fault = "city-lost"\ntarget = "beijing"', r"chaos\[0\].fault: unknown fault 'city-lost'.*city-loss"),
    ('fault = "loss"\ntarget = "bj-1"\np = "lots"', r"chaos\[0\].p: expected a number in \[0, 1\], got 'lots'"),
    ('fault = "loss"\ntarget = "bj-1"\np = 1.5', r"chaos\[0\].p: expected a number in \[0, 1\]"),
    ('fault = "corrupt"\ntarget = "bj-1"\nrecords = 1.5', r"chaos\[0\].records: expected an integer"),
    ('fault = "crash"\ntarget = 7', r"chaos\[0\].target: expected a region name"),
])
def test_fault_errors_name_the_fault(fault: str, message: str) -> None:
    with pytest.raises(ScenarioError, match=message):
        load_scenario_text(TOPO + f"[[chaos]]\nat = 2.0\nduration = 3.0\n{fault}\n")


@pytest.mark.parametrize("at", ['"soon"', "nan", "true"])
def test_fault_times_must_be_numbers(at: str) -> None:
    with pytest.raises(ScenarioError, match=r"chaos\[0\].at: expected a number of seconds"):
        load_scenario_text(TOPO + f'[[chaos]]\nat = {at}\nfault = "crash"\ntarget = "bj-1"\nduration = 1.0\n')


@pytest.mark.parametrize("extra, message", [
    ("[node]\nsuspect_ms = 50.0\n", "node.suspect_ms: must be longer than node.heartbeat_ms"),
    ("[node]\nheartbeat_ms = 0.0\n", "node.heartbeat_ms: must be >= 1 ms"),
    ("[node]\nsuspect_max_ms = -1.0\n", r"node.suspect_max_ms: must be a finite number >= 0"),
    ("[node]\nsuspect_max_ms = 1e9\n", r"node.suspect_max_ms: .* got 1e\+09"),
    ("[node]\ntick_ms = 0.01\n", "node.tick_ms: must be >= 1 ms"),
    ("duration = 80000.0\nquiesce = 10000.0\n", "duration: load plus quiesce at most 86,400 s"),
    ("duration = 3600.0\n[workload]\nrate = 10000\n", "workload.rate: rate x duration x regions = 108,000,000"),
    ("[workload]\ncustomers = 50000000\n", "workload.customers: at most 5,000,000"),
    ("[workload]\nbatch_ms = 0.0\n", "workload.batch_ms: must be >= 0.1"),
    ("[node]\ndrift = 1.0\n", "node.drift: .* must be < 1"),
    ("[workload]\nrate = 0\n", "workload.rate: must be > 0"),
])
def test_values_a_run_cannot_use_are_refused(extra: str, message: str) -> None:
    top, _, tables = extra.partition("[")  # top-level keys go before the first table
    with pytest.raises(ScenarioError, match=message):
        load_scenario_text(top + BASE + ("[" + tables if tables else ""))


def load_scenario_text(text: str) -> Scenario:
    return parse_scenario(tomllib.loads(text), "t")
