"""Which sites and sales channels an integration outage leaves unable to work (pure).

Rules (DESIGN §3: "an integration that is down and has no healthy fallback impairs every
site/channel that depends on it"), made precise:

- A site depends on the integrations in its `depends_on` and on those whose `scope` names it
  explicitly. A channel depends on the integrations whose `scope` names it (any scope entry that
  is not a site code is a channel, e.g. coupang's `[coupang]`). Scope `all` adds no dependency by
  itself: in the sample world payments and notifications are `all`, and a payment or e-mail
  outage must not stop a DC from shipping.
- Only `down` counts as an outage. `unknown` (not yet probed, e.g. just after start) and
  `degraded` do not: impairing every site on start-up would hold every order.
- A down dependency is covered when some *alternative* is usable for the subject, i.e. not down
  and its scope is `all` or names the subject. Alternatives are the dependency's fallback chain
  (followed transitively, cycles ignored: CJ falls back to Hanjin, Hanjin back to CJ) and the
  subject's other dependencies of the same kind (a DC that lists two carriers ships with either).
- A subject with at least one uncovered down dependency is impaired; the reasons name each one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from control_plane.domain import Health, Integration, Site, SiteState


@dataclass(frozen=True, slots=True)
class Impairment:
    """One subject (site or channel) left without a usable `integration`."""

    subject: str
    integration: str
    reason: str


def site_impairments(
    sites: Sequence[Site], integrations: Sequence[Integration], health: Mapping[str, Health]
) -> list[Impairment]:
    """Every (site, down integration) pair with no usable alternative, in site order."""
    by_code = {i.code: i for i in integrations}
    found: list[Impairment] = []
    for site in sites:
        deps = _ordered_unique([*site.depends_on, *(i.code for i in integrations if site.code in i.scope)])
        found.extend(_impairments_of(site.code, deps, by_code, health))
    return found


def channel_impairments(
    sites: Sequence[Site], integrations: Sequence[Integration], health: Mapping[str, Health]
) -> list[Impairment]:
    """Every (channel, down integration) pair with no usable alternative, in channel order."""
    by_code = {i.code: i for i in integrations}
    found: list[Impairment] = []
    for channel in channels_of(sites, integrations):
        deps = [i.code for i in integrations if channel in i.scope]
        found.extend(_impairments_of(channel, deps, by_code, health))
    return found


def impaired_sites(
    sites: Sequence[Site], integrations: Sequence[Integration], health: Mapping[str, Health]
) -> dict[str, list[str]]:
    """Impaired site code -> reasons; sites that can ship are absent."""
    return _group(site_impairments(sites, integrations, health))


def impaired_channels(
    sites: Sequence[Site], integrations: Sequence[Integration], health: Mapping[str, Health]
) -> dict[str, list[str]]:
    """Impaired channel code -> reasons; channels that can take orders are absent."""
    return _group(channel_impairments(sites, integrations, health))


def sites_impaired_by(
    sites: Sequence[Site], integrations: Sequence[Integration], health: Mapping[str, Health]
) -> dict[str, list[str]]:
    """Down integration code -> the sites it leaves impaired (for `GET /v1/integrations`)."""
    by_integration: dict[str, list[str]] = {}
    for imp in site_impairments(sites, integrations, health):
        by_integration.setdefault(imp.integration, []).append(imp.subject)
    return by_integration


def channels_of(sites: Sequence[Site], integrations: Sequence[Integration]) -> list[str]:
    """Channel codes named in integration scopes (scope entries that are neither `all` nor a site)."""
    site_codes = {s.code for s in sites}
    return _ordered_unique(
        code for i in integrations for code in i.scope if code != "all" and code not in site_codes
    )


def mark_impaired(states: Sequence[SiteState], impaired: Mapping[str, object]) -> list[SiteState]:
    """Return `states` with `impaired` set from `impaired_sites(...)` (routing reads the flag)."""
    return [
        s if s.impaired == (s.site.code in impaired) else replace(s, impaired=s.site.code in impaired)
        for s in states
    ]


def _impairments_of(
    subject: str,
    deps: Sequence[str],
    by_code: Mapping[str, Integration],
    health: Mapping[str, Health],
) -> list[Impairment]:
    found: list[Impairment] = []
    for code in deps:
        integration = by_code.get(code)
        # An unknown code is the world file's problem (it is validated on load), not an outage.
        if integration is None or not _is_down(code, health):
            continue
        tried = _alternatives(integration, deps, by_code)
        if any(_usable(by_code[alt], subject, health) for alt in tried):
            continue
        found.append(Impairment(subject, code, _reason(integration, subject, tried, by_code, health)))
    return found


def _alternatives(
    integration: Integration, deps: Sequence[str], by_code: Mapping[str, Integration]
) -> list[str]:
    """The fallback chain first (in order), then the subject's other same-kind dependencies."""
    chain: list[str] = []
    seen = {integration.code}
    nxt = integration.fallback
    while nxt is not None and nxt not in seen and nxt in by_code:
        chain.append(nxt)
        seen.add(nxt)
        nxt = by_code[nxt].fallback
    same_kind = [d for d in deps if d not in seen and d in by_code and by_code[d].kind is integration.kind]
    return _ordered_unique([*chain, *same_kind])


def _usable(integration: Integration, subject: str, health: Mapping[str, Health]) -> bool:
    return not _is_down(integration.code, health) and (
        "all" in integration.scope or subject in integration.scope
    )


def _is_down(code: str, health: Mapping[str, Health]) -> bool:
    return health.get(code, Health.UNKNOWN) is Health.DOWN


def _reason(
    integration: Integration,
    subject: str,
    tried: Sequence[str],
    by_code: Mapping[str, Integration],
    health: Mapping[str, Health],
) -> str:
    head = f"{integration.kind.value} {integration.code} is down"
    if not tried:
        return f"{head} and has no fallback"
    why = [f"{alt} is down" if _is_down(alt, health) else f"{alt} does not serve {subject}" for alt in tried]
    return f"{head} and no alternative is usable ({'; '.join(why)})"


def _group(impairments: Iterable[Impairment]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for imp in impairments:
        grouped.setdefault(imp.subject, []).append(imp.reason)
    return grouped


def _ordered_unique(codes: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(codes))
