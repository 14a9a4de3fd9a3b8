"""bia.json validates against its JSON Schema; the CSVs carry the tables the docs promise."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator
from test_bia_hand import run as run_hand

from bia.engine import run_bia
from bia.export import load_schema, write_outputs
from bia.history import generate_history
from bia.params import BiaParams
from bia.results import BiaResult
from control_plane.world.loader import load_world_file

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_WORLD = ROOT / "examples" / "kr-retail" / "world.yaml"


@pytest.fixture(scope="module")
def sample_result() -> BiaResult:
    world, _ = load_world_file(SAMPLE_WORLD)
    return run_bia(
        generate_history(world, days=3, seed=2), world, BiaParams(), now=datetime(2025, 4, 1, tzinfo=UTC)
    )


@pytest.fixture(scope="module")
def written(sample_result: BiaResult, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bia")
    write_outputs(sample_result, out)
    return out


def validator() -> Draft202012Validator:
    schema = load_schema()
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def test_bia_json_validates_against_its_schema(written: Path) -> None:
    document = json.loads((written / "bia.json").read_text())
    errors = sorted(validator().iter_errors(document), key=lambda e: list(e.path))
    assert not errors, [f"{list(e.path)}: {e.message}" for e in errors[:5]]
    assert json.loads((written / "bia.schema.json").read_text()) == load_schema()


def test_hand_built_result_validates_too() -> None:
    validator().validate(run_hand().to_json_dict())


def test_json_dict_survives_a_json_round_trip(sample_result: BiaResult) -> None:
    document = sample_result.to_json_dict()
    assert json.loads(json.dumps(document)) == document


def test_schema_rejects_a_tier_out_of_range(sample_result: BiaResult) -> None:
    document = sample_result.to_json_dict()
    document["sites"][0]["tier"] = 4
    assert not validator().is_valid(document)


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_csvs_hold_one_row_per_subject(written: Path, sample_result: BiaResult) -> None:
    sites = rows(written / "site_impact.csv")
    assert [r["code"] for r in sites] == [s.code for s in sample_result.sites]
    assert {"tier", "rto_hours", "rpo_seconds", "absorbable_share", "loss_24h_without_failover"} <= set(
        sites[0]
    )
    assert len(rows(written / "integration_impact.csv")) == len(sample_result.integrations)
    assert len(rows(written / "site_hour_of_week.csv")) == 168 * len(sample_result.sites)
    subjects = len(sample_result.sites) + len(sample_result.integrations)
    assert len(rows(written / "loss_curve.csv")) == subjects * 2 * len(
        sample_result.params.loss_durations_hours
    )
    assert len(rows(written / "critical_skus.csv")) == len(sample_result.skus)
    assert len(rows(written / "preposition_plan.csv")) == len(sample_result.preposition)
    assert len(rows(written / "spofs.csv")) == len(sample_result.spofs)
    assert len(rows(written / "failover_map.csv")) == len(sample_result.failover_routes)
    assert len(rows(written / "failover_capacity.csv")) == len(sample_result.failover_capacity)


def test_sample_world_spofs_are_the_icheon_only_skus(sample_result: BiaResult) -> None:
    # the world file stocks KR-0051..KR-0060 at Icheon only
    assert {s.sku for s in sample_result.spofs} == {f"KR-00{n}" for n in range(51, 61)}
    assert {s.site for s in sample_result.spofs} == {"icheon"}
