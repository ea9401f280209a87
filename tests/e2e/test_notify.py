"""Readiness (SPEC 3 `ready`, SPEC 4): an unmodified socket-activated app that only speaks
sd_notify runs under drover; a worker that never says READY=1 is killed after ready_timeout."""

import time

import drover_harness as h


def workers_state(drover):
    """{pid: state} from `droverctl status`, or None when droverctl cannot tell yet."""
    st = drover.status()
    if not st:
        return None
    return {w.get("pid"): w.get("state") for a in st.get("apps", []) for w in a.get("workers", [])}


def test_unmodified_socket_activation_app(drover):
    addr = f"127.0.0.1:{h.free_port()}"
    drover.start(apps={"plain": {"command": h.helper("sockact_app.py"), "workers": 2,
                                 "listen": addr, "ready": "notify", "ready_timeout": "1500ms",
                                 "restart_delay": "100ms"}})
    drover.wait_http(addr)
    workers = set(drover.wait_workers(2))
    pids = h.serving_pids(addr, want=2, timeout=10)
    assert pids == workers
    states = workers_state(drover)
    if states is not None:
        h.wait_until(lambda: set((workers_state(drover) or {}).values()) == {"ready"}, 5,
                     what="both workers 'ready' in droverctl status")
    # READY=1 was honoured: past ready_timeout the same workers still run, none was replaced.
    start = time.monotonic()
    h.wait_until(lambda: time.monotonic() - start > 2.5, 5, what="ready_timeout to pass")
    assert set(drover.workers()) == workers, drover.find(lambda r: r.get("app") == "plain")
    assert not drover.find(lambda r: r.get("app") == "plain" and r.get("level") == "error"
                           and "stream" not in r)


def test_status_text_that_is_not_utf8_still_shows(drover):
    """STATUS= over sd_notify is raw bytes: status shows it with '?' for what is not UTF-8."""
    addr = f"127.0.0.1:{h.free_port()}"
    drover.start(apps={"odd": {"command": h.helper("sockact_app.py", "--bad-status"),
                               "workers": 1, "listen": addr, "ready": "notify"}})
    drover.wait_http(addr)

    def status_text():
        st = drover.status() or {}
        texts = [w.get("status") for a in st.get("apps", []) for w in a.get("workers", [])]
        return texts[0] if texts and texts[0] else None
    assert h.wait_until(status_text, 10, what="the worker's status text") == "serving ?? clients"


def test_never_ready_is_killed_and_restarted(drover):
    addr = f"127.0.0.1:{h.free_port()}"
    drover.start(apps={"mute": {"command": h.helper("sockact_app.py", "--no-notify"),
                                "workers": 1, "listen": addr, "ready": "notify",
                                "ready_timeout": "1s", "restart_delay": "100ms",
                                "restart_delay_max": "500ms", "min_uptime": "500ms"}})
    (first,) = drover.wait_workers(1)
    ident = h.Identity(first)
    # Killed after ready_timeout (1 s), not before, and replaced by a new worker.
    h.wait_until(lambda: not ident.alive(), 3, interval=0.02,
                 what=f"the never-ready worker {first} to be killed")
    lived = h.uptime() - ident.start / h.CLK_TCK
    assert lived >= 0.9, f"killed after {lived:.2f}s, before ready_timeout (1s)"
    h.wait_until(lambda: [p for p in drover.workers() if p != first], 3,
                 what="a new worker after the failed start")
    rec = drover.wait_record(lambda r: r.get("pid") == first and r.get("level") in ("warn", "error")
                             and "stream" not in r and "ready" in str(r.get("msg", "")).lower(),
                             what=f"a warn/error record naming readiness for {first}")
    assert rec.get("app") == "mute", rec
    assert drover.proc.poll() is None
