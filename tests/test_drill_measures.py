"""What a drill reports, from what it saw (pure): detect, mitigate, recover, latency by phase, and the
reconciliation of every placed order against the DC ledgers."""

from __future__ import annotations

from chaos.drill.context import Outcome
from chaos.drill.measure import (
    SiteSample,
    changes,
    latency,
    per_second,
    percentile,
    routed_away_at,
    time_to_detect,
    time_to_mitigate,
    time_to_recover,
)
from chaos.drill.reconcile import classify

FAULT = 1000.0


def order(t: float, region: str = "seoul", site: str | None = "icheon", code: int = 201,
          status: str = "accepted", latency_ms: float = 20.0,
          passed_over: tuple[str, ...] = ()) -> Outcome:  # fmt: skip
    oid = None if code >= 300 else f"o-{t}-{region}-{site}"
    return Outcome(
        t, latency_ms, code, region, oid, status if oid else None, site if oid else None, passed_over
    )


def test_percentile_is_nearest_rank() -> None:
    assert percentile([], 99) is None
    assert percentile([5.0], 99) == 5.0
    assert percentile([float(i) for i in range(1, 101)], 99) == 99.0
    assert percentile([float(i) for i in range(1, 101)], 50) == 50.0


def test_detect_is_the_first_sample_after_the_fault_that_shows_the_subject_broken() -> None:
    samples = [
        SiteSample(FAULT - 1, "icheon", "down", "open", True),  # an earlier blip does not count
        SiteSample(FAULT + 0.2, "busan", "down", "open", True),  # another site does not count
        SiteSample(FAULT + 0.2, "icheon", "healthy", "closed", True),
        SiteSample(FAULT + 0.4, "icheon", "healthy", "open", True),
        SiteSample(FAULT + 3.0, "icheon", "down", "open", True),
    ]
    assert time_to_detect(samples, "icheon", FAULT) == 0.4
    assert time_to_detect(samples[:3], "icheon", FAULT) is None


def test_mitigate_is_the_first_order_a_backup_took_away_from_the_subject() -> None:
    outcomes = [
        order(FAULT - 5, site="daejeon", passed_over=("icheon",)),  # before the fault
        order(FAULT + 0.1, site="icheon"),  # still at the subject
        order(FAULT + 0.15, site="seoul-mfc"),  # the region's other DC: no evidence before detection
        order(FAULT + 0.2, region="busan", site="busan"),  # another region, not passed over
        order(FAULT + 0.3, site="daejeon", code=202, status="held", passed_over=("icheon",)),  # held
        order(FAULT + 0.5, region="busan", site="daejeon", latency_ms=250, passed_over=("icheon",)),
    ]
    # the first order whose attempts could not use icheon and that another DC accepted
    assert time_to_mitigate(outcomes, "icheon", "seoul", FAULT, detected_at=None) == 0.75
    # once the fault is detected, any order of the region accepted elsewhere counts
    assert time_to_mitigate(outcomes, "icheon", "seoul", FAULT, detected_at=FAULT + 0.12) == 0.17
    assert time_to_mitigate(outcomes[:5], "icheon", "seoul", FAULT, detected_at=None) is None


def test_recover_is_when_the_accepted_share_holds_at_95_percent_of_steady() -> None:
    steady = [order(FAULT - 10 + i * 0.1) for i in range(100)]  # all accepted
    outage = [order(FAULT + i * 0.1, code=503) for i in range(40)]  # 4 s of failures
    back = [order(FAULT + 4 + i * 0.1, site="daejeon") for i in range(100)]
    outcomes = steady + outage + back
    assert time_to_recover(outcomes, FAULT, FAULT, 1.0) == 4.0
    # never back: no figure rather than a made-up one
    assert time_to_recover(steady + outage, FAULT, FAULT, 1.0) is None
    # not before mitigation
    assert time_to_recover(steady + back, FAULT, FAULT + 6, 1.0) == 6.0


def test_a_quiet_window_without_a_held_order_by_chance_is_no_recovery() -> None:
    # one order in ten is held while the fault lasts, two a second: any 3 s window holds six
    # orders, and a window of six with none held is no evidence the share is back
    outage = [order(FAULT + i * 0.5, code=202 if i % 10 == 9 else 201,
                    status="held" if i % 10 == 9 else "accepted") for i in range(40)]  # fmt: skip
    assert time_to_recover(outage, FAULT, FAULT, 1.0) is None
    # the same rate with nothing held: recovered from the start, once 20 orders are seen
    clean = [order(FAULT + i * 0.5) for i in range(40)]
    assert time_to_recover(clean, FAULT, FAULT, 1.0) == 0.0
    assert time_to_recover(clean[:10], FAULT, FAULT, 1.0) is None


def test_latency_by_phase_and_per_second_counts() -> None:
    outcomes = [order(FAULT + i, latency_ms=10 * (i + 1)) for i in range(10)] + [order(FAULT + 0.5, code=0)]
    phase = latency(outcomes, FAULT, FAULT + 5)
    assert phase["orders"] == 6 and phase["p99_ms"] == 50.0
    seconds = per_second(outcomes)
    assert seconds[0].posted == 2 and seconds[0].accepted == 1 and seconds[0].failed == 1
    assert sum(s.posted for s in seconds) == 11


def test_reconciliation_finds_lost_duplicated_held_and_strangers() -> None:
    statuses = {"o-held": "held", "o-moving": "routed", "o-gone": "accepted", "o-cancelled": "cancelled"}
    result = classify(
        placed=["o-1", "o-2", "o-twice", "o-held", "o-moving", "o-gone", "o-cancelled", "o-unknown"],
        ledgers={"icheon": ["o-1", "o-twice", "o-stranger"], "daejeon": ["o-2", "o-twice"]},
        status_of=statuses.get,
    )
    assert result.placed == 8 and result.in_ledgers == 3
    assert result.duplicated == ["o-twice"]
    assert result.lost == ["o-gone", "o-unknown"]  # accepted yet in no ledger; unknown to the store
    assert (result.held, result.cancelled, result.strangers) == (2, 1, 1)


def test_the_subjects_timeline_keeps_only_its_changes_and_the_last_sample() -> None:
    samples = [
        SiteSample(FAULT + 0.0, "icheon", "healthy", "closed", True),
        SiteSample(FAULT + 0.2, "icheon", "healthy", "closed", True),
        SiteSample(FAULT + 0.4, "icheon", "healthy", "open", True),
        SiteSample(FAULT + 0.6, "icheon", "healthy", "open", True),
        SiteSample(FAULT + 0.8, "icheon", "down", "open", True, impaired=True),
        SiteSample(FAULT + 1.0, "icheon", "down", "open", True, impaired=True),
    ]
    kept = changes(samples)
    assert [(round(k["t"] - FAULT, 2), k["breaker"], k["health"]) for k in kept] == [
        (0.0, "closed", "healthy"), (0.4, "open", "healthy"), (0.8, "open", "down"), (1.0, "open", "down"),
    ]  # fmt: skip
    assert changes([]) == []


def test_routing_is_away_from_the_subject_once_it_is_seen_broken_or_taken_out() -> None:
    broken = [SiteSample(FAULT + 0.3, "icheon", "healthy", "open", True)]
    failed_over = [SiteSample(FAULT + 0.1, "icheon", "healthy", "closed", False)]
    assert routed_away_at(broken, "icheon", FAULT) == FAULT + 0.3
    assert routed_away_at(failed_over + broken, "icheon", FAULT) == FAULT + 0.1
    assert (
        routed_away_at([SiteSample(FAULT + 1, "icheon", "healthy", "closed", True)], "icheon", FAULT) is None
    )
