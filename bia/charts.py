"""Inline SVG charts for the BIA report: each is a self-contained image with title, axes, units and legend.

Every data mark carries class="mark" and data-* attributes with its value, so a test (or a curious
reader with dev tools) can check what was drawn against the numbers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

from bia.frame import HOURS_PER_WEEK
from bia.params import BiaParams
from bia.results import Pareto, SiteImpact, SkuRank

# Okabe-Ito: distinguishable with the common colour-vision deficiencies.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000")
DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
FONT = 'font-family="system-ui, sans-serif"'


def money(value: float, currency: str) -> str:
    """Short money label: 1.2 bn KRW, 34.5 M KRW, 120 k KRW."""
    magnitude = abs(value)
    for limit, suffix in ((1e9, " bn"), (1e6, " M"), (1e3, " k")):
        if magnitude >= limit:
            return f"{value / limit:,.1f}{suffix} {currency}"
    return f"{value:,.0f} {currency}"


def nice_ticks(top: float, count: int = 5) -> list[float]:
    """Round tick values from 0 to at least `top` (steps of 1, 2 or 5 x 10^k)."""
    if top <= 0:
        return [0.0, 1.0]
    raw = top / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    return [i * step for i in range(math.ceil(top / step - 1e-9) + 1)]


def _svg(chart: str, width: int, height: int, title: str, body: list[str]) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}" role="img" aria-label="{escape(title)}" data-chart="{chart}" {FONT}>'
        f"<title>{escape(title)}</title>"
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="#fff"/>'
        f'<text x="12" y="22" font-size="15" font-weight="600">{escape(title)}</text>'
        + "".join(body)
        + "</svg>"
    )


def _text(x: float, y: float, label: str, size: int = 11, anchor: str = "start", extra: str = "") -> str:
    position = f'x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}"'
    return f"<text {position} {extra}>{escape(label)}</text>"


def _legend(x: float, y: float, items: Sequence[tuple[str, str, str]]) -> list[str]:
    """Legend entries (colour, label, style) in one row; style is 'box', 'line' or 'dash'."""
    out, cursor = [], x
    for colour, label, style in items:
        if style == "box":
            out.append(f'<rect x="{cursor:.1f}" y="{y - 9:.1f}" width="12" height="12" fill="{colour}"/>')
        else:
            dash = ' stroke-dasharray="6 4"' if style == "dash" else ""
            out.append(
                f'<line x1="{cursor:.1f}" y1="{y - 3:.1f}" x2="{cursor + 18:.1f}" y2="{y - 3:.1f}" '
                f'stroke="{colour}" stroke-width="2.5"{dash}/>'
            )
        out.append(_text(cursor + 22, y + 1, label))
        cursor += 30 + 6.5 * len(label)
    return out


def revenue_at_risk_bars(sites: Sequence[SiteImpact], currency: str) -> str:
    """Horizontal bars: revenue per hour of outage for each site, mean hour and busiest hour."""
    left, right, top, row = 240, 30, 64, 34
    width = 820
    height = top + row * max(1, len(sites)) + 46
    plot = width - left - right
    # Headroom past the longest bar for its value label.
    ticks = nice_ticks(max([s.demand.revenue_per_hour.peak for s in sites] + [0.0]) * 1.45)
    scale = plot / ticks[-1]
    body = _legend(left, 46, [("#9ecae1", "busiest hour", "box"), (PALETTE[0], "mean hour", "box")])
    for t in ticks:
        x = left + t * scale
        body.append(f'<line x1="{x:.1f}" y1="{top - 6}" x2="{x:.1f}" y2="{height - 40}" stroke="#ddd"/>')
        body.append(_text(x, height - 26, money(t, currency).replace(f" {currency}", ""), 10, "middle"))
    body.append(
        _text(left + plot / 2, height - 8, f"revenue per hour of outage ({currency}/h)", 11, "middle")
    )
    for i, s in enumerate(sites):
        y = top + i * row
        mean, peak = s.demand.revenue_per_hour.mean, s.demand.revenue_per_hour.peak
        body.append(_text(left - 8, y + 17, f"{s.name} (tier {s.tier})", 11, "end"))
        for value, colour, inset, kind in ((peak, "#9ecae1", 0, "peak"), (mean, PALETTE[0], 6, "mean")):
            body.append(
                f'<rect class="mark" data-site="{escape(s.code)}" data-kind="{kind}" '
                f'data-value="{value:.2f}" '
                f'x="{left}" y="{y + inset:.1f}" width="{max(value * scale, 0.5):.1f}" '
                f'height="{24 - 2 * inset}" fill="{colour}"><title>{escape(s.name)} {kind}: '
                f"{escape(money(value, currency))}/h</title></rect>"
            )
        label = f"mean {money(mean, '')} · peak {money(peak, currency)}/h".replace("  ", " ")
        body.append(_text(left + peak * scale + 6, y + 16, label, 10))
    return _svg("revenue-at-risk", width, height, "Revenue at risk per hour of outage, by site", body)


def _heat_colour(share: float) -> str:
    """White to dark blue, by share of the largest value."""
    share = min(1.0, max(0.0, share))
    r = round(247 - share * (247 - 8))
    g = round(251 - share * (251 - 48))
    b = round(255 - share * (255 - 107))
    return f"#{r:02x}{g:02x}{b:02x}"


def hour_of_week_heatmap(sites: Sequence[SiteImpact], currency: str) -> str:
    """Sites x 168 hours: revenue per hour, darker = more revenue at risk if the site is down then."""
    left, top, cell_w, cell_h = 230, 70, 3.4, 26
    width = int(left + cell_w * HOURS_PER_WEEK + 30)
    height = int(top + cell_h * max(1, len(sites)) + 86)
    top_value = max([max(s.demand.revenue_per_hour.by_hour_of_week) for s in sites] + [0.0]) or 1.0
    body: list[str] = []
    for d, day in enumerate(DAYS):
        x = left + d * 24 * cell_w
        body.append(_text(x + 12 * cell_w, top - 8, day, 11, "middle"))
        body.append(
            f'<line x1="{x:.1f}" y1="{top - 4}" x2="{x:.1f}" y2="{top + cell_h * len(sites)}" stroke="#999"/>'
        )
    for i, s in enumerate(sites):
        y = top + i * cell_h
        body.append(_text(left - 8, y + cell_h / 2 + 4, s.name, 11, "end"))
        for h, value in enumerate(s.demand.revenue_per_hour.by_hour_of_week):
            body.append(
                f'<rect class="mark" data-site="{escape(s.code)}" data-hour="{h}" data-value="{value:.2f}" '
                f'x="{left + h * cell_w:.2f}" y="{y:.1f}" width="{cell_w:.2f}" height="{cell_h - 2}" '
                f'fill="{_heat_colour(value / top_value)}"><title>{escape(s.name)} {DAYS[h // 24]} '
                f"{h % 24:02d}:00 — {escape(money(value, currency))}/h</title></rect>"
            )
    axis_y = top + cell_h * len(sites) + 16
    for d in range(7):
        for hour in (0, 12):
            body.append(_text(left + (d * 24 + hour) * cell_w, axis_y, f"{hour:02d}h", 9, "middle"))
    body.append(_text(left, axis_y + 18, "local time (hour of the week)", 11))
    # Colour scale legend: five steps from 0 to the largest hourly revenue.
    legend_x = left + 210
    body.append(_text(legend_x - 8, axis_y + 45, f"revenue per hour ({currency}/h):", 11, "end"))
    for k in range(5):
        value = top_value * k / 4
        x = legend_x + k * 66
        body.append(
            f'<rect x="{x}" y="{axis_y + 34}" width="16" height="14" '
            f'fill="{_heat_colour(k / 4)}" stroke="#999"/>'
        )
        body.append(_text(x + 20, axis_y + 45, money(value, "").strip(), 10))
    return _svg("heatmap", width, height, "Revenue per hour by site and hour of the week", body)


def pareto_chart(skus: Sequence[SkuRank], pareto: Pareto, params: BiaParams) -> str:
    """Bars of each SKU's share of revenue (by rank) and the cumulative curve, with the A/B/C cut-offs."""
    left, right, top, bottom = 64, 64, 60, 64
    width, height = 760, 340
    plot_w, plot_h = width - left - right, height - top - bottom
    n = max(1, len(skus))
    bar_w = plot_w / n
    max_share = max([s.revenue_share for s in skus] + [0.01])
    bar_ticks = nice_ticks(max_share * 100, 4)
    bar_scale = plot_h / (bar_ticks[-1] / 100)
    colours = {"A": PALETTE[3], "B": PALETTE[1], "C": "#bbbbbb"}
    body = _legend(
        left,
        46,
        [
            (colours["A"], "class A", "box"),
            (colours["B"], "class B", "box"),
            (colours["C"], "class C", "box"),
            ("#000", "cumulative share of revenue", "line"),
        ],
    )
    base = top + plot_h
    for t in bar_ticks:
        y = base - t / 100 * bar_scale
        body.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" stroke="#eee"/>')
        body.append(_text(left - 6, y + 4, f"{t:g}%", 10, "end"))
    for pct in (0, 20, 40, 60, 80, 100):
        body.append(_text(left + plot_w + 6, base - pct / 100 * plot_h + 4, f"{pct}%", 10))
    body.append(
        _text(
            14,
            top + plot_h / 2,
            "share of revenue per SKU",
            11,
            "middle",
            f'transform="rotate(-90 14 {top + plot_h / 2:.1f})"',
        )
    )
    body.append(
        _text(
            width - 12,
            top + plot_h / 2,
            "cumulative share",
            11,
            "middle",
            f'transform="rotate(90 {width - 12} {top + plot_h / 2:.1f})"',
        )
    )
    points = []
    for i, s in enumerate(skus):
        x = left + i * bar_w
        h = s.revenue_share * bar_scale
        body.append(
            f'<rect class="mark" data-sku="{escape(s.sku)}" data-value="{s.revenue_share:.6f}" '
            f'x="{x + 0.5:.2f}" y="{base - h:.2f}" width="{max(bar_w - 1, 0.8):.2f}" '
            f'height="{max(h, 0.5):.2f}" '
            f'fill="{colours[s.abc_class]}"><title>#{s.rank_by_revenue} {escape(s.sku)} {escape(s.name)}: '
            f"{s.revenue_share:.1%} of revenue, cumulative {s.cumulative_revenue_share:.1%}</title></rect>"
        )
        points.append(f"{x + bar_w / 2:.2f},{base - s.cumulative_revenue_share * plot_h:.2f}")
    if points:
        body.append(
            f'<polyline class="curve" points="{" ".join(points)}" fill="none" '
            'stroke="#000" stroke-width="2"/>'
        )
    cut_y = base - params.abc_a_share * plot_h
    body.append(
        f'<line x1="{left}" y1="{cut_y:.1f}" x2="{left + plot_w}" y2="{cut_y:.1f}" '
        f'stroke="{colours["A"]}" stroke-dasharray="4 3"/>'
    )
    cut_x = left + pareto.class_a * bar_w
    body.append(
        f'<line x1="{cut_x:.1f}" y1="{top}" x2="{cut_x:.1f}" y2="{base}" stroke="{colours["A"]}" '
        f'stroke-dasharray="4 3"/>'
    )
    body.append(
        _text(
            cut_x + 4,
            top + 14,
            f"A: first {pareto.class_a} of {pareto.skus} SKUs = "
            f"{pareto.class_a_share_of_revenue:.0%} of revenue",
            11,
        )
    )
    body.append(
        _text(left + plot_w / 2, base + 18, f"SKUs ranked by revenue (1 to {len(skus)})", 11, "middle")
    )
    return _svg("pareto", width, height, "Pareto: a few SKUs make most of the revenue", body)


def loss_curve_chart(sites: Sequence[SiteImpact], params: BiaParams) -> str:
    """Loss of one outage (worst start hour) against its duration, per site, with and without failover.

    Both axes are logarithmic: losses span orders of magnitude between sites and durations, and
    what matters is where each line crosses the tolerance. Zero losses sit on their own line at the
    bottom, below the first power of ten.
    """
    left, right, top, bottom = 92, 30, 78, 58
    width, height = 760, 420
    plot_w, plot_h = width - left - right, height - top - bottom
    zero_gap = 18
    durations = params.loss_durations_hours
    lo, hi = math.log(min(durations)), math.log(max(durations))
    span = (hi - lo) or 1.0

    def x_of(d: float) -> float:
        return left + (math.log(d) - lo) / span * plot_w

    values = [p.worst_start_total for s in sites for p in s.losses] + [params.loss_tolerance]
    positive = [v for v in values if v > 0] or [1.0]
    y_lo = math.floor(math.log10(min(positive))) - 0.0
    y_hi = math.ceil(math.log10(max(positive)) + 1e-9)
    y_hi = y_hi if y_hi > y_lo else y_lo + 1
    base = top + plot_h

    def y_of(v: float) -> float:
        if v <= 0:
            return base
        return base - zero_gap - (math.log10(v) - y_lo) / (y_hi - y_lo) * (plot_h - zero_gap)

    body: list[str] = []
    legend = [(PALETTE[i % len(PALETTE)], s.name, "line") for i, s in enumerate(sites)]
    body += _legend(left, 44, legend[:4])
    body += _legend(left, 62, [*legend[4:], ("#555", "with failover", "dash"), ("#c00", "tolerance", "line")])
    for power in range(int(y_lo), int(y_hi) + 1):
        y = y_of(10.0**power)
        body.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" stroke="#eee"/>')
        body.append(
            _text(
                left - 6,
                y + 4,
                money(10.0**power, params.currency).replace(f" {params.currency}", ""),
                10,
                "end",
            )
        )
    body.append(_text(left - 6, base + 4, "0", 10, "end"))
    body.append(f'<line x1="{left}" y1="{base}" x2="{left + plot_w}" y2="{base}" stroke="#999"/>')
    for d in durations:
        body.append(_text(x_of(d), base + 16, f"{d:g}", 10, "middle"))
    body.append(_text(left + plot_w / 2, base + 36, "outage duration (hours, log scale)", 11, "middle"))
    body.append(
        _text(
            16,
            top + plot_h / 2,
            f"loss ({params.currency}, log scale)",
            11,
            "middle",
            f'transform="rotate(-90 16 {top + plot_h / 2:.1f})"',
        )
    )
    tol_y = y_of(params.loss_tolerance)
    body.append(
        f'<line class="tolerance" x1="{left}" y1="{tol_y:.1f}" x2="{left + plot_w}" y2="{tol_y:.1f}" '
        f'stroke="#c00" stroke-width="1.5"/>'
    )
    body.append(
        _text(
            left + 4,
            tol_y - 4,
            f"tolerance {money(params.loss_tolerance, params.currency)}",
            10,
            extra='fill="#c00"',
        )
    )
    for i, s in enumerate(sites):
        colour = PALETTE[i % len(PALETTE)]
        for failover in (False, True):
            pts = [(p.duration_hours, p.worst_start_total) for p in s.losses if p.failover == failover]
            path = " ".join(f"{x_of(d):.2f},{y_of(v):.2f}" for d, v in pts)
            dash = ' stroke-dasharray="6 4"' if failover else ""
            flag = str(failover).lower()
            body.append(
                f'<polyline class="series" data-site="{escape(s.code)}" data-failover="{flag}" '
                f'points="{path}" fill="none" stroke="{colour}" stroke-width="2"{dash}/>'
            )
            for d, v in pts:
                body.append(
                    f'<circle class="mark" data-site="{escape(s.code)}" data-failover="{flag}" '
                    f'data-duration="{d:g}" data-value="{v:.2f}" cx="{x_of(d):.2f}" cy="{y_of(v):.2f}" '
                    f'r="3" fill="{colour}"><title>{escape(s.name)}, {d:g} h'
                    f"{' with failover' if failover else ''}: "
                    f"{escape(money(v, params.currency))}</title></circle>"
                )
    title = "Loss of one outage by duration (starting at the worst hour of the week)"
    return _svg("loss-curve", width, height, title, body)
