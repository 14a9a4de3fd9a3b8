"""Customer notices as rendered: snapshots of every form, the EUC-KR SMS size rule, escaping, time zones.

Snapshots live in tests/snapshots/notices/<case>/; run with UPDATE_SNAPSHOTS=1 to rewrite them after a
deliberate wording change, then read the diff before committing it.
"""

from __future__ import annotations

import itertools
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from jinja2 import UndefinedError
from markupsafe import escape

from control_plane.notices.letters import Cause, Letter, LetterOrder, NoticeKind
from control_plane.notices.render import (
    SMS_MAX_BYTES,
    TEMPLATES,
    format_day,
    render_email,
    render_sms,
    sms_kind,
    sms_size_bytes,
)

SNAPSHOTS = Path(__file__).parent / "snapshots" / "notices"
UPDATE_SNAPSHOTS = os.environ.get("UPDATE_SNAPSHOTS") == "1"

# 16:30 UTC on 2 Dec is 01:30 on Thu 3 Dec in Seoul: a day that differs between UTC and the letter's zone
PROMISED = datetime(2026, 12, 2, 16, 30, tzinfo=UTC)
ORDERS = (
    LetterOrder("o-1", "20261201-000123", PROMISED, datetime(2026, 12, 5, 3, 0, tzinfo=UTC)),
    LetterOrder("o-2", "20261201-000456", PROMISED, datetime(2026, 12, 6, 3, 0, tzinfo=UTC)),
    LetterOrder("o-3", "20261130-000789", datetime(2026, 12, 3, 5, 0, tzinfo=UTC), None),  # held
)
NUMBERS = [order.order_number for order in ORDERS]


def letter(
    locale: str = "ko",
    orders: tuple[LetterOrder, ...] = ORDERS[:1],
    kind: NoticeKind = NoticeKind.DELAY,
    name: str | None = None,
    cause: Cause = Cause.FULFILLMENT_CENTER,
    support_url: str = "https://shop.example.com/help",
) -> Letter:
    return Letter(
        kind=kind,
        customer_name=name if name is not None else ("김민지" if locale == "ko" else "Alex Kim"),
        locale="en" if locale == "en" else "ko",
        timezone="Asia/Seoul",
        cause=cause,
        orders=orders,
        support_url=support_url,
    )


CASES: dict[str, Letter] = {
    "ko_delay_one": letter("ko"),
    "ko_delay_three": letter("ko", ORDERS),
    "ko_delay_three_short_link": letter("ko", ORDERS, support_url="https://ex.kr/s"),
    "ko_back_on_track_one": letter("ko", kind=NoticeKind.BACK_ON_TRACK, cause=Cause.HIGH_DEMAND),
    "en_delay_one": letter("en"),
    "en_delay_three": letter("en", ORDERS, cause=Cause.DELIVERY_PARTNER),
    "en_delay_held": letter("en", ORDERS[2:], cause=Cause.HIGH_DEMAND),
    "en_back_on_track_one": letter("en", kind=NoticeKind.BACK_ON_TRACK, cause=Cause.HIGH_DEMAND),
}


def assert_matches_snapshot(path: Path, actual: str) -> None:
    # Stored with a final newline so editors and end-of-file fixers leave the files alone
    if UPDATE_SNAPSHOTS:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes((actual + "\n").encode())
        return
    assert path.exists(), f"no snapshot {path}: run with UPDATE_SNAPSHOTS=1 to write it"
    expected = path.read_bytes().decode()
    assert actual + "\n" == expected, f"{path} changed; if on purpose, rerun with UPDATE_SNAPSHOTS=1"


@pytest.mark.parametrize("case", sorted(CASES))
def test_rendered_notice_matches_its_snapshot(case: str) -> None:
    email, sms = render_email(CASES[case]), render_sms(CASES[case])
    assert_matches_snapshot(SNAPSHOTS / case / "subject.txt", email.subject)
    assert_matches_snapshot(SNAPSHOTS / case / "text.txt", email.text)
    assert_matches_snapshot(SNAPSHOTS / case / "email.html", email.html)
    assert_matches_snapshot(SNAPSHOTS / case / "sms.txt", sms.text)


# --- the EUC-KR size rule ---


def test_exactly_90_bytes_is_an_sms_and_91_an_lms() -> None:
    assert (sms_kind("a" * 90), sms_kind("a" * 91)) == ("sms", "lms")
    assert (sms_kind("가" * 45), sms_kind("가" * 45 + "a")) == ("sms", "lms")
    assert SMS_MAX_BYTES == 90


def test_hangul_syllable_counts_two_bytes_and_ascii_one() -> None:
    assert sms_size_bytes("가" * 45) == 90
    assert sms_size_bytes("주문 A-1") == 2 + 2 + 1 + 1 + 1 + 1


def test_syllable_missing_from_strict_euc_kr_still_counts_two_bytes() -> None:
    # 똠 is one of the syllables KS X 1001 lacks; Python's euc-kr spells it as an 8-byte make-up sequence
    assert len("똠".encode("euc-kr")) == 8
    assert sms_size_bytes("똠") == 2


def test_character_without_euc_kr_code_counts_two_bytes() -> None:
    assert sms_size_bytes("🙂") == 2
    assert sms_size_bytes("a🙂가") == 1 + 2 + 2


@given(st.text())
def test_sms_kind_follows_the_byte_count(text: str) -> None:
    assert sms_kind(text) == ("sms" if sms_size_bytes(text) <= SMS_MAX_BYTES else "lms")


@given(st.text())
def test_every_character_counts_one_or_two_bytes(text: str) -> None:
    assert len(text) <= sms_size_bytes(text) <= 2 * len(text)


@given(st.text(), st.text())
def test_byte_count_adds_up_over_concatenation(a: str, b: str) -> None:
    assert sms_size_bytes(a + b) == sms_size_bytes(a) + sms_size_bytes(b)


# --- what the notices say ---


def test_script_in_customer_name_is_escaped_in_html_and_plain_in_text_and_sms() -> None:
    name = "<script>alert(1)</script>"
    # a link too long for the short SMS keeps the full one, which greets the customer by name
    given_letter = letter("en", name=name, support_url="https://shop.example.com/help/delivery-delays")
    email, sms = render_email(given_letter), render_sms(given_letter)
    assert "<script>" not in email.html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in email.html
    assert name in email.text
    assert name in sms.text


@given(st.text(max_size=40))
def test_any_customer_name_reaches_html_only_escaped(name: str) -> None:
    email = render_email(letter("ko", name=name))
    assert str(escape(name)) in email.html
    assert name in email.text


def test_days_are_shown_in_the_letter_time_zone() -> None:
    assert format_day(PROMISED, "ko", "Asia/Seoul") == "12월 3일 (목)"
    assert format_day(PROMISED, "en", "Asia/Seoul") == "Thu 3 Dec"
    assert format_day(PROMISED, "ko", "UTC") == "12월 2일 (수)"
    text = render_email(letter("ko")).text
    assert "12월 3일 (목)" in text
    assert "12월 2일" not in text


def test_naive_datetime_is_refused_rather_than_read_as_local_time() -> None:
    with pytest.raises(ValueError, match="naive"):
        format_day(datetime(2026, 12, 2, 16, 30), "ko", "Asia/Seoul")


@pytest.mark.parametrize("locale", ["ko", "en"])
def test_email_names_every_order_in_text_and_html(locale: str) -> None:
    email = render_email(letter(locale, ORDERS))
    for number in NUMBERS:
        assert number in email.text
        assert number in email.html


@pytest.mark.parametrize(
    ("locale", "phrase"),
    [("ko", "확정되는 대로 다시 알려드리겠습니다"), ("en", "we will tell you as soon as we know")],
)
def test_held_order_says_its_new_date_will_follow(locale: str, phrase: str) -> None:
    email = render_email(letter(locale, ORDERS[2:]))
    assert phrase in email.text
    assert phrase in email.html


@pytest.mark.parametrize("locale", ["ko", "en"])
def test_html_declares_its_language_and_lists_orders_in_a_table(locale: str) -> None:
    html = render_email(letter(locale, ORDERS)).html
    assert f'<html lang="{locale}">' in html
    assert html.count('<th scope="row"') == len(ORDERS)


@pytest.mark.parametrize(("locale", "more"), [("ko", "외 2건"), ("en", "and 2 more")])
def test_sms_shortens_to_first_order_and_count_when_that_makes_it_one_sms(locale: str, more: str) -> None:
    sms = render_sms(letter(locale, ORDERS, support_url="https://ex.kr/s"))
    assert (sms.kind, sms.size_bytes) == ("sms", sms_size_bytes(sms.text))
    assert sms.size_bytes <= SMS_MAX_BYTES
    assert f"{NUMBERS[0]} {more}" in sms.text


def test_sms_too_long_even_when_short_goes_in_full_as_lms() -> None:
    sms = render_sms(letter("ko", ORDERS, support_url="https://shop.example.com/" + "help/" * 10))
    assert sms.kind == "lms"
    assert sms.size_bytes == sms_size_bytes(sms.text) > SMS_MAX_BYTES
    assert all(number in sms.text for number in NUMBERS)


@pytest.mark.parametrize(
    ("locale", "kind", "cause"), list(itertools.product(["ko", "en"], list(NoticeKind), list(Cause)))
)
def test_every_cause_renders_in_every_language_and_kind(locale: str, kind: NoticeKind, cause: Cause) -> None:
    given_letter = letter(locale, ORDERS, kind=kind, cause=cause)
    email, sms = render_email(given_letter), render_sms(given_letter)
    assert email.subject and "\n" not in email.subject
    assert email.text and email.html and sms.text
    assert cause.value not in email.text + email.html + sms.text  # plain words, not the enum


def test_template_fails_loudly_on_a_missing_value() -> None:
    with pytest.raises(UndefinedError):
        TEMPLATES.get_template("en/delay/subject.j2").render()


def test_letter_without_orders_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one order"):
        render_email(letter("ko", orders=()))
