"""The HTML report in real headless Chromium: every chart is a drawn image whose marks match the data."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bia.engine import run_bia
from bia.history import generate_history
from bia.params import BiaParams
from bia.report import write_report
from bia.results import BiaResult
from control_plane.world.loader import load_world_file

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_WORLD = ROOT / "examples" / "kr-retail" / "world.yaml"
CHROMIUM = Path("/usr/bin/chromium")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

pytestmark = pytest.mark.e2e

DRAWN_MARKS = """svg => Array.from(svg.querySelectorAll('.mark')).filter(m => {
    const box = m.getBoundingClientRect();
    return box.width > 0 && box.height > 0;
}).length"""


@pytest.fixture(scope="module")
def result() -> BiaResult:
    world, _ = load_world_file(SAMPLE_WORLD)
    return run_bia(
        generate_history(world, days=7, seed=9), world, BiaParams(), now=datetime(2025, 4, 1, tzinfo=UTC)
    )


@pytest.fixture(scope="module")
def page(result: BiaResult, tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    if not CHROMIUM.exists():
        message = "no /usr/bin/chromium; install it with `apt-get update && apt-get install -y chromium`"
        if IN_CI:
            pytest.fail(f"CI=true: {message}", pytrace=False)
        pytest.skip(f"SKIPPED LOUDLY, the BIA report was not checked in a browser: {message}")
    from playwright.sync_api import sync_playwright

    report = write_report(result, tmp_path_factory.mktemp("report") / "report.html")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        tab = browser.new_page(viewport={"width": 1280, "height": 900})
        errors: list[str] = []
        tab.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        tab.on("requestfailed", lambda request: errors.append(f"request failed: {request.url}"))
        tab.goto(report.as_uri())
        yield tab
        browser.close()
        assert not errors, errors


def chart(page, name: str):  # type: ignore[no-untyped-def]
    svg = page.locator(f'svg[data-chart="{name}"]')
    assert svg.count() == 1
    box = svg.bounding_box()
    assert box is not None and box["width"] > 300 and box["height"] > 150
    return svg


def test_revenue_bars_are_drawn_to_scale(page, result: BiaResult) -> None:  # type: ignore[no-untyped-def]
    svg = chart(page, "revenue-at-risk")
    assert svg.evaluate(DRAWN_MARKS) == 2 * len(result.sites)  # mean and busiest hour per site
    widths = {
        s.code: svg.locator(f'.mark[data-site="{s.code}"][data-kind="mean"]').bounding_box()["width"]
        for s in result.sites
    }
    icheon, daejeon = result.site("icheon"), result.site("daejeon")
    expected = icheon.demand.revenue_per_hour.mean / daejeon.demand.revenue_per_hour.mean
    assert widths["icheon"] / widths["daejeon"] == pytest.approx(expected, rel=0.03)
    assert "KRW/h" in svg.text_content()


def test_heatmap_has_a_cell_per_site_and_hour_darkest_at_the_peak(page, result: BiaResult) -> None:  # type: ignore[no-untyped-def]
    svg = chart(page, "heatmap")
    assert svg.evaluate(DRAWN_MARKS) == 168 * len(result.sites)
    site, hour = max(
        ((s.code, h) for s in result.sites for h in range(168)),
        key=lambda key: result.site(key[0]).demand.revenue_per_hour.by_hour_of_week[key[1]],
    )
    darkest = svg.locator(f'.mark[data-site="{site}"][data-hour="{hour}"]')
    assert darkest.evaluate("m => getComputedStyle(m).fill") == "rgb(8, 48, 107)"
    for label in ("Mon", "Sun", "local time"):
        assert label in svg.text_content()


def test_pareto_has_a_bar_per_sku_and_marks_the_cut_off(page, result: BiaResult) -> None:  # type: ignore[no-untyped-def]
    svg = chart(page, "pareto")
    assert svg.evaluate(DRAWN_MARKS) == len(result.skus)
    points = svg.locator("polyline.curve").get_attribute("points")
    assert points is not None and len(points.split()) == len(result.skus)
    assert f"first {result.pareto.class_a} of {result.pareto.skus} SKUs" in svg.text_content()


def test_loss_curve_has_two_lines_per_site_and_a_point_per_duration(page, result: BiaResult) -> None:  # type: ignore[no-untyped-def]
    svg = chart(page, "loss-curve")
    durations = len(result.params.loss_durations_hours)
    assert svg.locator("polyline.series").count() == 2 * len(result.sites)
    assert svg.evaluate(DRAWN_MARKS) == 2 * len(result.sites) * durations
    assert svg.locator("line.tolerance").count() == 1
    # a longer outage sits higher on the chart (smaller y) for the biggest site
    ys = [
        float(
            svg.locator(
                f'.mark[data-site="icheon"][data-failover="false"][data-duration="{d:g}"]'
            ).get_attribute("cy")
        )
        for d in (24, 72)
    ]
    assert ys[1] < ys[0]


def test_tables_name_every_site_with_its_tier(page, result: BiaResult) -> None:  # type: ignore[no-untyped-def]
    rows = page.locator('#site-table tr[class^="tier-"]')
    assert rows.count() == len(result.sites)
    for i, site in enumerate(result.sites):
        row = rows.nth(i)
        assert row.get_attribute("class") == f"tier-{site.tier}"
        assert row.locator("td").first.inner_text() == site.name
    assert page.locator("h1").inner_text().startswith("Business impact analysis")
