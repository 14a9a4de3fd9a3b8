"""The commerce calendar (pure): which peak window holds an instant; bad files named by path."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from control_plane.domain import InvalidInput
from control_plane.drills.calendar import load_calendar, parse_calendar
from control_plane.drills.service import peak_window_refusal

SEOUL = ZoneInfo("Asia/Seoul")


def at(y: int, m: int, d: int, h: int = 0, minute: int = 0, zone: ZoneInfo = SEOUL) -> datetime:
    return datetime(y, m, d, h, minute, tzinfo=zone)


CAL = parse_calendar(
    {
        "timezone": "Asia/Seoul",
        "windows": [
            {"name": "11.11 sale", "every_year": "11-11"},
            {"name": "year-end", "every_year": "12-31", "days": 2},
            {"name": "leap sale", "every_year": "02-29"},
            {"name": "Black Friday week", "start": "2026-11-27T00:00", "end": "2026-12-01T00:00"},
        ],
    }
)


@pytest.mark.parametrize(
    ("instant", "window"),
    [
        (at(2026, 11, 11, 0, 0), "11.11 sale"),
        (at(2027, 11, 11, 23, 59), "11.11 sale"),  # every year
        (at(2026, 11, 12, 0, 0), None),  # the end is exclusive
        (at(2026, 11, 10, 23, 59), None),
        (at(2026, 11, 10, 15, 30, UTC), "11.11 sale"),  # 00:30 on 11-11 in Seoul
        (at(2027, 1, 1, 12), "year-end"),  # last year's window runs into the new year
        (at(2027, 1, 2, 0), None),
        (at(2028, 2, 29, 8), "leap sale"),
        (at(2027, 3, 1, 8), None),  # no 02-29 in 2027: nothing, no error
        (at(2026, 11, 30, 23, 0), "Black Friday week"),
        (at(2026, 12, 1, 0, 0), None),
        (at(2027, 11, 28, 12), None),  # a dated window is once
    ],
)
def test_window_at(instant: datetime, window: str | None) -> None:
    found = CAL.window_at(instant)
    assert (found.name if found else None) == window


def test_the_refusal_names_the_window_in_local_time() -> None:
    refusal = peak_window_refusal(CAL, at(2026, 11, 11, 9))
    assert refusal is not None and refusal.rule == "peak_window"
    assert "11.11 sale (2026-11-11 00:00 to 2026-11-12 00:00 Asia/Seoul)" in str(refusal)
    assert peak_window_refusal(CAL, at(2026, 11, 13, 9)) is None


@pytest.mark.parametrize(
    ("windows", "says"),
    [
        ([{"name": "x", "start": "9999-01-01T00:00", "end": "9999-01-02T00:00"}], "year 9999"),
        ([{"name": "x", "start": "2026-01-02T00:00", "end": "2026-01-01T00:00"}], "end must be after start"),
        ([{"name": "x", "start": "2026-01-01T00:00", "end": "2026-06-01T00:00"}], "at most 62 days"),
        ([{"name": "x", "every_year": "02-30"}], "not a day of the year"),
        ([{"name": "x", "every_year": "11/11"}], "windows.0.every_year"),
        ([{"name": "x"}], "either every_year"),
        ([{"name": "x", "every_year": "11-11", "start": "2026-11-11T00:00"}], "either every_year"),
        ([{"name": "x", "every_year": "11-11", "dayz": 3}], "windows.0.dayz"),  # a typo'd key
        ([{"name": "sale\x07", "every_year": "11-11"}], "control character"),
    ],
)
def test_a_bad_window_is_refused_with_its_path(windows: list[dict[str, object]], says: str) -> None:
    with pytest.raises(InvalidInput, match=says):
        parse_calendar({"windows": windows}, "cal.yaml")


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="not found"):
        load_calendar(tmp_path / "nope.yaml")
    (tmp_path / "bad.yaml").write_text("windows: [\n")
    with pytest.raises(InvalidInput, match="not YAML"):
        load_calendar(tmp_path / "bad.yaml")
    (tmp_path / "zone.yaml").write_text("timezone: Mars/Olympus\n")
    with pytest.raises(InvalidInput, match="unknown time zone"):
        load_calendar(tmp_path / "zone.yaml")
    (tmp_path / "empty.yaml").write_text("")
    assert load_calendar(tmp_path / "empty.yaml").window_at(at(2026, 11, 11)) is None


def test_the_sample_calendar_parses_and_holds_11_11() -> None:
    cal = load_calendar(Path(__file__).parents[1] / "examples/kr-retail/commerce-calendar.yaml")
    found = cal.window_at(at(2030, 11, 11, 20))
    assert found is not None and found.name == "11.11 sale"
