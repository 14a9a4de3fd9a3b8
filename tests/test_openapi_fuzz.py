"""schemathesis over /openapi.json: every operation, bounded examples, against a real `drctl serve`
on PostgreSQL (the stricter store: it refuses NUL in text, which once surfaced as a 500).

What must hold for any input, valid by the document or not: no answer >= 500, and every answer
conforms to the document (status code declared, content type, body schema). Calls carry an admin
token so that they reach the handlers instead of stopping at authentication.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from control_plane.app import create_app
from control_plane.settings import Settings

from conftest import fresh_schema
from harness import ControlPlane, control_plane, prepare_database, write_test_world

CHECKS = [
    schemathesis.checks.not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
# one server for the module: on one xdist worker (`--dist loadgroup`), not started once per worker
pytestmark = pytest.mark.xdist_group("openapi-fuzz")
EXAMPLES = 12  # per operation and mode: bounded, so the whole run stays within a minute or two


def _operations() -> list[str]:
    """Every operation of the API's document, built without a server or a database."""
    scratch = tempfile.mkdtemp(prefix="drctl-routes-")  # never connected to: the routes are all it needs
    app = create_app(Settings(database_url=f"sqlite:///{scratch}/routes.db", background_jobs=False))
    doc = app.openapi()
    methods = ("get", "put", "post", "delete", "patch")
    cases = []
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method not in methods:
                continue
            cases.append((f"{method.upper()} {path}", "positive"))
            # negative examples need something to break: a parameter or a body
            if op.get("parameters") or op.get("requestBody"):
                cases.append((f"{method.upper()} {path}", "negative"))
    return sorted(cases)


OPERATIONS = _operations()


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory, pg_server: str
) -> Iterator[tuple[ControlPlane, str, Any]]:
    tmp = tmp_path_factory.mktemp("fuzz")
    with fresh_schema(pg_server) as url:  # one schema for the module: the examples share it
        world, _ = write_test_world(tmp / "world.yaml")
        admin = prepare_database(url, world)["admin"]
        with control_plane(
            url, tmp, {"DRCTL_BACKGROUND_JOBS": "false", "DRCTL_DC_EVENT_SECRET": "fuzz-secret"}
        ) as cp:
            yield cp, admin, schemathesis.openapi.from_url(f"{cp.base_url}/openapi.json")


def test_the_routes_give_every_operation_to_fuzz() -> None:
    labels = {label for label, _ in OPERATIONS}
    assert "POST /v1/orders" in labels and "POST /v1/sites/{code}/failover" in labels
    assert len(labels) > 30


@pytest.mark.parametrize(("label", "mode"), OPERATIONS, ids=[f"{label}-{mode}" for label, mode in OPERATIONS])
def test_no_input_gets_a_5xx_and_every_answer_conforms(
    served: tuple[ControlPlane, str, Any], label: str, mode: str
) -> None:
    cp, admin, schema = served
    operation = schema.find_operation_by_label(label)
    assert operation is not None, f"{label} is not in /openapi.json"
    logged_before = len(cp.logs())

    @given(case=operation.as_strategy(generation_mode=schemathesis.GenerationMode(mode)))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,  # the same examples every run: a failure is reproducible, not luck
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    def check(case: schemathesis.Case) -> None:
        case.call_and_validate(
            base_url=cp.base_url, headers={"Authorization": f"Bearer {admin}"}, checks=CHECKS, timeout=30
        )

    check()
    # an error no handler knew is logged as "unhandled error" beside its 500
    logged = cp.logs()[logged_before:]
    assert "unhandled error" not in logged, logged[-3000:]


def test_the_document_declares_problem_json_for_errors(served: tuple[ControlPlane, str, Any]) -> None:
    doc = served[2].raw_schema
    post_order = doc["paths"]["/v1/orders"]["post"]["responses"]
    assert "application/problem+json" in post_order["422"]["content"]
    assert "application/problem+json" in post_order["4XX"]["content"]
    assert "HTTPValidationError" not in doc["components"]["schemas"]
