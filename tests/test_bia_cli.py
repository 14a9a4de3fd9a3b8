"""`drctl bia run` and `drctl world history` through Typer, mounted on a small app like drctl's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from control_plane.cli.bia import bia_app, world_history

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_WORLD = ROOT / "examples" / "kr-retail" / "world.yaml"
OUTPUT_FILES = {
    "bia.json",
    "bia.schema.json",
    "report.html",
    "site_impact.csv",
    "integration_impact.csv",
    "site_hour_of_week.csv",
    "loss_curve.csv",
    "critical_skus.csv",
    "preposition_plan.csv",
    "spofs.csv",
    "failover_map.csv",
    "failover_capacity.csv",
}


def make_app() -> typer.Typer:
    app = typer.Typer()
    app.add_typer(bia_app, name="bia")
    world = typer.Typer()
    world.command("history")(world_history)
    app.add_typer(world, name="world")
    return app


runner = CliRunner()


def invoke(*args: str) -> typer.testing.Result:
    return runner.invoke(make_app(), list(args))


@pytest.fixture(scope="module")
def history_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("history") / "orders.parquet"
    result = invoke(
        "world", "history", "--days", "2", "--seed", "5", "--out", str(path), "--world", str(SAMPLE_WORLD)
    )
    assert result.exit_code == 0, result.output
    return path


def test_world_history_writes_the_file_and_says_so(history_file: Path) -> None:
    assert history_file.stat().st_size > 0


def test_bia_run_writes_every_output_and_prints_json_summary(history_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "bia"
    result = invoke(
        "bia", "run", "--orders", str(history_file), "--world", str(SAMPLE_WORLD), "--out", str(out), "--json"
    )
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert {p.name for p in out.iterdir()} == OUTPUT_FILES
    assert set(summary["files"]) == OUTPUT_FILES
    assert {s["code"] for s in summary["sites"]} == {"icheon", "daejeon", "busan", "gwangju", "seoul-mfc"}
    assert all(s["tier"] in (1, 2, 3) for s in summary["sites"])
    document = json.loads((out / "bia.json").read_text())
    assert document["totals"]["lines"] == summary["totals"]["lines"]


def test_bia_run_prints_a_table_without_json(history_file: Path, tmp_path: Path) -> None:
    result = invoke(
        "bia", "run", "--orders", str(history_file), "--world", str(SAMPLE_WORLD), "--out", str(tmp_path)
    )
    assert result.exit_code == 0, result.stderr
    assert "icheon" in result.stdout and "seoul-mfc" in result.stdout
    assert "wrote 12 files" in result.stdout


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


HEADER = "order_id,placed_at,channel,customer_id,region,postal_code,site,sku,qty,unit_price\n"


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing-file", "no such file"),
        ("bad-columns", "missing column"),
        ("unknown-site", "unknown site"),
        ("bad-margin", "gross_margin"),
        ("bad-world", "world file"),
        ("bad-durations", "--durations"),
    ],
)
def test_bia_run_bad_input_exits_2_with_one_line_and_writes_nothing(
    tmp_path: Path, case: str, message: str
) -> None:
    orders = {
        "missing-file": tmp_path / "nope.csv",
        "bad-columns": write(tmp_path / "cols.csv", "a,b\n1,2\n"),
        "unknown-site": write(
            tmp_path / "site.csv",
            HEADER + "O1,2025-03-03T10:00:00+09:00,web,c1,capital,01000,atlantis,KR-0001,1,4500\n",
        ),
    }.get(
        case,
        write(
            tmp_path / "ok.csv",
            HEADER + "O1,2025-03-03T10:00:00+09:00,web,c1,capital,01000,icheon,KR-0001,1,4500\n",
        ),
    )
    world = write(tmp_path / "world.yaml", "name: x\n") if case == "bad-world" else SAMPLE_WORLD
    extra = {"bad-margin": ["--gross-margin", "2"], "bad-durations": ["--durations", "1,soon"]}.get(case, [])
    out = tmp_path / "out"
    result = invoke("bia", "run", "--orders", str(orders), "--world", str(world), "--out", str(out), *extra)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr
    assert not out.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--days", "0"], "--days"),
        (["--days", "-3"], "--days"),
        (["--days", "1", "--suffix", "x"], ".csv or .parquet"),
    ],
)
def test_world_history_bad_input_exits_2(tmp_path: Path, args: list[str], message: str) -> None:
    out = tmp_path / ("h.xlsx" if "--suffix" in args else "h.csv")
    args = [a for a in args if a not in ("--suffix", "x")]
    result = invoke("world", "history", *args, "--out", str(out), "--world", str(SAMPLE_WORLD))
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert not out.exists()
