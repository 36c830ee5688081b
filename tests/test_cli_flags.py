"""CLI flags are validated before anything runs: exit code 2 and a message, nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest

from geoledger.cli import main


def test_simulate_refuses_a_non_positive_time_scale(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert main(["simulate", "baseline", "--time-scale", "0", "--out", str(out)]) == 2
    assert not out.exists()


def test_serve_refuses_an_impossible_region_count(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    assert main(["serve", "--regions", "0", "--data", str(data)]) == 2
    assert "--regions" in capsys.readouterr().err
    assert not data.exists()


def test_load_refuses_bad_options(tmp_path: Path) -> None:
    out = tmp_path / "load"
    assert main(["load", "--users", "0", "--out", str(out)]) == 2
    assert not (out / "serve.json").exists()


def test_unknown_mode_is_an_argparse_error() -> None:
    with pytest.raises(SystemExit) as e:
        main(["simulate", "baseline", "--mode", "paxos"])
    assert e.value.code == 2
