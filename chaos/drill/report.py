"""Render a drill's journal as one self-contained HTML page for the people who decide whether the
hypothesis held: the verdict against the RTO, the measures, a timeline of intake, latency and the
subject's breaker around the fault window and the actions, and the events and Locust figures.

Pure: a journal dict (`asdict(journal)`, or the journal JSON loaded back) in, HTML out. Any part of
the journal may be missing or None (a drill aborted before its load started has none); every string
in it is untrusted and escaped. The chart is inline SVG computed here: no scripts, no network, so the
file opens offline and prints.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from typing import Any, Final

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup

from control_plane.domain import BreakerState, Health

NO_VALUE: Final = "—"
TEMPLATES: Final = Environment(
    loader=PackageLoader("chaos.drill", "templates"),
    autoescape=True,  # every string of the journal is untrusted
    undefined=StrictUndefined,
    auto_reload=False,  # packaged templates change only with a release: no stat() per render
    trim_blocks=True,
    lstrip_blocks=True,
)
STATUS_TONE: Final = {"completed": "good", "deviated": "warn", "aborted": "warn", "failed": "bad"}

# -- reading the journal: any value may be missing, None or of another type ---------------------------


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _maps(value: Any) -> list[Mapping[str, Any]]:
    return [v for v in value if isinstance(v, Mapping)] if isinstance(value, list | tuple) else []


def _num(value: Any) -> float | None:
    """A finite number, also from a CSV string; None otherwise (a bool is no number here)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _text(value: Any, limit: int = 500) -> str:
    text = "" if value is None else str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _timed(journal: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    """The entries of a list that carry a time, in time order."""
    rows = [x for x in _maps(journal.get(key)) if _num(x.get("t")) is not None]
    return sorted(rows, key=lambda x: _num(x["t"]) or 0.0)


def origin_of(journal: Mapping[str, Any]) -> float | None:
    """Time zero of the report: the drill's start, else the first thing it recorded."""
    started = _num(journal.get("started_at"))
    if started is not None:
        return started
    keys = ("timeline", "breaker_timeline", "events")
    return min((_num(x["t"]) or 0.0 for key in keys for x in _timed(journal, key)), default=None)


# -- formatting ---------------------------------------------------------------------------------------


def seconds(value: Any) -> str:
    v = _num(value)
    return NO_VALUE if v is None else f"{v:,.2f} s" if abs(v) < 100 else f"{v:,.0f} s"


def hours(value_s: Any) -> str:
    v = _num(value_s)
    if v is None:
        return NO_VALUE
    return f"{v / 60:g} min" if v < 3600 else f"{round(v / 3600, 2):g} h"


def count(value: Any) -> str:
    v = _num(value)
    return NO_VALUE if v is None else f"{v:,.0f}" if v == int(v) else f"{v:,.2f}"


def millis(value: Any) -> str:
    v = _num(value)
    return NO_VALUE if v is None else f"{v:,.1f} ms"


def utc(epoch: Any) -> str:
    v = _num(epoch)
    try:
        return NO_VALUE if v is None else datetime.fromtimestamp(v, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, OSError, ValueError):
        return NO_VALUE


# -- the page's tables ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Figure:
    label: str
    value: str
    tone: str = ""  # good | warn | bad | "" (neutral): how the value reads


@dataclass(frozen=True, slots=True)
class LatencyRow:
    phase: str
    orders: str
    p50: str
    p99: str


@dataclass(frozen=True, slots=True)
class EventRow:
    t: str
    phase: str
    kind: str
    name: str
    ok: bool
    detail: str


@dataclass(frozen=True, slots=True)
class StatsTable:
    columns: list[str]
    numeric: list[bool]
    rows: list[list[str]]


LOCUST_COLUMNS: Final = (  # CSV header, shown as, numeric; "Median" for older Locust CSVs
    ("Type", "type", False),
    ("Name", "name", False),
    ("Request Count", "requests", True),
    ("Failure Count", "failures", True),
    ("Median Response Time", "median (ms)", True),
    ("Median", "median (ms)", True),
    ("99%", "p99 (ms)", True),
    ("Requests/s", "requests/s", True),
)


def verdict(measures: Mapping[str, Any], fault: bool) -> Figure:
    """One line: recovery against the subject's RTO."""
    if not measures:
        return Figure("verdict", "no data: the drill measured nothing")
    if not fault:
        return Figure("verdict", "no fault was injected: nothing to recover from")
    rto, recovered = _num(measures.get("rto_s")), _num(measures.get("recover_s"))
    target = f"RTO {hours(rto)}" if rto is not None else "no RTO target for this site (run a BIA)"
    if recovered is None:
        return Figure(
            "verdict", f"no recovery measured (intake never held 95 % of its steady share); {target}"
        )
    within = measures.get("recovery_within_rto")
    if not isinstance(within, bool):
        within = None if rto is None else recovered <= rto
    if within is None:
        return Figure("verdict", f"recovered in {seconds(recovered)}; {target}")
    word, tone = ("within", "good") if within else ("OVER", "bad")
    return Figure("verdict", f"recovered in {seconds(recovered)} vs {target}: {word}", tone)


def recovery_figures(m: Mapping[str, Any], fault: bool) -> list[Figure]:
    out = []
    for name in ("detect", "mitigate", "recover"):
        value = _num(m.get(f"{name}_s"))
        shown = seconds(value) if value is not None else "not seen" if fault else "no fault"
        out.append(Figure(f"time to {name}", shown))
    rto = _num(m.get("rto_s"))
    out.append(Figure("RTO", hours(rto) if rto is not None else "no target (run a BIA)"))
    within = m.get("recovery_within_rto")
    if isinstance(within, bool):
        out.append(Figure("recovery within RTO", "yes" if within else "NO", "good" if within else "bad"))
    else:
        out.append(Figure("recovery within RTO", NO_VALUE))
    return out


RECONCILIATION: Final = (
    ("placed", "placed"),
    ("in_ledgers", "in DC ledgers"),
    ("held", "held"),
    ("cancelled", "cancelled"),
    ("lost", "lost"),
    ("duplicated", "duplicated"),
)


def order_figures(m: Mapping[str, Any], rec: Mapping[str, Any]) -> list[Figure]:
    out = [Figure("orders posted", count(m.get("orders_posted")))]
    for key, label in RECONCILIATION:
        value = _num(rec.get(key))
        tone = "" if key not in ("lost", "duplicated") or value is None else "bad" if value else "good"
        out.append(Figure(label, count(value), tone))
    if _num(rec.get("strangers")):  # in a ledger but never acknowledged: a post that timed out
        out.append(Figure("in a ledger, never acknowledged", count(rec["strangers"]), "warn"))
    unsent = _num(m.get("notices_unsent"))
    out.append(Figure("notices sent", count(m.get("notices_sent"))))
    out.append(Figure("notices unsent", count(unsent), "warn" if unsent else ""))
    if m.get("notices_error"):
        out.append(Figure("notices could not be read", _text(m["notices_error"], 80), "warn"))
    return out


def latency_rows(m: Mapping[str, Any]) -> list[LatencyRow]:
    rows = []
    for phase, lat in _map(m.get("latency")).items():
        if isinstance(lat, Mapping):
            p50, p99 = millis(lat.get("p50_ms")), millis(lat.get("p99_ms"))
            rows.append(LatencyRow(_text(phase, 40), count(lat.get("orders")), p50, p99))
    return rows


def event_rows(journal: Mapping[str, Any]) -> list[EventRow]:
    origin, rows = origin_of(journal), []
    untimed = [e for e in _maps(journal.get("events")) if _num(e.get("t")) is None]
    for e in [*_timed(journal, "events"), *untimed]:
        t = _num(e.get("t"))
        at = NO_VALUE if t is None or origin is None else f"{t - origin:+.2f} s"
        phase, kind, name = _text(e.get("phase"), 40), _text(e.get("kind"), 40), _text(e.get("name"), 80)
        rows.append(EventRow(at, phase, kind, name, e.get("ok") is True, _text(e.get("detail"))))
    return rows


def stats_table(load: Mapping[str, Any]) -> StatsTable | None:
    """Locust's stats CSV rows, the columns a reader compares; None without any."""
    rows = _maps(load.get("stats"))
    present = {key for row in rows for key in row}
    columns: dict[str, tuple[str, bool]] = {}  # shown as -> (CSV header, numeric)
    for key, shown, numeric in LOCUST_COLUMNS:
        if key in present and shown not in columns:
            columns[shown] = (key, numeric)
    if not rows or not columns:
        return None

    def cell(row: Mapping[str, Any], key: str, numeric: bool) -> str:
        value = row.get(key)
        return count(value) if numeric and _num(value) is not None else _text(value, 120) or NO_VALUE

    cells = [[cell(row, key, numeric) for key, numeric in columns.values()] for row in rows]
    return StatsTable(list(columns), [numeric for _, numeric in columns.values()], cells)


# -- the timeline chart: what it draws ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Bar:
    """One second of intake; t is seconds since the drill's start."""

    t: float
    accepted: int
    held: int
    failed: int
    p99_ms: float | None

    @property
    def total(self) -> int:
        return self.accepted + self.held + self.failed


@dataclass(frozen=True, slots=True)
class Span:
    """A run of one state in a lane of the subject's states."""

    start: float
    end: float
    state: str


@dataclass(frozen=True, slots=True)
class Marker:
    t: float
    label: str
    detail: str
    style: str  # method | rollback | failed | abort | milestone


@dataclass(frozen=True, slots=True)
class Timeline:
    """What the chart draws, in seconds since the drill's start."""

    start: float
    end: float
    subject: str
    bars: list[Bar]
    lanes: list[tuple[str, list[Span]]]  # breaker, health, accepting, impaired
    fault: tuple[float, float] | None
    fault_cleared: bool
    markers: list[Marker]  # actions and aborts
    milestones: list[Marker]  # detected, mitigated, recovered


def spans(samples: Sequence[tuple[float, str]]) -> list[Span]:
    """Runs of equal states; each lasts until the next state is seen, the last one to the last sample
    (the journal keeps the moments a state changed and the last sample)."""
    out: list[Span] = []
    for t, state in samples:
        if out:
            out[-1] = Span(out[-1].start, t, out[-1].state)
        if not out or out[-1].state != state:
            out.append(Span(t, t, state))
    return out


LANES: Final = ("breaker", "health", "accepting", "impaired")
YES_NO: Final = {"accepting": ("accepting", "not accepting"), "impaired": ("impaired", "not impaired")}


def _state(sample: Mapping[str, Any], lane: str) -> str:
    if lane in YES_NO:
        value = sample.get(lane)
        return "unknown" if not isinstance(value, bool) else YES_NO[lane][0 if value else 1]
    return _text(sample.get(lane), 30) or "unknown"


def _marker(event: Mapping[str, Any], origin: float) -> Marker:
    kind, phase, ok = _text(event.get("kind")), _text(event.get("phase"), 40), event.get("ok") is True
    name = _text(event.get("name"), 60)
    if kind == "abort" or not ok:
        style = "abort" if kind == "abort" else "failed"
    else:
        style = "rollback" if phase == "rollback" else "method"
    detail = f"{phase} {kind} {name}: {'ok' if ok else 'FAILED'}. {_text(event.get('detail'), 300)}"
    return Marker((_num(event["t"]) or 0.0) - origin, _text(name, 22), detail.strip(), style)


def timeline_of(journal: Mapping[str, Any]) -> Timeline | None:
    """The chart's data, or None when the drill recorded neither intake nor samples of the subject."""
    per_second, samples = _timed(journal, "timeline"), _timed(journal, "breaker_timeline")
    events, origin = _timed(journal, "events"), origin_of(journal)
    if (not per_second and not samples) or origin is None:
        return None
    bars = [
        Bar(
            (_num(s["t"]) or 0.0) - origin,
            *(int(_num(s.get(key)) or 0) for key in ("accepted", "held", "failed")),
            _num(s.get("p99_ms")),
        )
        for s in per_second
    ]
    ended = _num(journal.get("ended_at"))
    times = [(_num(x["t"]) or 0.0) - origin for x in (*samples, *events)]
    end = max([*times, *(b.t + 1 for b in bars), 0.0 if ended is None else ended - origin])
    fault_at, cleared_at = _num(journal.get("fault_started_at")), _num(journal.get("fault_cleared_at"))
    fault = None
    if fault_at is not None:
        fault = (fault_at - origin, end if cleared_at is None else max(cleared_at, fault_at) - origin)
    lanes = [  # impaired: only journals that record it
        (lane, spans([((_num(s["t"]) or 0.0) - origin, _state(s, lane)) for s in samples]))
        for lane in LANES
        if samples and (lane != "impaired" or any(lane in s for s in samples))
    ]
    measures, milestones = _map(journal.get("measures")), []
    for key, done in (("detect_s", "detected"), ("mitigate_s", "mitigated"), ("recover_s", "recovered")):
        value = _num(measures.get(key))
        if fault is not None and value is not None:
            label = f"{done} {seconds(value)}"
            milestones.append(Marker(fault[0] + value, label, f"{label} after the fault", "milestone"))
    return Timeline(
        start=min([0.0, *(b.t for b in bars)]),
        end=end,
        subject=_text(journal.get("subject"), 60),
        bars=bars,
        lanes=lanes,
        fault=fault,
        fault_cleared=cleared_at is not None,
        markers=[_marker(e, origin) for e in events if e.get("kind") in ("action", "abort")],
        milestones=sorted(milestones, key=lambda m: m.t),
    )


# -- the timeline chart: how it is drawn ----------------------------------------------------------------

# Okabe-Ito: distinguishable with the common colour-vision deficiencies; black text reads on each.
BLUE, AMBER, GREEN, RED = "#0072B2", "#E69F00", "#009E73", "#D55E00"
GREY, INK, MUTED = "#c9c9c9", "#222", "#555"
STATE_FILL: Final[Mapping[str, str]] = {
    BreakerState.CLOSED: GREEN,
    BreakerState.HALF_OPEN: AMBER,
    BreakerState.OPEN: RED,
    Health.HEALTHY: GREEN,
    Health.DEGRADED: AMBER,
    Health.DOWN: RED,
    Health.UNKNOWN: GREY,
    "accepting": GREEN,
    "not accepting": RED,
    "not impaired": GREEN,
    "impaired": RED,
}
MARKER_STYLE: Final = {
    "method": (INK, ""),
    "rollback": (BLUE, "6 3"),
    "failed": (RED, ""),
    "abort": (RED, "2 3"),
}
W, LEFT, RIGHT = 1000, 96, 24
PLOT_W = W - LEFT - RIGHT
LABEL_BOTTOM, LABEL_ROW, LABEL_ROWS = 108, 16, 3  # the actions' labels, staggered upwards over rows
P1, P1_H = 118, 160  # orders per second
P2, P2_H = P1 + P1_H + 30, 110  # p99 latency
P3, LANE_H = P2 + P2_H + 26, 24  # the subject's states, a lane each, then the measured moments
CHAR_W = 6.9  # a 12 px character, about: enough to keep labels apart


def nice_step(span: float, most: int) -> float:
    """A step of 1, 2 or 5 x 10^k giving at most `most` intervals over `span`."""
    raw = max(span, 1e-9) / most
    power = 10 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= raw)


def _ceiling(value: float) -> float:
    step = nice_step(value, 4)
    return step * math.ceil(value / step - 1e-9) if value > 0 else 1.0


def _text_el(x: float, y: float, label: str, size: int = 12, anchor: str = "start", extra: str = "") -> str:
    where = f'x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}"'
    return f"<text {where}{extra}>{escape(label)}</text>"


def _legend(y: float, items: Sequence[tuple[str, str, str]]) -> list[str]:
    """One row of (colour, label, style: box | shade | line | dash)."""
    out, x = [], float(LEFT)
    for colour, label, style in items:
        if style in ("box", "shade"):
            shade = ' fill-opacity="0.18" stroke="#b5532a"' if style == "shade" else ""
            out.append(f'<rect x="{x:.1f}" y="{y - 10}" width="14" height="13" fill="{colour}"{shade}/>')
        else:
            dash = ' stroke-dasharray="6 3"' if style == "dash" else ""
            line = f'x1="{x:.1f}" y1="{y - 4}" x2="{x + 16:.1f}" y2="{y - 4}"'
            out.append(f'<line {line} stroke="{colour}" stroke-width="2.5"{dash}/>')
        out.append(_text_el(x + 20, y + 1, label))
        x += 36 + CHAR_W * len(label)
    return out


def _y_axis(top: int, height: int, most: float, caption: str) -> list[str]:
    step = nice_step(most, 4)
    out = []
    for i in range(math.floor(most / step + 1e-9) + 1):
        y = top + height - i * step * height / most
        out.append(f'<line x1="{LEFT - 4}" y1="{y:.1f}" x2="{LEFT + PLOT_W}" y2="{y:.1f}" stroke="#e2e2e2"/>')
        out.append(_text_el(LEFT - 7, y + 4, f"{i * step:,g}", 12, "end"))
    out.append(
        f'<line x1="{LEFT}" y1="{top + height}" x2="{LEFT + PLOT_W}" y2="{top + height}" stroke="#888"/>'
    )
    mid = top + height / 2
    turn = f' transform="rotate(-90 20 {mid:.1f})" font-weight="600"'
    return [*out, _text_el(20, mid, caption, 13, "middle", turn)]


def _no_data(top: float, what: str = "no data") -> str:
    return _text_el(LEFT + PLOT_W / 2, top, what, 14, "middle", f' fill="{MUTED}" font-style="italic"')


def _throughput(tl: Timeline, x: Callable[[float], float], scale: float) -> list[str]:
    most = _ceiling(max((b.total for b in tl.bars), default=0))
    out = _y_axis(P1, P1_H, most, "orders / s")
    if not tl.bars:
        return [*out, _no_data(P1 + P1_H / 2)]
    width, unit, gap = max(scale - 1.0, 0.6), P1_H / most, 0.5 if scale > 2 else 0.0
    for b in tl.bars:
        y, rects = float(P1 + P1_H), []
        for value, colour in ((b.accepted, BLUE), (b.held, AMBER), (b.failed, RED)):
            if value > 0:
                y -= value * unit
                box = f'x="{x(b.t) + gap:.1f}" y="{y:.1f}" width="{width:.1f}" height="{value * unit:.1f}"'
                rects.append(f'<rect {box} fill="{colour}"/>')
        tip = f"{b.t:+.0f} s: {b.accepted} accepted, {b.held} held, {b.failed} failed"
        data = (
            f'data-t="{b.t:.3f}" data-accepted="{b.accepted}" data-held="{b.held}" data-failed="{b.failed}"'
        )
        out.append(f'<g class="second" {data}><title>{escape(tip)}</title>{"".join(rects)}</g>')
    return out


def _latency(tl: Timeline, x: Callable[[float], float]) -> list[str]:
    bars = [b for b in tl.bars if b.p99_ms is not None]
    most = _ceiling(max((b.p99_ms or 0.0 for b in bars), default=0.0))
    out = _y_axis(P2, P2_H, most, "p99 (ms)")
    if not bars:
        return [*out, _no_data(P2 + P2_H / 2)]
    points = [(x(b.t + 0.5), P2 + P2_H - (b.p99_ms or 0.0) * P2_H / most) for b in bars]
    moves, pen_down = [], False  # a second without orders has no p99: the line breaks there
    for b in tl.bars:
        if b.p99_ms is not None:
            px, py = points[len(moves)]
            moves.append(f"{'L' if pen_down else 'M'}{px:.1f} {py:.1f}")
        pen_down = b.p99_ms is not None
    path = " ".join(moves)
    out.append(
        f'<path class="p99" d="{path}" fill="none" stroke="{INK}" stroke-width="2" stroke-linejoin="round"/>'
    )
    r = 3 if len(points) <= 120 else 1.5
    for b, (px, py) in zip(bars, points, strict=True):
        data = f'data-t="{b.t:.3f}" data-ms="{b.p99_ms:g}"'
        out.append(
            f'<circle class="p99-point" {data} cx="{px:.1f}" cy="{py:.1f}" r="{r}" fill="{INK}">'
            f"<title>{b.t:+.0f} s: p99 {b.p99_ms:,.1f} ms</title></circle>"
        )
    return out


def _lanes(tl: Timeline, x: Callable[[float], float]) -> list[str]:
    if not tl.lanes:
        return [_text_el(LEFT - 7, P3 + 16, "breaker", 12, "end"), _no_data(P3 + 16, "no data: not sampled")]
    out = []
    for i, (lane, runs) in enumerate(tl.lanes):
        top = P3 + i * LANE_H
        out.append(_text_el(LEFT - 7, top + 16, lane, 12, "end"))
        for s in runs:
            sx, sw = x(s.start), max(x(s.end) - x(s.start), 0.8)
            fill = STATE_FILL.get(s.state.lower().replace("_", "-"), GREY)
            data = f'data-lane="{escape(lane)}" data-state="{escape(s.state)}" data-start-s="{s.start:.3f}"'
            tip = f"{lane} {s.state}: {s.start:.2f} s to {s.end:.2f} s"
            out.append(
                f'<rect class="state" {data} x="{sx:.1f}" y="{top + 2}" width="{sw:.1f}" '
                f'height="{LANE_H - 4}" fill="{fill}"><title>{escape(tip)}</title></rect>'
            )
            if sw > CHAR_W * len(s.state) + 8:  # the state in words where it fits: colour is not the only cue
                out.append(_text_el(sx + 4, top + 16, s.state, 12, extra=' fill="#000"'))
    top = P3 + len(tl.lanes) * LANE_H
    out.append(_text_el(LEFT - 7, top + 16, "measured", 12, "end"))
    groups: list[list[tuple[float, Marker]]] = []  # moments a few pixels apart share one label
    for m in tl.milestones:
        mx = x(m.t)
        out.append(
            f'<path class="milestone" d="M{mx:.1f} {top + 3}l8 9-8 9-8-9z" fill="{INK}">'
            f"<title>{escape(m.detail)}</title></path>"
        )
        if groups and mx - groups[-1][-1][0] < 14:
            groups[-1].append((mx, m))
        else:
            groups.append([(mx, m)])
    for i, group in enumerate(groups):
        # in words where there is room before the next moment, else initials (D, M, R); <title> has all
        start = group[-1][0] + 11
        room = (groups[i + 1][0][0] - 12 if i + 1 < len(groups) else W - 4) - start
        words = " · ".join(m.label for _, m in group)
        initials = "·".join(m.label[:1].upper() for _, m in group)
        label = next((t for t in (words, initials) if CHAR_W * len(t) <= room), "")
        out.append(_text_el(start, top + 17, label, 12) if label else "")
    return out


def _markers(tl: Timeline, x: Callable[[float], float], bottom: float) -> list[str]:
    out, row_free = [], [float("-inf")] * LABEL_ROWS
    for m in tl.markers:
        mx, width = x(m.t), CHAR_W * len(m.label) + 6
        anchor, lx = ("end", mx - 4) if mx + width > W - 4 else ("start", mx + 4)
        left = lx - width if anchor == "end" else lx
        row = next((r for r, free in enumerate(row_free) if free < left), None)
        row = min(range(LABEL_ROWS), key=row_free.__getitem__) if row is None else row
        row_free[row] = left + width
        y = LABEL_BOTTOM - row * LABEL_ROW
        colour, dash = MARKER_STYLE.get(m.style, (INK, ""))
        line = f'x1="{mx:.1f}" y1="{y - 12}" x2="{mx:.1f}" y2="{bottom}" stroke="{colour}" stroke-width="1.6"'
        dashed = f' stroke-dasharray="{dash}"' if dash else ""
        label = _text_el(lx, y, m.label, 12, anchor, f' fill="{colour}" font-weight="600"')
        out.append(
            f'<g class="marker" data-style="{m.style}" data-t="{m.t:.3f}"><title>{escape(m.detail)}</title>'
            f"<line {line}{dashed}/>{label}</g>"
        )
    return out


def describe(tl: Timeline) -> str:
    """The chart in words, for a screen reader."""
    who = tl.subject or "the subject"
    parts = [
        "Per second of the drill: orders accepted, held and failed, and their p99 latency; "
        f"below, {who}'s breaker state, health and whether it accepted orders."
    ]
    if tl.bars:
        parts.append(f"{len(tl.bars)} seconds of intake, at most {max(b.total for b in tl.bars)} orders/s.")
    else:
        parts.append("No orders were recorded.")
    if tl.fault is not None:
        end = f"{tl.fault[1]:.1f} s" if tl.fault_cleared else "the end (not cleared)"
        parts.append(f"Fault from {tl.fault[0]:.1f} s to {end}.")
    parts += [f"{m.style} action {m.label} at {m.t:.1f} s." for m in tl.markers]
    parts += [f"{m.detail}." for m in tl.milestones]
    return " ".join(parts)


def timeline_svg(tl: Timeline) -> str:
    """Three panels on one time axis: orders/s, p99 latency, the subject's states; the fault window
    and the actions across all three."""
    span = max(tl.end - tl.start, 1.0)
    scale = PLOT_W / span

    def x(t: float) -> float:
        return LEFT + (min(max(t, tl.start), tl.start + span) - tl.start) * scale

    bottom = P3 + LANE_H * (len(tl.lanes) + 1 if tl.lanes else 1)
    height = bottom + 52
    body = _legend(20, [
        (BLUE, "accepted", "box"), (AMBER, "held", "box"), (RED, "failed", "box"),
        (INK, "p99 latency", "line"), (RED, "fault window", "shade"), (INK, "method action", "line"),
        (BLUE, "rollback action", "dash"), (RED, "failed action", "line"),
    ])  # fmt: skip
    body += _legend(42, [
        (GREEN, "closed · healthy · accepting", "box"), (AMBER, "half-open · degraded", "box"),
        (RED, "open · down · impaired", "box"), (GREY, "unknown", "box"),
    ])  # fmt: skip
    step = nice_step(span, 10)
    for i in range(math.ceil(tl.start / step - 1e-9), math.floor((tl.start + span) / step + 1e-9) + 1):
        tx = x(i * step)
        body.append(f'<line x1="{tx:.1f}" y1="{P1}" x2="{tx:.1f}" y2="{bottom}" stroke="#e2e2e2"/>')
        body.append(_text_el(tx, bottom + 18, f"{i * step:g}", 12, "middle"))
    body.append(_text_el(LEFT + PLOT_W / 2, bottom + 40, "seconds since the drill started", 13, "middle"))
    if tl.fault is not None:
        fx, fw = x(tl.fault[0]), max(x(tl.fault[1]) - x(tl.fault[0]), 1.5)
        what = "fault" if tl.fault_cleared else "fault, not cleared"
        data = f'data-start-s="{tl.fault[0]:.3f}" data-end-s="{tl.fault[1]:.3f}"'
        box = f'x="{fx:.1f}" y="{P1}" width="{fw:.1f}" height="{bottom - P1}"'
        tip = f"{what}: {tl.fault[0]:.2f} s to {tl.fault[1]:.2f} s"
        shade = f'fill="{RED}" fill-opacity="0.13"'
        body.append(f'<rect class="fault-window" {data} {box} {shade}><title>{tip}</title></rect>')
    body += _throughput(tl, x, scale) + _latency(tl, x) + _lanes(tl, x) + _markers(tl, x, bottom)
    if tl.fault is not None:  # over the bars, with a halo
        halo = ' font-weight="600" fill="#8a3300" stroke="#fff" stroke-width="3" paint-order="stroke"'
        body.append(_text_el(x(tl.fault[0]) + 4, P1 + 14, what, 12, extra=halo))
    title = f"Timeline of the drill: intake, p99 latency and {tl.subject or 'the subject'}'s breaker"
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {height}" width="100%" role="img" '
        f'aria-labelledby="tl-title tl-desc" font-family="system-ui, sans-serif" class="timeline">'
        f'<title id="tl-title">{escape(title)}</title><desc id="tl-desc">{escape(describe(tl))}</desc>'
        f'<rect width="{W}" height="{height}" fill="#fff"/>' + "".join(body) + "</svg>"
    )


# -- the page -------------------------------------------------------------------------------------------


def render_report(journal: Mapping[str, Any]) -> str:
    """Return the drill's report as one self-contained HTML page."""
    j = _map(journal)
    measures, rec, load = _map(j.get("measures")), _map(j.get("reconciliation")), _map(j.get("load"))
    fault = _num(j.get("fault_started_at")) is not None
    status = _text(j.get("status"), 40) or "unknown"
    started, ended = _num(j.get("started_at")), _num(j.get("ended_at"))
    deviations = j.get("deviations") if isinstance(j.get("deviations"), list) else []
    examples = [
        (label, [_text(o, 80) for o in rec[key][:10]])
        for key, label in (("lost_examples", "lost"), ("duplicated_examples", "in two ledgers"))
        if isinstance(rec.get(key), list) and rec[key]
    ]
    timeline = timeline_of(j)
    exit_code = load.get("exit_code")
    return TEMPLATES.get_template("report.html.j2").render(
        title=_text(j.get("experiment"), 200) or "untitled drill",
        subject=_text(j.get("subject"), 60) or NO_VALUE,
        drill_id=None if j.get("drill_id") is None else _text(j.get("drill_id"), 20),
        status=status,
        status_tone=STATUS_TONE.get(status, ""),
        started=utc(started),
        ended=utc(ended),
        duration=NO_VALUE if started is None or ended is None else seconds(ended - started),
        deviations=[_text(d) for d in deviations if d is not None],
        verdict=verdict(measures, fault),
        recovery=recovery_figures(measures, fault) if measures else [],
        orders=order_figures(measures, rec) if measures or rec else [],
        examples=examples,
        latency=latency_rows(measures),
        # Markup: the SVG is built from numbers and escape()d strings only
        chart=None if timeline is None else Markup(timeline_svg(timeline)),
        events=event_rows(j),
        stats=stats_table(load),
        locust_exit=None if exit_code is None else _text(exit_code, 20),
    )
