"""Soak (issue 9, "Hardening"): a worker that exits at once, restarted with no delay at all
(restart_delay = 0, min_uptime = 0: every exit counts as a healthy run, so no backoff ever
slows the loop), beside a normal hello-http app, for N restarts.

Measured after a warm-up and again at the end, with the crash loop running both times:
  - the master's RSS (flat: within 4 MiB) and fd count (equal, counted with the crash loop
    paused by `droverctl stop crash`, then resumed with `droverctl start crash`);
  - `droverctl status` latency: the median of 20 calls at the end is not more than 3x the
    median at the start (plus 10 ms for scheduling noise), both through droverctl and on a raw
    socket; the fastest raw answer, not more than 3x (plus 2 ms);
  - no lasting zombie; the other app served throughout with the same workers;
  - SIGTERM still ends it all with exit 0.

DROVER_SOAK_RESTARTS sets N (1000 by default; 10000 for the full run).
"""

import os
import signal
import time

import drover_harness as h
import hardening as hd

RESTARTS = int(os.environ.get("DROVER_SOAK_RESTARTS") or 1000)
WARMUP = min(200, RESTARTS // 5)


def crash_restarts(dr):
    if dr.proc.poll() is not None:
        raise AssertionError(f"drover exited with {dr.proc.returncode} during the soak")
    reply = hd.control_ask(dr.control_socket, {"cmd": "status", "app": "crash"})
    return reply["apps"][0]["restarts"]["crash"]


def wait_restarts(dr, n, timeout, what):
    """Waits for n restarts; fails at once, with drover's exit status, if drover is gone."""
    def enough():
        if dr.proc.poll() is not None:
            return "exited"
        return crash_restarts(dr) >= n
    try:
        got = h.wait_until(enough, timeout, interval=0.2, what=what)
    except AssertionError as e:
        raise AssertionError(f"{e}\n--- drover output ---\n{dr.output()[-3000:]}") from None
    assert got is True, (f"drover exited with {dr.proc.returncode} during the soak:\n"
                         f"{dr.output()[-3000:]}")


def quiet_fds(dr):
    """The master's fd count with the crash loop paused: `droverctl stop crash` (which waits
    until the app has stopped), count, `droverctl start crash`. Paused, the count is exact;
    running, it changes with every spawn."""
    r = dr.ctl("--timeout", "20", "stop", "crash", timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    h.wait_until(lambda: hd.app_status(dr, "crash")["state"] == "stopped", 10,
                 what="the crash app stopped")
    # The droverctl connection that asked may still be closing on drover's side.
    n = h.wait_until(lambda: (lambda a, b: a if a == b else None)(
        hd.fd_count(dr.pid), (time.sleep(0.05), hd.fd_count(dr.pid))[1]), 5,
        what="a stable fd count")
    table = hd.fd_table(dr.pid)
    # start waits for a ready worker, which this app has only for an instant: whatever it
    # answers, the loop is running again once the app is.
    dr.ctl("--timeout", "5", "start", "crash", timeout=15)
    h.wait_until(lambda: hd.app_status(dr, "crash")["state"] == "running", 10,
                 what="the crash app running again")
    return n, table


def measure(dr, label):
    restarts = crash_restarts(dr)
    ctl, raw, raw_min = hd.status_latency(dr, 20)
    fds, table = quiet_fds(dr)
    m = {"restarts": restarts, "rss": hd.rss_kib(dr.pid), "fds": fds, "fd_table": table,
         "ctl_ms": ctl * 1000, "raw_ms": raw * 1000, "raw_min_ms": raw_min * 1000}
    print(f"{label}: {restarts} restarts, master RSS {m['rss']} KiB, fds {fds} (crash loop "
          f"paused), status median {m['ctl_ms']:.1f} ms (droverctl) / {m['raw_ms']:.2f} ms "
          f"(raw; fastest {m['raw_min_ms']:.2f} ms)")
    return m


def test_restart_soak(drover):
    port = h.free_port()
    addr = f"127.0.0.1:{port}"
    dr = drover.start(apps={
        "web": {"command": h.hello(), "workers": 2, "listen": addr, "ready": "notify"},
        "crash": {"command": "/bin/false", "workers": 1, "ready": "none", "restart": "always",
                  "restart_delay": "0", "min_uptime": "0ms"}})
    dr.wait_http(addr)
    web_pids = {w["pid"] for w in hd.app_status(dr, "web")["workers"]}
    t0 = time.monotonic()
    wait_restarts(dr, WARMUP, 60, f"{WARMUP} restarts (warm-up)")
    start = measure(dr, "\nafter warm-up")
    # About 12 ms per restart here (fork+exec is slow on this VM); room for a busy machine.
    wait_restarts(dr, RESTARTS, max(120, RESTARTS / 20), f"{RESTARTS} restarts")
    end = measure(dr, "at the end")
    took = time.monotonic() - t0
    print(f"{end['restarts']} restarts in {took:.1f}s ({end['restarts'] / took:.0f}/s)")

    assert dr.proc.poll() is None
    hd.assert_no_lasting_zombie(dr.pid)
    assert end["fds"] == start["fds"], \
        f"master fds {start['fds']} -> {end['fds']}:\n{start['fd_table']}\n{end['fd_table']}"
    if not hd.sanitized(dr.pid) and not hd.under_valgrind():
        # Worker logs go to a bounded ring per app; nothing else should accumulate per restart.
        assert end["rss"] - start["rss"] < 4 * 1024, f"RSS grew: {start} -> {end}"
    # Medians carry the machine's noise (the crash loop forks all the time); the fastest answer
    # is the cost of a status request itself. Both must not have grown with the restarts.
    assert end["ctl_ms"] <= 3 * start["ctl_ms"] + 10, f"status slowed down: {start} -> {end}"
    assert end["raw_ms"] <= 3 * start["raw_ms"] + 10, f"status slowed down: {start} -> {end}"
    assert end["raw_min_ms"] <= 3 * start["raw_min_ms"] + 2, f"status slowed down: {start} -> {end}"

    web = hd.app_status(dr, "web")
    assert {w["pid"] for w in web["workers"]} == web_pids and web["ready"] == 2, web
    assert h.http_ok(addr)
    dr.signal(signal.SIGTERM)
    assert dr.wait_exit(15) == 0
    assert not any(w.alive() for w in dr.known_workers())
