"""Which order lines an integration touches, and which of those its fallback can take over.

An integration's scope is "all", or a list naming sites and channels; a site that lists the
integration in `depends_on` needs it too. A line is in scope when its site or channel is.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from control_plane.domain import Integration, World


@dataclass(frozen=True, slots=True)
class Scope:
    everything: bool
    sites: frozenset[str]
    channels: frozenset[str]

    @property
    def key(self) -> str:
        """A canonical name, so integrations with the same effective scope are aggregated once."""
        if self.everything:
            return "all"
        return "sites=" + ",".join(sorted(self.sites)) + ";channels=" + ",".join(sorted(self.channels))

    def expr(self) -> pl.Expr:
        if self.everything:
            return pl.lit(True)
        return pl.col("site").is_in(sorted(self.sites)) | pl.col("channel").is_in(sorted(self.channels))


EVERYTHING = Scope(True, frozenset(), frozenset())


def integration_scope(integration: Integration, world: World) -> Scope:
    """The effective scope: its own scope plus every site that depends on it."""
    site_codes = {s.code for s in world.sites}
    if "all" in integration.scope:
        return Scope(True, frozenset(site_codes), frozenset())
    named = set(integration.scope)
    sites = (named & site_codes) | {s.code for s in world.sites if integration.code in s.depends_on}
    channels = named - site_codes
    if sites == site_codes:  # every site needs it: every order does
        return Scope(True, frozenset(site_codes), frozenset())
    return Scope(False, frozenset(sites), frozenset(channels))


@dataclass(frozen=True, slots=True)
class Coverage:
    """Lines in the integration's scope that its fallback also serves."""

    scope: Scope
    fallback: Scope

    @property
    def effective(self) -> Scope | None:
        """The covered lines as a plain scope when one side covers everything, else None."""
        if self.fallback.everything:
            return self.scope
        if self.scope.everything:
            return self.fallback
        return None

    @property
    def key(self) -> str:
        # Same lines, same key: a fallback serving everything covers exactly the integration's scope.
        plain = self.effective
        return plain.key if plain is not None else f"{self.scope.key}&{self.fallback.key}"

    def expr(self) -> pl.Expr:
        plain = self.effective
        return plain.expr() if plain is not None else self.scope.expr() & self.fallback.expr()


def fallback_coverage(integration: Integration, world: World) -> Coverage | None:
    """The part of the integration's orders its fallback can carry, or None without a fallback."""
    if integration.fallback is None:
        return None
    by_code = {i.code: i for i in world.integrations}
    fallback = by_code.get(integration.fallback)
    if fallback is None:
        return None
    return Coverage(integration_scope(integration, world), integration_scope(fallback, world))
