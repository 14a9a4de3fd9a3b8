"""Render a Letter into what the customer reads: e-mail subject, text, HTML and an SMS, in Korean or English.

The wording lives in the templates under `templates/<locale>/<kind>/`; this module prepares the values they
show (dates as the customer's calendar day, the cause in plain words) and picks the SMS form.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, Final, Literal
from zoneinfo import ZoneInfo

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from control_plane.notices.letters import Cause, Letter, RenderedEmail, RenderedSms

SMS_MAX_BYTES: Final = 90  # Korean carriers: up to 90 bytes (EUC-KR) is a short SMS, longer is an LMS

Locale = Literal["ko", "en"]

# Built once: the templates never change at run time, and a test can render them directly.
TEMPLATES: Final = Environment(
    loader=PackageLoader("control_plane.notices", "templates"),
    # "html.j2" too: select_autoescape matches how a name ends, and "x.html.j2" ends in ".j2", not ".html"
    autoescape=select_autoescape(
        enabled_extensions=("html", "html.j2"), default_for_string=False, default=False
    ),
    undefined=StrictUndefined,
    # packaged templates change only with a release: no stat() of the file on every render
    auto_reload=False,
    trim_blocks=True,
    lstrip_blocks=True,
)

# Korean takes its particle inside the phrase: 로 or 으로 depends on the last syllable, so a template
# cannot append one. English phrases are noun phrases ("Because of ...", "delayed by ...").
_CAUSES: Final[Mapping[str, Mapping[Cause, str]]] = {
    "ko": {
        Cause.FULFILLMENT_CENTER: "물류센터 운영 차질로",
        Cause.DELIVERY_PARTNER: "배송 협력사의 운영 차질로",
        Cause.HIGH_DEMAND: "주문량 급증으로",
    },
    "en": {
        Cause.FULFILLMENT_CENTER: "a disruption at one of our fulfillment centers",
        Cause.DELIVERY_PARTNER: "a disruption at one of our delivery partners",
        Cause.HIGH_DEMAND: "unusually high demand",
    },
}

# Spelled out rather than strftime("%a"/"%b"), which follows the process's C locale.
_KO_WEEKDAYS: Final = ("월", "화", "수", "목", "금", "토", "일")
_EN_WEEKDAYS: Final = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_EN_MONTHS: Final = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@dataclass(frozen=True, slots=True)
class _OrderLine:
    number: str
    promised_day: str
    new_day: str | None  # None: not known yet (held)


@dataclass(frozen=True, slots=True)
class _View:
    """Everything a template may show; a name missing here fails the render (StrictUndefined)."""

    locale: str
    customer_name: str
    cause: str
    orders: tuple[_OrderLine, ...]
    first: _OrderLine
    more: int  # orders after the first, for "외 N건" / "and N more"
    latest_day: str | None  # the last new date of all orders; None when any is not known yet
    support_url: str


def format_day(moment: datetime, locale: Locale, timezone: str) -> str:
    """Show an instant as the customer's calendar day and weekday: "12월 3일 (목)", "Thu 3 Dec"."""
    if moment.tzinfo is None:
        # astimezone() would read a naive value as the machine's local time and shift the day silently
        raise ValueError(f"naive datetime {moment.isoformat()}: letters carry aware UTC datetimes")
    day = moment.astimezone(ZoneInfo(timezone))
    if locale == "ko":
        return f"{day.month}월 {day.day}일 ({_KO_WEEKDAYS[day.weekday()]})"
    return f"{_EN_WEEKDAYS[day.weekday()]} {day.day} {_EN_MONTHS[day.month - 1]}"


def sms_size_bytes(text: str) -> int:
    """Count `text` as Korean carriers do, in EUC-KR bytes: 1 per ASCII character, 2 per Hangul syllable."""
    # cp949 is EUC-KR plus the 8,822 Hangul syllables KS X 1001 lacks, each also 2 bytes as carriers
    # count them; Python's "euc-kr" codec would spell those as 8-byte make-up sequences instead.
    try:
        return len(text.encode("cp949"))
    except UnicodeEncodeError:
        return sum(_char_size(char) for char in text)


def _char_size(char: str) -> int:
    try:
        return len(char.encode("cp949"))
    except UnicodeEncodeError:
        # No EUC-KR code (emoji, most other scripts): gateways replace, drop or refuse it, so its cost
        # is not knowable here. Two bytes, like every other non-ASCII character, never counts it as
        # cheaper than a Hangul syllable.
        return 2


def sms_kind(text: str) -> Literal["sms", "lms"]:
    """Tell whether `text` goes as a short SMS (<= 90 bytes) or a long LMS."""
    return "sms" if sms_size_bytes(text) <= SMS_MAX_BYTES else "lms"


def render_email(letter: Letter) -> RenderedEmail:
    """Render the e-mail: a one-line subject, a plain-text body and an HTML body naming every order."""
    context = _context(letter)
    # A subject is one header line whatever the data holds
    subject = " ".join(_render(letter, "subject.j2", context).split())
    return RenderedEmail(
        subject=subject,
        text=_render(letter, "text.j2", context),
        html=_render(letter, "email.html.j2", {**context, "subject": subject}),
    )


def render_sms(letter: Letter) -> RenderedSms:
    """Render the SMS: the full message when it fits one SMS, else the short form when that fits, else
    the full message as an LMS (priced the same whatever its length, so it may as well say everything)."""
    context = _context(letter)
    text = _render(letter, "sms.j2", {**context, "short": False})
    if sms_kind(text) == "lms":
        short = _render(letter, "sms.j2", {**context, "short": True})
        if sms_kind(short) == "sms":
            text = short
    return RenderedSms(text=text, kind=sms_kind(text), size_bytes=sms_size_bytes(text))


def _render(letter: Letter, part: str, context: Mapping[str, Any]) -> str:
    return TEMPLATES.get_template(f"{letter.locale}/{letter.kind}/{part}").render(context)


def _context(letter: Letter) -> dict[str, Any]:
    if not letter.orders:
        raise ValueError("a letter names at least one order")
    lines = tuple(
        _OrderLine(
            number=order.order_number,
            promised_day=format_day(order.promised_by, letter.locale, letter.timezone),
            new_day=None
            if order.new_eta is None
            else format_day(order.new_eta, letter.locale, letter.timezone),
        )
        for order in letter.orders
    )
    etas = [order.new_eta for order in letter.orders]
    known = [eta for eta in etas if eta is not None]
    view = _View(
        locale=letter.locale,
        customer_name=letter.customer_name,
        cause=_CAUSES[letter.locale][letter.cause],
        orders=lines,
        first=lines[0],
        more=len(lines) - 1,
        latest_day=format_day(max(known), letter.locale, letter.timezone)
        if len(known) == len(etas)
        else None,
        support_url=letter.support_url,
    )
    # Shallow on purpose: the order lines stay objects for the templates
    return {f.name: getattr(view, f.name) for f in fields(view)}
