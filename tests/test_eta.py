"""The ETA model of DESIGN §3: handling + base + distance / speed."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from control_plane.domain import GeoPoint
from failover.eta import EtaModel, haversine_km

from factories import NOW, site


def test_haversine_seoul_to_busan_is_about_325_km() -> None:
    # Seoul City Hall to Busan City Hall: about 325 km great-circle
    assert haversine_km(GeoPoint(37.5663, 126.9779), GeoPoint(35.1798, 129.0750)) == pytest.approx(325, abs=5)


def test_eta_adds_handling_base_and_transit() -> None:
    dc = site(lat=37.0, lon=127.0, handling_hours=3.0)
    dest = GeoPoint(38.0, 127.0)  # one degree of latitude north: 111.2 km
    model = EtaModel(base_hours=6.0, km_per_hour=60.0)
    expected_hours = 3.0 + 6.0 + 111.19 / 60.0
    assert (model.eta(dc, dest, NOW) - NOW) / timedelta(hours=1) == pytest.approx(expected_hours, abs=0.01)


points = st.builds(GeoPoint, st.floats(33, 39), st.floats(124, 131))


@given(points, points)
def test_distance_is_symmetric_and_non_negative(a: GeoPoint, b: GeoPoint) -> None:
    assert haversine_km(a, b) == pytest.approx(haversine_km(b, a))
    assert haversine_km(a, b) >= 0


@given(points, points, points)
def test_farther_destination_never_arrives_earlier(origin: GeoPoint, near: GeoPoint, far: GeoPoint) -> None:
    dc = site(lat=origin.lat, lon=origin.lon)
    if haversine_km(origin, near) > haversine_km(origin, far):
        near, far = far, near
    model = EtaModel()
    assert model.eta(dc, near, NOW) <= model.eta(dc, far, NOW)
