"""Soak (issue 9, "Hardening"): a worker that exits at once, restarted with no delay at all
(restart_delay = 0, min_uptime = 0: every exit counts as a healthy run, so no backoff ever
slows the loop), beside a normal hello-http app, for N restarts.

Measured after a warm-up and again at the end, with the crash loop running both times:
  - the master's RSS (flat: within a margin) and fd count (flat: the fewest fds seen over a
    burst of samples, i.e. between two crash-worker lives, is not higher at the end);
  - `droverctl status` latency: the median of 20 calls at the end is not more than 3x the
    median at the start (plus 5 ms for scheduling noise), both through droverctl and on a raw
    socket;
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
    reply = hd.control_ask(dr.control_socket, {"cmd": "status", "app": "crash"})
    return reply["apps"][0]["restarts"]["crash"]


def fd_burst(pid, n=200):
    """(fewest, most) fds of pid over n quick samples."""
    counts = []
    for _ in range(n):
        counts.append(hd.fd_count(pid))
        time.sleep(0.002)
    return min(counts), max(counts)


def measure(dr, label):
    lo, hi = fd_burst(dr.pid)
    ctl, raw = hd.status_latency(dr, 20)
    m = {"restarts": crash_restarts(dr), "rss": hd.rss_kib(dr.pid), "fd_min": lo, "fd_max": hi,
         "ctl_ms": ctl * 1000, "raw_ms": raw * 1000}
    print(f"{label}: {m['restarts']} restarts, master RSS {m['rss']} KiB, fds {lo}..{hi}, "
          f"status median {m['ctl_ms']:.1f} ms (droverctl) / {m['raw_ms']:.2f} ms (raw)")
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
    h.wait_until(lambda: crash_restarts(dr) >= WARMUP, 60, interval=0.1,
                 what=f"{WARMUP} restarts (warm-up)")
    start = measure(dr, "\nafter warm-up")
    # About 1 ms per restart on a quiet machine; the deadline leaves room for a busy one.
    h.wait_until(lambda: crash_restarts(dr) >= RESTARTS, max(60, RESTARTS / 50), interval=0.2,
                 what=f"{RESTARTS} restarts")
    end = measure(dr, "at the end")
    took = time.monotonic() - t0
    print(f"{end['restarts']} restarts in {took:.1f}s ({end['restarts'] / took:.0f}/s)")

    assert dr.proc.poll() is None
    hd.assert_no_lasting_zombie(dr.pid)
    assert end["fd_min"] <= start["fd_min"], f"fds grew: {start} -> {end}"
    assert end["fd_max"] <= start["fd_max"] + 2, f"fds grew: {start} -> {end}"
    if not hd.sanitized(dr.pid) and not hd.under_valgrind():
        # Worker logs go to a bounded ring per app; nothing else should accumulate per restart.
        assert end["rss"] - start["rss"] < 4 * 1024, f"RSS grew: {start} -> {end}"
    assert end["ctl_ms"] <= 3 * start["ctl_ms"] + 5, f"status slowed down: {start} -> {end}"
    assert end["raw_ms"] <= 3 * start["raw_ms"] + 5, f"status slowed down: {start} -> {end}"

    web = hd.app_status(dr, "web")
    assert {w["pid"] for w in web["workers"]} == web_pids and web["ready"] == 2, web
    assert h.http_ok(addr)
    dr.signal(signal.SIGTERM)
    assert dr.wait_exit(15) == 0
    assert not any(w.alive() for w in dr.known_workers())
