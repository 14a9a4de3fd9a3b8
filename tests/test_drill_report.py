"""The drill's HTML report, rendered from the journal the runner writes (pure: no drill is run).

- the header says the status, the verdict against the RTO and the deviations; every measure is shown
- the timeline has one bar and one p99 point per second of intake, the fault window where the fault
  was (to the end when it was never cleared), a marker for each action and the breaker's states
- an aborted journal with nothing measured, an empty one and one of Nones still render ("no data")
- the journal's text is escaped; the page names no external URL and runs no script
- a journal loaded back from its JSON (what the CLI renders) renders the same page
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, fields
from html.parser import HTMLParser
from typing import Any

import pytest

from chaos.drill import measure, report
from chaos.drill.context import Outcome
from chaos.drill.report import render_report, verdict
from chaos.drill.runner import Event, Journal

T0 = 1_800_000_000.0  # the drill's start, on a whole second so bars and the fault line up
FAULT, CLEARED, RTO_S = 6.0, 11.0, 4 * 3600.0
VOID = {"meta", "link", "br", "img", "input", "hr", "source", "wbr", "area", "base", "col", "embed"}


class Page(HTMLParser):
    """Elements in document order (tag, attributes, enclosing classes), text by id, table rows."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str], list[dict[str, str]]]] = []  # tag, attrs, parents
        self.text_of: dict[str, str] = {}
        self.rows: dict[str, list[list[str]]] = {}
        self.text: list[str] = []
        self._open: list[tuple[str, dict[str, str]]] = []
        self._cell: list[str] | None = None
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        self.elements.append((tag, a, [o[1] for o in self._open]))
        if tag == "tr":
            table = next((o[1].get("id", "") for o in reversed(self._open) if o[0] == "table"), "")
            self.rows.setdefault(table, []).append([])
        if tag in ("td", "th"):
            self._cell = []
        if tag not in VOID:
            self._open.append((tag, a))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, {k: v or "" for k, v in attrs}, [o[1] for o in self._open]))

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            table = next((o[1].get("id", "") for o in reversed(self._open) if o[0] == "table"), "")
            self.rows[table][-1].append(" ".join("".join(self._cell).split()))
            self._cell = None
        while self._open:
            open_tag, _ = self._open.pop()
            if open_tag == tag:
                break

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)
        for _, a in self._open:
            if "id" in a:
                self.text_of[a["id"]] = self.text_of.get(a["id"], "") + data

    def find(self, tag: str, cls: str | None = None) -> list[dict[str, str]]:
        return [
            a for t, a, _ in self.elements if t == tag and (cls is None or cls in a.get("class", "").split())
        ]

    def table(self, table_id: str) -> dict[str, str]:
        """A two-column table as label -> value."""
        return {row[0]: row[-1] for row in self.rows[table_id] if len(row) >= 2}

    def all_text(self) -> str:
        return " ".join("".join(self.text).split())


def outcome(t: float, code: int = 201, status: str = "accepted", latency_ms: float = 20.0) -> Outcome:
    oid = None if code >= 300 else f"o-{t:.2f}"
    site = "daejeon" if t >= T0 + FAULT else "icheon"
    return Outcome(t, latency_ms, code, "seoul", oid, status if oid else None, site if oid else None)


def outcomes() -> list[Outcome]:
    """20 s of load at 10 orders/s: during the fault some are held and some fail, and they are slow."""
    out = []
    for i in range(200):
        t = T0 + 0.05 + i * 0.1
        during = T0 + FAULT <= t < T0 + CLEARED
        if during and i % 5 == 0:
            out.append(outcome(t, code=503, latency_ms=900.0))
        elif during and i % 5 == 1:
            out.append(outcome(t, code=202, status="held", latency_ms=400.0))
        else:
            out.append(outcome(t, latency_ms=250.0 if during else 15.0 + i % 7))
    return out


def breaker_timeline() -> list[dict[str, Any]]:
    """The subject's state changes and last sample, as the runner journals them."""
    changes = [
        (0.2, "healthy", "closed", True), (6.4, "down", "open", True), (12.0, "degraded", "half-open", True),
        (13.0, "healthy", "closed", True), (19.8, "healthy", "closed", True),
    ]  # fmt: skip
    return [
        {"t": T0 + t, "health": h, "breaker": b, "accepting": a, "impaired": False} for t, h, b, a in changes
    ]


def drill(**overrides: Any) -> Journal:
    seen = outcomes()
    fault_at = T0 + FAULT
    events = [
        Event(T0 + 2.0, "steady_state_before", "probe", "http_get", True, "200 (want == 200.0)", 200),
        Event(T0 + FAULT, "method", "action", "site_fault", True, "icheon: down"),
        Event(T0 + 8.0, "stop_condition", "probe", "intake_p99_ms", True, "900.0 (want <= 2000)", 900.0),
        Event(T0 + CLEARED, "method", "action", "clear_fault", True, "icheon: cleared"),
        Event(T0 + 14.0, "rollback", "action", "clear_faults", True, "cleared 1 targets"),
        Event(T0 + 19.5, "steady_state_after", "probe", "orders_lost", True, "0 (want <= 0)", 0),
    ]
    recover = measure.time_to_recover(seen, fault_at, fault_at + 0.4, 1.0)
    measures = {
        "orders_posted": len(seen), "detect_s": 0.4, "mitigate_s": 0.35, "recover_s": recover,
        "steady_accepted_share": 1.0, "rto_s": RTO_S, "recovery_within_rto": True,
        "latency": {
            "before": measure.latency(seen, T0 + 2, fault_at),
            "during": measure.latency(seen, fault_at, T0 + CLEARED),
            "after": measure.latency(seen, T0 + CLEARED, float("inf")),
        },
        "notices_unsent": 0, "notices_sent": 12,
    }  # fmt: skip
    placed = sum(o.placed for o in seen)
    j = Journal(
        experiment="Icheon DC flood at peak", subject="icheon", started_at=T0, status="completed",
        events=events, fault_started_at=fault_at, fault_cleared_at=T0 + CLEARED, measures=measures,
        reconciliation={"placed": placed, "in_ledgers": placed - 10, "held": 10, "cancelled": 0, "lost": 0,
                        "duplicated": 0, "strangers": 0, "lost_examples": [], "duplicated_examples": []},
        timeline=[asdict(s) for s in measure.per_second(seen)], breaker_timeline=breaker_timeline(),
        load={"stats": [
            {"Type": "POST", "Name": "/v1/orders", "Request Count": "200", "Failure Count": "10",
             "Median Response Time": "18", "99%": "900", "Requests/s": "9.87654"},
            {"Type": "", "Name": "Aggregated", "Request Count": "200", "Failure Count": "10",
             "Median Response Time": "18", "99%": "900", "Requests/s": "9.87654"},
        ], "exit_code": 0},
        ended_at=T0 + 20.0,
    )  # fmt: skip
    for name, value in overrides.items():
        setattr(j, name, value)
    return j


def page_of(journal: Journal | dict[str, Any]) -> Page:
    return Page(render_report(asdict(journal) if isinstance(journal, Journal) else journal))


def test_the_header_says_status_verdict_and_times() -> None:
    j = drill()
    page = page_of(j)
    assert page.text_of["status"].strip() == "completed"
    assert "tone-good" in page.find("span", "badge")[0]["class"]
    recover = j.measures["recover_s"]
    assert page.text_of["verdict"].strip() == f"recovered in {recover:.2f} s vs RTO 4 h: within"
    text = page.all_text()
    assert "2027-01-15T08:00:00Z" in text and "2027-01-15T08:00:20Z" in text  # UTC ISO
    assert "No deviations" in text
    assert "#7" in Page(render_report({**asdict(drill()), "drill_id": 7})).all_text()
    assert page.find("html")[0]["lang"] == "en"


def test_deviations_are_listed_prominently() -> None:
    page = page_of(
        drill(status="deviated", deviations=["3 orders lost", "time to detect 9.00 s is over 5 s"])
    )
    assert page.text_of["status"].strip() == "deviated"
    assert "2 deviations" in page.text_of["deviations"]
    assert (
        "3 orders lost" in page.text_of["deviations"]
        and "time to detect 9.00 s" in page.text_of["deviations"]
    )


def test_every_measure_is_in_the_measures_tables() -> None:
    j = drill()
    page = page_of(j)
    recovery, orders, recover = page.table("recovery"), page.table("orders"), j.measures["recover_s"]
    assert recovery == {
        "time to detect": "0.40 s", "time to mitigate": "0.35 s", "time to recover": f"{recover:.2f} s",
        "RTO": "4 h", "recovery within RTO": "yes",
    }  # fmt: skip
    r = j.reconciliation
    assert orders == {
        "orders posted": "200", "placed": str(r["placed"]), "in DC ledgers": str(r["placed"] - 10),
        "held": "10", "cancelled": "0", "lost": "0", "duplicated": "0",
        "notices sent": "12", "notices unsent": "0",
    }  # fmt: skip
    latency = {row[0]: row[1:] for row in page.rows["latency"][1:]}
    for phase, lat in j.measures["latency"].items():
        assert latency[phase] == [str(lat["orders"]), f"{lat['p50_ms']:,.1f} ms", f"{lat['p99_ms']:,.1f} ms"]


@pytest.mark.parametrize(
    ("measures", "line", "tone"),
    [
        ({"recover_s": 20_000.0, "rto_s": RTO_S, "recovery_within_rto": False}, "vs RTO 4 h: OVER", "bad"),
        ({"recover_s": 2.5, "rto_s": None, "recovery_within_rto": None}, "no RTO target", ""),
        ({"recover_s": None, "rto_s": RTO_S}, "no recovery measured", ""),
    ],
)
def test_the_verdict_compares_recovery_with_the_rto(measures: dict[str, Any], line: str, tone: str) -> None:
    said = verdict(measures, fault=True)
    assert line in said.value and said.tone == tone


def test_the_timeline_has_a_bar_and_a_p99_point_per_second() -> None:
    j = drill()
    page = page_of(j)
    svg = page.find("svg")[0]
    assert svg["role"] == "img" and svg["width"] == "100%" and svg["viewbox"].startswith("0 0 ")
    in_svg = [t for t, _, parents in page.elements if any(p.get("class") == "timeline" for p in parents)]
    assert in_svg[:2] == ["title", "desc"]
    bars = page.find("g", "second")
    assert [float(b["data-t"]) for b in bars] == [s["t"] - T0 for s in j.timeline]
    assert [int(b["data-held"]) for b in bars] == [s["held"] for s in j.timeline]
    points = page.find("circle", "p99-point")
    assert [float(p["data-ms"]) for p in points] == [s["p99_ms"] for s in j.timeline]
    path = page.find("path", "p99")[0]["d"]
    assert len(re.findall(r"[ML]", path)) == len(j.timeline)


def test_the_fault_window_starts_at_the_fault_and_ends_when_cleared() -> None:
    page = page_of(drill())
    window = page.find("rect", "fault-window")
    assert len(window) == 1
    assert float(window[0]["data-start-s"]) == FAULT and float(window[0]["data-end-s"]) == CLEARED
    # from the left edge of the bar of the second the fault started in to that of the second it was cleared
    bar_x = {
        float(parents[-1]["data-t"]): float(a["x"]) - 0.5  # bars stand 0.5 apart
        for tag, a, parents in page.elements
        if tag == "rect" and parents[-1].get("class") == "second"
    }
    assert float(window[0]["x"]) == pytest.approx(bar_x[FAULT], abs=0.1)
    assert float(window[0]["width"]) == pytest.approx(bar_x[CLEARED] - bar_x[FAULT], abs=0.1)


def test_a_fault_never_cleared_is_shaded_to_the_end() -> None:
    page = page_of(drill(fault_cleared_at=None))
    window = page.find("rect", "fault-window")[0]
    assert float(window["data-end-s"]) == 20.0
    assert float(window["x"]) + float(window["width"]) == pytest.approx(report.LEFT + report.PLOT_W, abs=0.2)
    assert "not cleared" in page.all_text()


def test_each_action_has_a_marker_with_its_name() -> None:
    j = drill()
    page = page_of(j)
    markers = page.find("g", "marker")
    actions = [e for e in j.events if e.kind == "action"]
    assert [float(m["data-t"]) for m in markers] == [e.t - T0 for e in actions]
    assert [m["data-style"] for m in markers] == ["method", "method", "rollback"]
    text = page.all_text()
    assert all(e.name in text for e in actions)


def test_the_breaker_band_shows_each_state_in_order() -> None:
    page = page_of(drill())
    breaker = [a for a in page.find("rect", "state") if a["data-lane"] == "breaker"]
    assert [a["data-state"] for a in breaker] == ["closed", "open", "half-open", "closed"]
    assert float(breaker[1]["data-start-s"]) == pytest.approx(6.4)
    assert len({a["fill"] for a in breaker[:3]}) == 3  # closed, open, half-open each its colour
    health = [a["data-state"] for a in page.find("rect", "state") if a["data-lane"] == "health"]
    assert health == ["healthy", "down", "degraded", "healthy"]


def test_an_aborted_drill_before_its_load_renders_with_no_data() -> None:
    j = Journal(
        "A drill stopped at once", "icheon", T0, status="aborted", deviations=["aborted: interrupted"],
        events=[Event(T0 + 0.5, "method", "abort", "abort", False, "interrupted by SIGINT")],
        ended_at=T0 + 1.0,
    )  # fmt: skip
    page = page_of(j)
    assert page.text_of["status"].strip() == "aborted"
    assert "no data" in page.text_of["verdict"]
    assert "no data" in page.text_of["timeline"]
    assert page.find("svg") == [] and page.find("table", None) != []  # the events table
    assert "aborted: interrupted" in page.text_of["deviations"]
    assert page.all_text().count("no data") >= 4


@pytest.mark.parametrize("journal", [{}, {f.name: None for f in fields(Journal)}], ids=["empty", "nones"])
def test_a_journal_without_anything_still_renders(journal: dict[str, Any]) -> None:
    page = page_of(journal)
    assert page.text_of["status"].strip() == "unknown"
    assert "no data" in page.all_text()


def test_a_timeline_without_a_start_or_latencies_renders() -> None:
    j = asdict(drill())
    j["started_at"], j["ended_at"], j["measures"] = None, None, {}
    for second in j["timeline"]:
        second["p99_ms"] = None
    page = page_of(j)
    assert len(page.find("g", "second")) == len(j["timeline"]) and page.find("circle", "p99-point") == []
    assert "no data" in page.text_of["timeline"]  # the p99 panel


def test_text_from_the_journal_is_escaped() -> None:
    hostile = '<script>alert("x")</script>'
    j = drill(
        experiment=hostile, subject='"><img src=x onerror=alert(1)>',
        deviations=[f"lost: {hostile}"],
        events=[Event(T0 + FAULT, "method", "action", f"<u>{hostile}", False, hostile)],
        breaker_timeline=[{"t": T0 + 1, "breaker": 'open" onmouseover="alert(1)', "health": hostile,
                           "accepting": True}],
    )  # fmt: skip
    html = render_report(asdict(j))
    page = Page(html)
    assert page.find("script") == [] and page.find("img") == [] and page.find("u") == []
    assert not any(k.startswith("on") for _, a, _ in page.elements for k in a)
    assert page.find("h1") and hostile in page.all_text()
    assert "<script" not in html


def test_the_page_is_self_contained() -> None:
    html = render_report(asdict(drill()))
    page = Page(html)
    links = [a[k] for _, a, _ in page.elements for k in ("src", "href", "xlink:href") if k in a]
    assert not [u for u in links if re.match(r"\s*(https?:)?//", u)]
    assert page.find("script") == [] and page.find("link") == [] and "@import" not in html
    assert page.find("style")


def test_a_journal_loaded_back_from_its_json_renders_the_same_page() -> None:
    j = drill(status="deviated", deviations=["intake did not recover"])
    loaded = json.loads(j.to_json())
    assert render_report(loaded) == render_report(asdict(j))
    page = Page(render_report(loaded))
    assert page.text_of["status"].strip() == "deviated"
    assert len(page.find("g", "second")) == len(j.timeline)


def test_the_locust_stats_table_shows_the_columns_a_reader_compares() -> None:
    page = page_of(drill())
    header, *rows = page.rows["locust"]
    assert header == ["type", "name", "requests", "failures", "median (ms)", "p99 (ms)", "requests/s"]
    assert rows[0] == ["POST", "/v1/orders", "200", "10", "18", "900", "9.88"]
    assert rows[1][1] == "Aggregated"
