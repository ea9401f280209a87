"""Crash handling (SPEC 5): a killed worker is replaced at once; a crash loop backs off."""

import os
import signal
import time

import drover_harness as h


def test_killed_worker_is_replaced(drover):
    addr = f"127.0.0.1:{h.free_port()}"
    drover.start(apps={"web": {"command": h.hello(), "workers": 2, "listen": addr,
                               "ready": "notify", "restart_delay": "100ms",
                               "min_uptime": "1s"}})
    drover.wait_http(addr)
    before = set(drover.wait_workers(2))
    victim = min(before)
    victim_slot = h.proc_environ(victim).get("DROVER_WORKER_ID")
    assert victim_slot is not None
    os.kill(victim, signal.SIGKILL)

    def replaced():
        now = set(drover.workers())
        return now if len(now) == 2 and victim not in now else None
    after = h.wait_until(replaced, 1.0, interval=0.01, what=f"a new worker replacing {victim}")
    new = (after - before).pop()
    assert new not in before

    # The new worker serves: it answers on the shared socket soon.
    seen = h.serving_pids(addr, want=2, timeout=5)
    assert new in seen, f"the replacement {new} never answered (seen {sorted(seen)})"

    rec = drover.wait_record(
        lambda r: r.get("pid") == victim and r.get("level") in ("warn", "error")
        and "stream" not in r, what=f"drover's warn/error record about the exit of {victim}")
    assert rec.get("app") == "web"
    assert rec.get("worker") == int(victim_slot), rec
    # Slots are stable across restarts: the replacement takes the victim's worker id.
    assert h.proc_environ(new).get("DROVER_WORKER_ID") == victim_slot


def test_crash_loop_backs_off(drover):
    record = drover.tmp / "spawns.txt"
    drover.start(apps={"crash": {"command": h.helper("crasher.py", "--record", record),
                                 "workers": 1, "ready": "none", "restart": "always",
                                 "min_uptime": "5s", "restart_delay": "100ms",
                                 "restart_delay_max": "1s"}})

    def spawns():
        try:
            return [float(line.split()[1]) for line in record.read_text().splitlines()]
        except FileNotFoundError:
            return []

    first = h.wait_until(lambda: spawns() or None, 5, what="the first spawn")[0]
    # Watch the slot for 3.5 s after its first start (drover's own speed is not the subject
    # here, so this window is not scaled).
    window = 3.5
    h.wait_until(lambda: time.monotonic() >= first + window, window + 1,
                 what="the observation window")
    times = [t for t in spawns() if t <= first + window]
    gaps = [b - a for a, b in zip(times, times[1:])]
    detail = f"{len(times)} spawns in {window}s, gaps {[round(g, 3) for g in gaps]}"
    # Without backoff this would be hundreds; with 100ms doubling to 1s it is about 7.
    assert 4 <= len(times) <= 12, detail
    # Delays grow: the later gaps are clearly longer than the first one ...
    assert max(gaps[2:]) >= 2 * gaps[0], detail
    assert gaps[0] < 0.5, detail
    # ... and never pass restart_delay_max by much (jitter, python start-up).
    assert max(gaps) < 1.0 * 1.5 + 0.5, detail
    assert drover.proc.poll() is None, "drover must survive a crash loop"

    pids = [int(line.split()[0]) for line in record.read_text().splitlines()]
    drover.wait_record(lambda r: r.get("pid") == pids[0] and r.get("level") in ("warn", "error")
                       and r.get("app") == "crash" and "stream" not in r,
                       what=f"drover's warn/error record about the exit of {pids[0]}")
