"""The throughput benchmark's pure pieces: percentiles, rates, and the exactly-once verdict."""
import math

import pytest

from bench import stats


def test_percentile_interpolates_between_ranks_as_numpy_does():
    data = [15, 20, 35, 40, 50]
    assert stats.percentile(data, 0) == 15
    assert stats.percentile(data, 100) == 50
    assert stats.percentile(data, 50) == 35
    assert stats.percentile(data, 40) == pytest.approx(29.0)     # numpy.percentile(data, 40, method="linear")
    assert stats.percentile(data, 99) == pytest.approx(49.6)
    assert stats.percentile(reversed(data), 50) == 35             # order of the input does not matter


def test_percentile_of_nothing_or_one_value():
    assert stats.percentile([], 99) is None
    assert stats.percentile([0.25], 1) == 0.25
    with pytest.raises(ValueError):
        stats.percentile([1, 2], 101)


def test_p99_of_a_hundred_values_is_near_the_top_not_the_max():
    values = list(range(1, 101))          # 1 … 100
    assert stats.percentile(values, 99) == pytest.approx(99.01)
    summary = stats.summary([v / 1000 for v in values], scale=1000, digits=1)
    assert summary == {"count": 100, "p50": 50.5, "p90": 90.1, "p99": 99.0, "max": 100.0}
    assert stats.summary([])["p99"] is None


def test_the_steady_window_starts_once_the_pipeline_is_full():
    """Lives of 15 s: nothing completes in the first 15 s, which are left out; never past half-way."""
    assert stats.steady_from(10, [15.0] * 10, 60) == 15.0
    assert stats.steady_from(10, [0.5] * 10, 60) == 10          # fast lives: the warm-up rules
    assert stats.steady_from(10, [45.0] * 10, 60) == 30          # at most half the load
    assert stats.steady_from(10, [], 60) == 10                   # nothing completed yet


def test_rate_in_window_counts_only_the_window():
    instants = [0.5, 1.0, 1.5, 2.0, 9.9, 10.0]
    assert stats.rate_in_window(instants, 1.0, 10.0) == pytest.approx(4 / 9)    # 1.0, 1.5, 2.0, 9.9
    with pytest.raises(ValueError):
        stats.rate_in_window(instants, 5, 5)


def test_per_second_buckets():
    assert stats.per_second([100.1, 100.9, 101.0, 102.5, 99.0, 110.0], 100.0, 3) == [2, 1, 1]


def test_histogram_quantile_as_prometheus():
    buckets = {0.05: 50, 0.1: 90, 0.25: 100, math.inf: 100}
    assert stats.histogram_quantile(0.5, buckets) == pytest.approx(0.05)
    assert stats.histogram_quantile(0.9, buckets) == pytest.approx(0.1)
    assert stats.histogram_quantile(0.99, buckets) == pytest.approx(0.1 + 0.15 * 9 / 10)
    assert stats.histogram_quantile(0.99, {0.1: 0, math.inf: 10}) == 0.1   # beyond the last bound
    assert stats.histogram_quantile(0.5, {math.inf: 0}) is None


def test_tally_names_missing_duplicated_and_unexpected():
    result = stats.tally({"a", "b", "c", "d"}, ["a", "b", "b", "c", "x"])
    assert (result.expected, result.once, result.missing, result.duplicated, result.unexpected) == (4, 2, 1, 1, 1)
    assert not result.exactly_once
    assert {"item": "d", "count": 0} in result.examples and {"item": "b", "count": 2} in result.examples
    assert stats.tally({"a", "b"}, ["b", "a"]).exactly_once
    assert stats.tally(set(), []).exactly_once


def test_expected_deliveries_follow_the_bindings():
    consumers = {"dossier.received": {"routing", "fees", "notify"}, "fees.paid": {"intake", "notify"}}
    events = [("e1", "dossier.received"), ("e2", "fees.paid"), ("e3", "notify.delivered")]
    assert stats.expected_deliveries(events, consumers) == {
        "routing": {"e1"}, "fees": {"e1"}, "notify": {"e1", "e2"}, "intake": {"e2"}}


def test_exactly_once_report_passes_only_when_everything_arrived_once():
    codes = ["C1", "C2"]
    deliveries = {"routing": {"e1", "e2"}, "notify": {"e1"}}
    good = stats.exactly_once_report(codes, {"intake.dossiers": ["C1", "C2"], "fees.payments": ["C2", "C1", "OLD"]},
                                     deliveries, {"routing": ["e2", "e1"], "notify": ["e1"]})
    assert good["exactly_once"] and good["dossiers"] == 2
    assert good["rows"]["fees.payments"]["once"] == 2          # a row of another run is not counted

    paid_twice = stats.exactly_once_report(codes, {"fees.payments": ["C1", "C2", "C2"]}, deliveries,
                                           {"routing": ["e1", "e2"], "notify": ["e1"]})
    assert not paid_twice["exactly_once"] and paid_twice["rows"]["fees.payments"]["duplicated"] == 1

    lost = stats.exactly_once_report(codes, {"intake.dossiers": ["C1", "C2"]}, deliveries,
                                     {"routing": ["e1"], "notify": ["e1"]})
    assert not lost["exactly_once"] and lost["events"]["routing"]["missing"] == 1


def test_ratio():
    assert stats.ratio(50, 200) == 0.25
    assert stats.ratio(None, 200) is None and stats.ratio(5, 0) is None
