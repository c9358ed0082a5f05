"""Where the gateway puts each reading in time (uplink.Instants)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from chargelift_ocpp.uplink import Instants

T = datetime(2026, 12, 2, 10, 0, 0, tzinfo=UTC)
MS = timedelta(milliseconds=1)


def test_newer_readings_keep_their_instants_and_are_retained() -> None:
    i = Instants()
    assert i.place("t", T, "idle") == (T, True)
    assert i.place("t", T + timedelta(seconds=1), "charging") == (T + timedelta(seconds=1), True)


def test_a_late_reading_keeps_its_instant_and_is_not_retained() -> None:
    i = Instants()
    i.place("t", T, 1.0)
    assert i.place("t", T - timedelta(minutes=1), 2.0) == (T - timedelta(minutes=1), False)
    assert i.place("other", T - timedelta(minutes=1), 2.0) == (T - timedelta(minutes=1), True)


def test_different_values_at_one_instant_are_kept_apart_in_the_order_sent() -> None:
    # Preparing then Charging, both stamped at the same whole second: without this the
    # database keeps one row at T, the first one, and the session never starts.
    i = Instants()
    assert i.place("t", T, "idle") == (T, True)
    assert i.place("t", T, "charging") == (T + MS, True)
    assert i.place("t", T, "unknown") == (T + 2 * MS, True)


def test_the_same_value_at_that_instant_again_goes_where_it_went_first() -> None:
    i = Instants()
    i.place("t", T, "idle")
    i.place("t", T, "charging")
    # a message sent twice: the same row again, whichever of the two it was
    assert i.place("t", T, "charging") == (T + MS, True)
    assert i.place("t", T, "idle") == (T, False)  # not the newest: not retained
    # and a newer instant starts afresh
    assert i.place("t", T + timedelta(seconds=1), "idle") == (T + timedelta(seconds=1), True)
