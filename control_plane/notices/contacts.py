"""Customer contact data, pure: masking addresses and phone numbers for logs, Korean numbers to E.164.

Small on purpose (no `phonenumbers`): drctl's customers are in Korea, so national numbers are read
as Korean; a number written with a leading `+` is taken as international whatever its country.
"""

from __future__ import annotations

import re

# what people put between digits: `010-1234-5678`, `010 1234 5678`, `(02) 123-4567`, `010.1234.5678`
_SEPARATORS = re.compile(r"[ \t\-.()]")
_CALLING_CODES = {"KR": "82"}
# E.164: `+`, a country code not starting with 0, at most 15 digits in all (8 is the shortest we take)
_E164 = re.compile(r"\+[1-9][0-9]{7,14}")
# a Korean number after its trunk `0`: mobile 10-19 (9-10 digits), Seoul 2 (8-9), areas and 070/050x
_KR_NATIONAL = re.compile(r"[1-7][0-9]{7,9}")


def mask_email(address: str) -> str:
    """`kim.minsu@example.com` -> `k***@example.com`: the first letter and the domain stay."""
    local, at, domain = address.strip().rpartition("@")
    if not at or not domain:
        return "***"
    return f"{local[:1]}***@{domain}"


def mask_phone(phone: str) -> str:
    """`+821012345678` -> `+82******5678`: the country code and the last 4 digits stay.

    Read as E.164 (or a Korean national number); the first two digits after `+` are kept as the
    country code, which for a one-digit code (`+1`) shows one more digit. Anything that is not a
    phone number shows nothing but its last 4 digits.
    """
    e164 = to_e164(phone)
    if e164 is None:
        digits = re.sub(r"[^0-9]", "", phone)
        return "***" + digits[-4:] if len(digits) >= 8 else "***"
    return e164[:3] + "*" * (len(e164) - 7) + e164[-4:]


def mask_contact(to: str) -> str:
    """Mask whatever an `Envelope.to` holds: an e-mail address, a phone number; a customer id as is."""
    if "@" in to:
        return mask_email(to)
    if to_e164(to) is not None:
        return mask_phone(to)
    return to


def to_e164(phone: str, default_country: str = "KR") -> str | None:
    """A phone number as E.164 (`+821012345678`), or None if it is not one.

    Takes `010-1234-5678`, `01012345678`, `+82 10-1234-5678` and `+82 010-1234-5678` (the trunk
    `0` written after the country code, as people often do). National numbers are read as numbers
    of `default_country`; only "KR" is known.
    """
    calling_code = _CALLING_CODES.get(default_country)
    if calling_code is None:
        raise ValueError(f"no national numbering known for {default_country!r}")
    compact = _SEPARATORS.sub("", phone.strip())
    if compact.startswith("+"):
        if compact.startswith("+" + calling_code):
            national = compact[1 + len(calling_code) :].removeprefix("0")
            return _national_to_e164(national, calling_code)
        return compact if _E164.fullmatch(compact) else None
    if not compact.startswith("0"):
        return None  # a national number starts with the trunk 0; bare digits are ambiguous
    return _national_to_e164(compact[1:], calling_code)


def _national_to_e164(national: str, calling_code: str) -> str | None:
    if not _KR_NATIONAL.fullmatch(national):
        return None
    return f"+{calling_code}{national}"
