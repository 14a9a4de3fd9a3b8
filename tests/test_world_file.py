"""The world file's cross-checks (control_plane/world/loader.py): every reference names something
the file defines, and each mistake is reported with its path; the sample world passes."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from control_plane.domain import InvalidInput
from control_plane.world.loader import load_world_file, parse_world

SAMPLE = Path(__file__).resolve().parent.parent / "examples/kr-retail/world.yaml"


@pytest.fixture(scope="module")
def sample() -> dict[str, Any]:
    return yaml.safe_load(SAMPLE.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def test_the_sample_world_passes() -> None:
    world, _ = load_world_file(SAMPLE)
    assert world.sites and world.catalog


def _set(path: list[Any], value: Any) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        node: Any = doc
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return change


def _dup_channel(doc: dict[str, Any]) -> None:
    doc["channels"].append(dict(doc["channels"][0]))


@pytest.mark.parametrize(
    ("change", "path", "says"),
    [
        (_set(["sites", 0, "region"], "atlantis"), "sites[0].region", "unknown region"),
        (_set(["sites", 0, "backups"], ["nowhere"]), "sites[0].backups[0]", "unknown site"),
        (_set(["sites", 0, "backups"], ["icheon"]), "sites[0].backups[0]", "cannot back itself up"),
        (_set(["sites", 0, "depends_on"], ["fedex"]), "sites[0].depends_on[0]", "unknown integration"),
        (
            _set(["integrations", 0, "scope"], ["tiktok"]),
            "integrations[0].scope[0]",
            "neither a site nor a channel",
        ),
        (_set(["integrations", 0, "fallback"], "paypal"), "integrations[0].fallback", "unknown integration"),
        (_set(["stock", "atlantis"], {"KR-0001": 1}), "stock.atlantis", "unknown site"),
        (_set(["stock", "icheon", "KR-9999"], 1), "stock.icheon.KR-9999", "not in the catalog"),
        (_dup_channel, "channels", "duplicate"),
    ],
)
def test_a_bad_reference_is_refused_with_its_path(
    sample: dict[str, Any], change: Callable[[dict[str, Any]], None], path: str, says: str
) -> None:
    doc = copy.deepcopy(sample)
    change(doc)
    with pytest.raises(InvalidInput) as refused:
        parse_world(doc, "world.yaml")
    assert str(refused.value).startswith("world.yaml: ")
    found = [e for e in refused.value.errors if e.path.startswith(path)]
    assert found and says in found[0].message, refused.value.errors


def test_a_scope_may_name_sites_and_channels(sample: dict[str, Any]) -> None:
    doc = copy.deepcopy(sample)
    doc["integrations"][0]["scope"] = [doc["sites"][0]["code"], doc["channels"][0]["code"]]
    world, _ = parse_world(doc)
    assert world.integrations[0].scope == (doc["sites"][0]["code"], doc["channels"][0]["code"])
