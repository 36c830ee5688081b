"""`geoledger load` / `serve` flags as a tester types them: Locust's durations, an output
directory outside the source package, progress while it runs, and the exact Locust command."""

from __future__ import annotations

import csv
import shlex
from pathlib import Path

import pytest

from geoledger.cli import build_parser, main
from load.cli import PACKAGE, out_dir_problem, progress_line, usage
from load.runner import files_written, parse_duration, progress_of


@pytest.mark.parametrize("text,seconds", [("30", 30.0), ("2.5", 2.5), ("30s", 30.0), ("5m", 300.0), ("1h", 3600.0),
                                          ("1h30m", 5400.0), ("2m30s", 150.0), ("1H", 3600.0)])
def test_duration_takes_seconds_and_locusts_forms(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds
    assert build_parser().parse_args(["load", "--duration", text]).duration == seconds


@pytest.mark.parametrize("text", ["", "s", "0", "0s", "-5", "1d", "30 s", "5m1h", "inf", "nan", "1e400", "ten"])
def test_a_bad_duration_is_an_argparse_error(text: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(["load", "--duration", text])
    assert e.value.code == 2
    assert "duration" in capsys.readouterr().err


def test_out_inside_the_source_package_is_refused_before_anything_starts(capsys: pytest.CaptureFixture[str]) -> None:
    assert out_dir_problem(PACKAGE) is not None
    assert out_dir_problem(PACKAGE / "runs" / "x") is not None
    assert out_dir_problem(PACKAGE.parent / "load-runs" / "x") is None
    assert main(["load", "--out", str(PACKAGE / "run1"), "--duration", "1s"]) == 2
    assert "source package" in capsys.readouterr().err
    assert not (PACKAGE / "run1").exists()


@pytest.mark.parametrize("workers", ["0", "17", "-1"])
def test_a_worker_count_out_of_range_is_refused_before_anything_starts(workers: str, tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    assert main(["serve", "--workers", workers, "--data", str(data), "--base-port", "0"]) == 2
    assert "--workers must be between 1 and 16" in capsys.readouterr().err
    assert main(["load", "--workers", workers, "--out", str(tmp_path / "run"), "--duration", "1s"]) == 2
    assert "--workers must be between 1 and 16" in capsys.readouterr().err
    assert not data.exists() and not (tmp_path / "run" / "data").exists()


def test_serve_prints_the_exact_locust_command(tmp_path: Path) -> None:
    creds = tmp_path / "credentials.json"
    text = usage(creds, "http://127.0.0.1:18900", customers=300, units=2)
    line = next(x for x in text.splitlines() if "locust -f" in x)
    words = shlex.split(line)
    env = dict(w.split("=", 1) for w in words if "=" in w and not w.startswith("-"))
    assert env == {"GEOLEDGER_CREDENTIALS": str(creds), "GEOLEDGER_CUSTOMERS": "300", "GEOLEDGER_UNITS": "2"}
    args = words[len(env):]
    assert args[:3] == ["locust", "-f", str(PACKAGE / "locustfile.py")]
    assert Path(args[2]).exists()
    assert args[args.index("--host") + 1] == "http://127.0.0.1:18900"
    assert "--headless" in args and args[args.index("-t") + 1] == "30s"


def _history(path: Path, rows: list[dict[str, str]]) -> None:
    fields = ["Timestamp", "User Count", "Type", "Name", "Requests/s", "Failures/s", "Total Request Count",
              "Total Failure Count"]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: row.get(k, "") for k in fields})


def test_progress_reads_locusts_history_and_counts_chaos(tmp_path: Path) -> None:
    assert progress_of(tmp_path, [], 0.0)["requests"] == 0  # Locust has not written yet
    _history(tmp_path / "locust_stats_history.csv", [
        {"User Count": "10", "Type": "", "Name": "Aggregated", "Requests/s": "100.25", "Total Request Count": "90",
         "Total Failure Count": "0"},
        {"User Count": "40", "Type": "POST", "Name": "pay", "Requests/s": "1", "Total Request Count": "5"},
        {"User Count": "40", "Type": "", "Name": "Aggregated", "Requests/s": "812.49", "Total Request Count": "1500",
         "Total Failure Count": "3"},
    ])
    events = [{"t": 1.0, "event": "killed (kill -9)", "region": "beijing"}]
    now = progress_of(tmp_path, events, 0.0)
    assert (now["users"], now["requests_per_s"], now["requests"], now["failures"], now["chaos_events"]) == (
        40, 812.5, 1500, 3, 1)
    line = progress_line(now)
    assert "users 40" in line and "812 req/s" in line and "failures 3" in line and "killed (kill -9) beijing" in line


def test_files_written_lists_everything_once(tmp_path: Path) -> None:
    for name in ("load.json", "acked.log", "locust_stats.csv"):
        (tmp_path / name).write_text("x")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "r0.db").write_text("x")
    assert files_written(tmp_path) == ["acked.log", "data/", "load.json", "locust_stats.csv"]


def test_limits_say_what_bounded_a_run() -> None:
    """Little's law gives the requests in flight; a machine 90% busy was bound by CPU, and
    CPU per 1,000 acknowledged transfers is per process."""
    from load.cpu import CpuMeter, limits

    cpu = {"regions": {"beijing": 3.0, "shanghai": None}, "locust": 6.0, "machine_busy_fraction": 0.95, "cores": 2}
    lim = limits(400, 50.0, 6000.0, cpu, 3000)
    assert lim["in_flight_requests"] == 300.0 and lim["bound_by"] == "cpu"
    assert lim["cpu_s_per_1000_acked"] == {"region beijing": 1.0, "region shanghai": None, "locust": 2.0}
    assert limits(400, 50.0, 6000.0, {**cpu, "machine_busy_fraction": 0.5}, 3000)["bound_by"] == "users"
    # Locust kept its one core busy (28.5 CPU s in 30 s) on a machine half idle: Locust was the limit,
    # but not with two processes sharing that time.
    locust_bound = {**cpu, "machine_busy_fraction": 0.6, "locust": 28.5, "wall_s": 30.0}
    assert limits(400, 50.0, 6000.0, locust_bound, 3000)["bound_by"] == "locust"
    assert limits(400, 50.0, 6000.0, locust_bound, 3000)["process_busy_fraction"]["locust"] == 0.95
    assert limits(400, 50.0, 6000.0, locust_bound, 3000, locust_processes=2)["bound_by"] == "users"
    # A region's one process near its core (26 of 30 s), Locust on two processes: that region was the limit.
    region_bound = {**locust_bound, "regions": {"beijing": 26.0, "shanghai": None}}
    assert limits(400, 50.0, 6000.0, region_bound, 3000, locust_processes=2)["bound_by"] == "region beijing"
    assert limits(1, None, 0.0, cpu, 0)["in_flight_requests"] is None
    import os

    meter = CpuMeter({"me": os.getpid()})
    meter.start()
    sum(i * i for i in range(2_000_000))  # some CPU of our own: ~0.1 s, many clock ticks of the machine's counters
    read = meter.read({"me": os.getpid()})
    assert read["regions"]["me"] is not None and read["regions"]["me"] >= 0
    assert meter.read({"me": -1})["regions"]["me"] is None  # restarted: no figure rather than a wrong one
    assert 0 <= read["machine_busy_fraction"] <= 1
    assert read["wall_s"] > 0


@pytest.mark.parametrize("argv", [["--users", "0"], ["--users", "-5"], ["--processes", "0"], ["--duration", "0"],
                                  ["--duration", "nan"], ["--duration", "inf"], ["--users", "1e3"],
                                  ["--users", str(2**128 - 1)] + ["--processes", "-1"]])
def test_the_ceiling_bench_refuses_bad_flags_before_starting_anything(
        argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Exit 2 with a usage error, no server and no Locust started (measure is never reached)."""
    from bench import http_ceiling

    def started(*_: object, **__: object) -> None:
        raise AssertionError("a refused flag started the measurement")

    monkeypatch.setattr(http_ceiling, "measure", started)
    monkeypatch.setattr("sys.argv", ["http_ceiling", *argv])
    with pytest.raises(SystemExit) as e:
        http_ceiling.main()
    assert e.value.code == 2 and "error:" in capsys.readouterr().err
