"""Worker health (SPEC section 10): hung workers caught by the watchdog, recycling, forensics.

Each hang is made for real: a C worker (hello-http --hang-route) whose loop blocks in a request,
a Python worker spinning in a thread while its main loop is stuck, a SIGSTOPped worker, and an
unmodified python-systemd client that pings WATCHDOG=1 and then stops. Each must be detected,
replaced (the replacement ready first), aborted and counted with reason `hang`.
"""

import json
import os
import re
import signal
import threading
import time

import drover_harness as h
import hardening as hd

WATCHDOG = "400ms"


def admin_addr():
    return f"127.0.0.1:{h.free_port()}"


def metrics(admin):
    status, body = h.http_get(admin, "/metrics")
    assert status == 200
    return body


def restarts(admin, app, reason):
    m = re.search(r'drover_worker_restarts_total\{app="%s",reason="%s"\} (\S+)' % (app, reason),
                  metrics(admin))
    return float(m.group(1)) if m else 0.0


def workers_in_state(admin, app, state):
    m = re.search(r'drover_workers\{app="%s",state="%s"\} (\S+)' % (app, state), metrics(admin))
    return float(m.group(1)) if m else 0.0


def start(drover, command, workers=2, **extra):
    admin = admin_addr()
    addr = f"127.0.0.1:{h.free_port()}"
    app = {"command": command, "workers": workers, "listen": addr, "ready": "notify",
           "watchdog": WATCHDOG, "kill_timeout": "1s", "ready_timeout": "5s",
           "min_uptime": "1s"}
    app.update(extra)
    drover.start(supervisor={"admin_listen": admin}, apps={"web": app})
    drover.wait_http(addr)
    pids = drover.wait_workers(workers)
    h.wait_until(lambda: ready_pids(drover) == set(pids) or None, h.scaled(5),
                 what="every worker ready")
    return addr, admin, set(pids)


def ready_pids(drover):
    st = drover.status()
    if not st:
        return set()
    return {w["pid"] for a in st["apps"] for w in a["workers"] if w["state"] == "ready"}


def hung_record(drover, pid):
    return drover.wait_record(
        lambda r: r.get("pid") == pid and r.get("state") == "hung", timeout=h.scaled(5),
        what=f"the record of worker {pid} going hung")


def expect_replaced(drover, admin, victim, others, n=2, deadline=8.0):
    """The hung worker is gone, n workers serve again, none of them the victim; restarts count
    one hang."""
    def replaced():
        now = set(drover.workers())
        live_ready = ready_pids(drover)
        return (len(live_ready) == n and victim not in now and victim not in live_ready
                and live_ready) or None
    ready = h.wait_until(replaced, h.scaled(deadline), interval=0.02,
                         what=f"hung worker {victim} replaced and gone")
    assert others <= ready | set(), (others, ready)
    assert restarts(admin, "web", "hang") == 1
    return ready


def exit_record(drover, pid):
    return drover.wait_record(lambda r: r.get("pid") == pid and r.get("state") == "exited",
                              timeout=h.scaled(5), what=f"the exit record of {pid}")


def test_sigstopped_worker_is_hung_replaced_and_killed(drover):
    addr, admin, pids = start(drover, h.hello())
    victim = min(pids)
    stopped_at = time.monotonic()
    os.kill(victim, signal.SIGSTOP)
    rec = hung_record(drover, victim)
    assert rec["level"] == "warn"
    detected = time.monotonic() - stopped_at
    # Out of the ready count at once.
    expect_replaced(drover, admin, victim, pids - {victim})
    # A stopped process cannot act on SIGABRT: SIGKILL kill_timeout later ends it.
    ex = exit_record(drover, victim)
    assert ex.get("signal") == "KILL", ex
    assert ex.get("reason") == "hang", ex
    assert ex.get("sender") == "drover", ex
    assert detected < h.scaled(3), detected
    # Logged once per transition: one hung record.
    assert len([r for r in drover.records() if r.get("pid") == victim
                and r.get("state") == "hung"]) == 1


def test_blocked_c_loop_is_aborted_with_sigabrt(drover):
    addr, admin, pids = start(drover, h.hello("--hang-route"))
    # The request that blocks the loop: it never gets an answer.
    def hang():
        try:
            h.http_get(addr, "/hang", timeout=h.scaled(10))
        except Exception:
            pass
    threading.Thread(target=hang, daemon=True).start()

    def someone_hung():
        for r in drover.records():
            if r.get("state") == "hung":
                return r
        return None
    rec = h.wait_until(someone_hung, h.scaled(5), what="a worker going hung")
    victim = rec["pid"]
    assert victim in pids
    expect_replaced(drover, admin, victim, pids - {victim})
    ex = exit_record(drover, victim)
    # It was blocked in sleep(): SIGABRT's default action ends it (with a core where allowed).
    assert ex.get("signal") == "ABRT", ex
    assert ex.get("reason") == "hang", ex
    assert "uptime_s" in ex and "core_dumped" in ex
    st = drover.status()
    slots = {w["slot"]: w for a in st["apps"] for w in a["workers"]}
    assert any((w.get("last_exit") or {}).get("reason") == "hang" for w in slots.values()), st
    # /health/detailed carries the same; droverctl status shows it in a column.
    _, body = h.http_get(admin, "/health/detailed")
    assert "last_exit" in body
    r = drover.ctl("status")
    assert r.returncode == 0 and "LAST_EXIT" in r.stdout.splitlines()[0], r.stdout
    assert "SIGABRT/hang" in r.stdout, r.stdout


def test_python_worker_spinning_in_a_thread_is_hung(drover):
    addr, admin, pids = start(drover, h.helper("hang_worker.py", "--mode", "channel"))
    # /hang on one connection: that worker's loop is stuck while a thread burns the CPU.
    threading.Thread(target=lambda: _quiet(lambda: h.http_get(addr, "/hang", timeout=15)),
                     daemon=True).start()
    rec = h.wait_until(lambda: next((r for r in drover.records() if r.get("state") == "hung"),
                                    None), h.scaled(5), what="a worker going hung")
    victim = rec["pid"]
    expect_replaced(drover, admin, victim, pids - {victim})
    assert exit_record(drover, victim).get("signal") in ("ABRT", "KILL")


def test_python_systemd_client_that_stops_pinging(drover):
    record = drover.tmp / "starts.txt"
    addr, admin, pids = start(drover, h.helper("hang_worker.py", "--mode", "systemd",
                                               "--pings", "6", "--record", record))
    # As systemd passes them: WATCHDOG_PID is the worker's own pid, WATCHDOG_USEC the period.
    for line in record.read_text().splitlines():
        pid, wpid, usec = line.split()
        assert wpid == pid and usec == "400000", line
    # Six pings at 200 ms, then silence: both go hung after about 1.2 s + 0.4 s.
    for victim in pids:
        hung_record(drover, victim)
    def all_new():
        ready = ready_pids(drover)
        return (len(ready) == 2 and not (ready & pids)) or None
    h.wait_until(all_new, h.scaled(10), what="both silent workers replaced")
    assert restarts(admin, "web", "hang") >= 2


def test_watchdog_trigger_is_hung_at_once(drover):
    addr, admin, pids = start(drover, h.helper("hang_worker.py", "--mode", "trigger"),
                              watchdog="30s")
    t0 = time.monotonic()
    h.http_get(addr, "/hang")
    rec = h.wait_until(lambda: next((r for r in drover.records() if r.get("state") == "hung"),
                                    None), h.scaled(5), what="a worker going hung")
    assert "WATCHDOG=trigger" in rec["msg"], rec
    assert time.monotonic() - t0 < h.scaled(2)  # not the 30 s watchdog
    expect_replaced(drover, admin, rec["pid"], pids - {rec["pid"]})


def _quiet(fn):
    try:
        fn()
    except Exception:
        pass


def test_first_fast_crash_is_replaced_at_once_the_second_backs_off(drover):
    """Issue 15, item 5: backoff starts at the second fast crash in a row."""
    addr = f"127.0.0.1:{h.free_port()}"
    drover.start(apps={"web": {"command": h.hello(), "workers": 1, "listen": addr,
                               "ready": "notify", "restart_delay": "3s",
                               "restart_delay_max": "3s", "min_uptime": "30s"}})
    drover.wait_http(addr)
    first = drover.wait_workers(1)[0]
    os.kill(first, signal.SIGKILL)
    t0 = time.monotonic()
    second = h.wait_until(lambda: (lambda w: w[0] if w and w[0] != first else None)(
        drover.workers()), 2.0, interval=0.01, what="the first fast crash replaced at once")
    # Well under restart_delay (3 s, with a +-20% jitter: never below 2.4 s).
    assert time.monotonic() - t0 < 2.0
    assert not drover.find(lambda r: "restarting in" in r.get("msg", ""))
    h.wait_until(lambda: second in ready_pids(drover) or None, h.scaled(5),
                 what="the replacement ready")
    os.kill(second, signal.SIGKILL)
    rec = drover.wait_record(lambda r: "restarting in" in r.get("msg", ""), timeout=h.scaled(3),
                             what="the second fast crash backing off")
    assert rec["delay_ms"] >= 2400, rec
    ex = exit_record(drover, second)
    assert ex["signal"] == "KILL" and ex["reason"] == "crash"
    assert ex["sender"].startswith("not sent by drover"), ex


def _hang_under_load(drover, headers):
    """A C worker hangs while wrk drives the app; returns (wrk result, connections)."""
    connections = 8
    addr, admin, pids = start(drover, h.hello("--hang-route"), workers=3)
    wrk = hd.wrk_start(f"http://{addr}/", 5, connections=connections, threads=2, timeout_s=3,
                       headers=headers)
    try:
        time.sleep(1.0)  # wrk is under way (its own clock: a fixed-length run)
        threading.Thread(target=lambda: _quiet(lambda: h.http_get(addr, "/hang", timeout=10)),
                         daemon=True).start()
        rec = h.wait_until(lambda: next((r for r in drover.records()
                                         if r.get("state") == "hung"), None), h.scaled(5),
                           what="a worker going hung under load")
        victim = rec["pid"]
        expect_replaced(drover, admin, victim, pids - {victim}, n=3)
        out, _ = wrk.communicate(timeout=h.scaled(20))
    finally:
        if wrk.poll() is None:
            os.killpg(wrk.pid, signal.SIGKILL)
            wrk.wait()
    ex = exit_record(drover, victim)
    assert ex["reason"] == "hang" and ex["signal"] == "ABRT", ex
    return hd.wrk_result(out), connections


def _assert_bounded(res, connections):
    failed = res["connect"] + res["read"] + res["write"] + res["timeout"] + res["non2xx"]
    print(f"wrk under a hang: {res}, failed {failed} of at most {connections}")
    assert res["requests"] > 1000, res
    # A hung process loses the connections it had accepted, at most one in-flight request per
    # wrk connection; every new connection goes to the other workers.
    assert failed <= connections, res


def test_hang_under_keepalive_load_loses_only_its_own_connections(drover):
    res, connections = _hang_under_load(drover, ())
    _assert_bounded(res, connections)


def test_hang_under_connection_close_load_loses_only_its_own_connections(drover):
    res, connections = _hang_under_load(drover, ("Connection: close",))
    _assert_bounded(res, connections)


def test_a_pinging_worker_under_load_is_never_hung(drover):
    """No false positive: a 300 ms watchdog over many periods of a busy 2-core machine."""
    addr, admin, pids = start(drover, h.hello(), workers=2, watchdog="300ms")
    wrk = hd.wrk_start(f"http://{addr}/", 6, connections=32, threads=2)
    out, _ = wrk.communicate(timeout=h.scaled(30))
    res = hd.wrk_result(out)
    assert res["requests"] > 1000, res
    assert not drover.find(lambda r: r.get("state") == "hung"), "a pinging worker went hung"
    assert restarts(admin, "web", "hang") == 0
    assert set(drover.workers()) == pids


def _recycles_never_overlap(drover):
    """Every recycle started is done before the next one starts; returns how many ran."""
    open_runs, runs = 0, 0
    for r in drover.records():
        msg = r.get("msg", "")
        if msg.startswith("recycle started"):
            assert open_runs == 0, f"two recycles at once: {msg}"
            open_runs += 1
            runs += 1
        elif msg.startswith("recycle done") or msg.startswith("recycle failed"):
            open_runs -= 1
    return runs


def _recycle_under_load(drover, command, reason, **extra):
    addr, admin, pids = start(drover, command, workers=3, memory_check_interval="100ms",
                              watchdog="0", **extra)
    wrk = hd.wrk_start(f"http://{addr}/", 6, connections=12, threads=2)
    out, _ = wrk.communicate(timeout=h.scaled(30))
    res = hd.wrk_result(out)
    failed = res["connect"] + res["read"] + res["write"] + res["timeout"] + res["non2xx"]
    assert res["requests"] > 1000, res
    assert failed == 0, res
    assert restarts(admin, "web", reason) >= 2, metrics(admin)
    assert _recycles_never_overlap(drover) >= 2
    # Capacity: always `workers` serving at the end, none of them the first ones.
    h.wait_until(lambda: len(ready_pids(drover)) == 3 or None, h.scaled(5), what="3 ready")
    return res


def test_max_requests_recycles_one_at_a_time_losing_nothing(drover):
    _recycle_under_load(drover, h.hello("--max-requests", "20000"), "requested")
    rec = drover.wait_record(lambda r: r.get("reason") == "requested"
                             and "asked to be recycled" in r.get("msg", ""))
    assert rec["request"] == "max_requests"


def test_max_lifetime_recycles_staggered_losing_nothing(drover):
    _recycle_under_load(drover, h.hello(), "lifetime", max_lifetime="1500ms")
    # The slots' lifetimes differ, so the first three recycles come in slot order.
    slots = [r["worker"] for r in drover.records()
             if "reached its lifetime" in r.get("msg", "")][:3]
    assert slots == [0, 1, 2], slots
