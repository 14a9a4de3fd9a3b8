"""The commerce calendar: peak windows (sale days) when no chaos drill may start unless forced.

A YAML file, named by `DRCTL_COMMERCE_CALENDAR` or `drctl drill run --calendar`:

    timezone: Asia/Seoul
    windows:
      - {name: "11.11 sale", every_year: "11-11"}              # that whole day, every year
      - {name: "Chuseok", every_year: "09-24", days: 3}
      - {name: "Black Friday week", start: 2026-11-27T00:00, end: 2026-12-01T00:00}

Local times are in the calendar's time zone. Pure: parsing and the question "which window holds
this instant" only; the CLI and the API decide what to refuse.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Annotated, Any, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from control_plane.domain import FieldError, InvalidInput

MAX_WINDOW_DAYS = 62  # a "peak" longer than two months is a typo, and would block every drill
EARLIEST, LATEST = 2000, 2100  # years a calendar may name


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Window(_Strict):
    name: Annotated[str, Field(min_length=1, max_length=200)]
    every_year: Annotated[str, Field(pattern=r"^\d\d-\d\d$")] | None = Field(
        default=None, description="MM-DD: that day every year, from local midnight"
    )
    days: Annotated[int, Field(ge=1, le=MAX_WINDOW_DAYS)] = 1
    start: datetime | None = None
    end: datetime | None = None

    @field_validator("name")
    @classmethod
    def _printable(cls, value: str) -> str:
        if not value.isprintable():
            raise ValueError("the name has a control character")
        return value

    @field_validator("every_year")
    @classmethod
    def _real_day(cls, value: str | None) -> str | None:
        if value is not None:
            month, day = (int(x) for x in value.split("-"))
            try:
                date(2024, month, day)  # a leap year: 02-29 is a real sale day
            except ValueError:
                raise ValueError(f"{value} is not a day of the year (MM-DD)") from None
        return value

    @field_validator("start", "end")
    @classmethod
    def _sane_year(cls, value: datetime | None) -> datetime | None:
        if value is not None and not EARLIEST <= value.year <= LATEST:
            raise ValueError(f"year {value.year} is outside {EARLIEST}-{LATEST}")
        return value

    @model_validator(mode="after")
    def _one_form(self) -> Self:
        dated = self.start is not None or self.end is not None
        if (self.every_year is None) == (not dated) or (dated and (self.start is None or self.end is None)):
            raise ValueError("give either every_year (with optional days) or both start and end")
        if dated and self.days != 1:
            raise ValueError("days goes with every_year; a dated window has its end")
        if self.start is not None and self.end is not None:
            start, end = _aware(self.start, UTC), _aware(self.end, UTC)
            if end <= start:
                raise ValueError("end must be after start")
            if end - start > timedelta(days=MAX_WINDOW_DAYS):
                raise ValueError(f"a window is at most {MAX_WINDOW_DAYS} days")
        return self


class CalendarFile(_Strict):
    timezone: str = "UTC"
    windows: list[Window] = Field(default_factory=list, max_length=500)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (an IANA name such as Asia/Seoul)") from None
        return value


@dataclass(frozen=True, slots=True)
class PeakWindow:
    """One occurrence of a window: the instant it starts and ends (aware datetimes)."""

    name: str
    start: datetime
    end: datetime

    def describe(self, zone: tzinfo) -> str:
        fmt = "%Y-%m-%d %H:%M"
        start, end = self.start.astimezone(zone), self.end.astimezone(zone)
        return f"{self.name} ({start:{fmt}} to {end:{fmt}} {zone})"


@dataclass(frozen=True, slots=True)
class CommerceCalendar:
    zone: ZoneInfo
    windows: tuple[Window, ...] = ()

    def window_at(self, at: datetime) -> PeakWindow | None:
        """The peak window that holds the instant `at` (aware), if any."""
        for occurrence in self._occurrences_around(at):
            if occurrence.start <= at < occurrence.end:
                return occurrence
        return None

    def _occurrences_around(self, at: datetime) -> Iterable[PeakWindow]:
        local_year = at.astimezone(self.zone).year
        for w in self.windows:
            if w.every_year is None:
                assert w.start is not None and w.end is not None
                yield PeakWindow(w.name, _aware(w.start, self.zone), _aware(w.end, self.zone))
                continue
            month, day = (int(x) for x in w.every_year.split("-"))
            # last year's occurrence may still run (a 3-day window from 12-31)
            for year in (local_year - 1, local_year):
                try:
                    first = datetime(year, month, day, tzinfo=self.zone)
                except ValueError:
                    continue  # 02-29 in a year without it
                yield PeakWindow(w.name, first, first + timedelta(days=w.days))


EMPTY = CommerceCalendar(ZoneInfo("UTC"))


def _aware(value: datetime, zone: tzinfo) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=zone)


def parse_calendar(data: Any, source: str = "calendar") -> CommerceCalendar:
    try:
        parsed = CalendarFile.model_validate(data if data is not None else {})
    except ValidationError as exc:
        errors = [
            FieldError(".".join(str(p) for p in e["loc"]) or "(file)", e["msg"].removeprefix("Value error, "))
            for e in exc.errors()
        ]
        listed = "; ".join(f"{e.path}: {e.message}" for e in errors)
        raise InvalidInput(f"{source}: {listed}", errors) from None
    return CommerceCalendar(ZoneInfo(parsed.timezone), tuple(parsed.windows))


def load_calendar(path: Path) -> CommerceCalendar:
    """Read a calendar file; a missing or malformed one is InvalidInput naming the path."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidInput(f"commerce calendar {path} not found") from None
    except OSError as exc:
        raise InvalidInput(f"commerce calendar {path}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InvalidInput(f"commerce calendar {path}: not YAML ({type(exc).__name__})") from None
    return parse_calendar(data, str(path))
