"""Silences: matchers (equal, regex, negated) over an alert's labels, within a time window."""

from __future__ import annotations

from datetime import timedelta

import pytest

from control_plane.alerting.silence_rules import Matcher, Silence, active_silences, muting_silences
from control_plane.domain import InvalidInput

from factories import NOW

LABELS = {"alertname": "SiteDown", "severity": "critical", "site": "icheon"}
HOUR = timedelta(hours=1)


def silence(*matchers: Matcher, sid: str = "sil-1") -> Silence:
    return Silence(sid, matchers, NOW, NOW + HOUR, "ops@example.com", "DC maintenance")


def test_an_equality_matcher_matches_the_exact_value() -> None:
    assert Matcher("site", "icheon").matches(LABELS)
    assert not Matcher("site", "icheon-2").matches(LABELS)


def test_a_regex_matcher_must_match_the_whole_value() -> None:
    assert Matcher("site", "ich.*", is_regex=True).matches(LABELS)
    assert not Matcher("site", "ich", is_regex=True).matches(LABELS)


def test_a_negated_matcher_matches_other_values() -> None:
    assert Matcher("site", "busan", is_equal=False).matches(LABELS)
    assert not Matcher("site", "icheon|busan", is_regex=True, is_equal=False).matches(LABELS)


def test_a_missing_label_matches_as_the_empty_string() -> None:
    assert Matcher("channel", "").matches(LABELS)
    assert not Matcher("channel", "email").matches(LABELS)


def test_a_silence_mutes_only_when_every_matcher_matches() -> None:
    both = silence(Matcher("alertname", "SiteDown"), Matcher("site", "icheon"))
    other_site = silence(Matcher("alertname", "SiteDown"), Matcher("site", "busan"))
    assert both.mutes(LABELS, NOW)
    assert not other_site.mutes(LABELS, NOW)


def test_a_silence_mutes_only_inside_its_window() -> None:
    sil = silence(Matcher("site", "icheon"))
    assert not sil.mutes(LABELS, NOW - timedelta(seconds=1))
    assert sil.mutes(LABELS, NOW + HOUR - timedelta(seconds=1))
    assert not sil.mutes(LABELS, NOW + HOUR)


def test_muting_silences_names_each_silence_that_applies() -> None:
    sils = [silence(Matcher("site", "icheon"), sid="a"), silence(Matcher("site", "busan"), sid="b")]
    assert muting_silences(LABELS, sils, NOW) == ["a"]


def test_active_silences_leaves_out_expired_and_future_ones() -> None:
    sils = [silence(Matcher("site", "icheon"), sid="now")]
    assert [s.id for s in active_silences(sils, NOW + 2 * HOUR)] == []
    assert [s.id for s in active_silences(sils, NOW)] == ["now"]


def test_an_invalid_regex_is_refused_naming_the_field() -> None:
    with pytest.raises(InvalidInput) as exc:
        Matcher("site", "ich(", is_regex=True)
    assert [e.path for e in exc.value.errors] == ["value"]


def test_a_silence_without_matchers_or_with_an_empty_window_is_refused() -> None:
    with pytest.raises(InvalidInput) as exc:
        Silence("s", (), NOW, NOW, "ops")
    assert {e.path for e in exc.value.errors} == {"matchers", "ends_at"}
