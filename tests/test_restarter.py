"""The restart policy alone: no processes, no sockets."""
import logging
import threading
import time

from watchdog.restarter import Restarter

STABLE_S = 10.0
CAP_S = 4.0


def crash_loop(restarter, n, uptime_s=0.1):
    return [restarter.delay(uptime_s) for _ in range(n)]


def test_first_restart_waits_the_first_delay():
    assert Restarter(STABLE_S, CAP_S).delay(0.1) == 0.0
    assert Restarter(STABLE_S, CAP_S, first_delay_s=0.25).delay(0.1) == 0.25


def test_crash_loop_delays_start_at_half_a_second_and_double():
    delays = crash_loop(Restarter(STABLE_S, max_delay_s=1000.0), 8)
    assert delays[1] == 0.5
    assert all(later == 2 * earlier for earlier, later in zip(delays[1:], delays[2:])), delays


def test_crash_loop_delays_stop_growing_at_the_cap():
    delays = crash_loop(Restarter(STABLE_S, CAP_S), 12)
    assert max(delays) == CAP_S
    at_cap = delays.index(CAP_S)
    assert delays[at_cap:] == [CAP_S] * (len(delays) - at_cap)
    assert all(d < CAP_S for d in delays[:at_cap])


def test_reaching_the_cap_is_logged_with_the_streak(caplog):
    r = Restarter(STABLE_S, CAP_S)
    with caplog.at_level(logging.WARNING, logger="watchdog.restarter"):
        crash_loop(r, 12)
    warnings = [rec.getMessage() for rec in caplog.records if "keeps failing" in rec.getMessage()]
    assert warnings and warnings[-1].startswith("restarter: ")
    assert f"{r.streak} in a row" in warnings[-1]


def test_a_long_crash_loop_keeps_retrying_at_the_cap():
    r = Restarter(STABLE_S, CAP_S)
    delays = crash_loop(r, 2000)      # past 2 ** 1024, which a float cannot hold
    assert delays[-1] == CAP_S and r.streak == 2000


def test_a_kernel_up_for_the_stable_time_ends_the_streak():
    r = Restarter(STABLE_S, CAP_S, first_delay_s=0.25)
    crash_loop(r, 5)
    assert r.streak == 5
    assert r.delay(STABLE_S) == 0.25
    assert r.streak == 1
    assert r.delay(0.1) == 0.5          # the backoff starts over


def test_a_kernel_up_just_short_of_the_stable_time_keeps_the_streak():
    r = Restarter(STABLE_S, CAP_S)
    before = crash_loop(r, 3)
    assert r.delay(STABLE_S - 0.01) == 2 * before[-1]
    assert r.streak == 4


def test_total_counts_every_restart_across_streaks():
    r = Restarter(STABLE_S, CAP_S)
    crash_loop(r, 4)
    r.delay(STABLE_S + 1)
    crash_loop(r, 2)
    assert r.total == 7 and r.streak == 3


def test_wait_returns_false_promptly_when_the_stop_event_is_set():
    stop = threading.Event()
    timer = threading.Timer(0.2, stop.set)
    timer.start()
    try:
        t0 = time.monotonic()
        assert Restarter(STABLE_S, CAP_S).wait(30.0, stop) is False
        assert time.monotonic() - t0 < 2.0
    finally:
        timer.cancel()


def test_wait_returns_false_at_once_when_already_stopping():
    stop = threading.Event()
    stop.set()
    t0 = time.monotonic()
    assert Restarter(STABLE_S, CAP_S).wait(0.0, stop) is False
    assert Restarter(STABLE_S, CAP_S).wait(30.0, stop) is False
    assert time.monotonic() - t0 < 1.0


def test_wait_sleeps_the_delay_and_goes_on_when_not_stopping():
    t0 = time.monotonic()
    assert Restarter(STABLE_S, CAP_S).wait(0.3, threading.Event()) is True
    assert 0.3 <= time.monotonic() - t0 < 5.0
