"""Rolling reload, restart and rollback (SPEC section 5): real wrk load against real workers."""

import json
import re
import signal
import subprocess
import threading

import pytest

import drover_harness as h


def web(port, workers=3, **extra):
    app = {"command": h.hello(), "workers": workers, "listen": f"127.0.0.1:{port}",
           "ready": "notify", "ready_timeout": "5s", "kill_timeout": "5s"}
    app.update(extra)
    return {"web": app}


def reload_results(dr):
    return dr.find(lambda r: r.get("outcome") and "reload" in r.get("msg", "")
                   and r.get("app") == "web")


def wait_reloads(dr, n, timeout=20.0):
    return h.wait_until(lambda: (lambda rs: rs if len(rs) >= n else None)(reload_results(dr)),
                        timeout, what=f"{n} reload results")


def ready_floor(dr, start_after):
    """The fewest ready workers at any moment after the app first had start_after ready ones,
    replayed from the state transitions in drover's log."""
    ready = set()
    reached = False
    floor = None
    for r in dr.records():
        if r.get("app") != "web" or "state" not in r or "pid" not in r:
            continue
        if r["state"] == "ready":
            ready.add(r["pid"])
        elif r["state"] in ("draining", "stopping", "exited"):
            ready.discard(r["pid"])
        if len(ready) >= start_after:
            reached = True
        if reached:
            floor = len(ready) if floor is None else min(floor, len(ready))
    return floor


def run_wrk(url, seconds, keepalive):
    args = ["wrk", "-t2", "-c16", f"-d{seconds}s", "--timeout", "5s", url]
    if not keepalive:
        args[1:1] = ["-H", "Connection: close"]
    return subprocess.run(args, capture_output=True, text=True, timeout=seconds + 30)


def wrk_failures(out):
    errors = 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        errors += sum(int(x) for x in m.groups())
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    non2xx = int(m.group(1)) if m else 0
    total = int(re.search(r"(\d+) requests in", out).group(1))
    return errors, non2xx, total


def test_sighup_replaces_every_worker(drover):
    port = h.free_port()
    dr = drover.start(apps=web(port))
    addr = f"127.0.0.1:{port}"
    dr.wait_http(addr)
    before = set(dr.wait_workers(3))
    dr.signal(signal.SIGHUP)
    res = wait_reloads(dr, 1)[0]
    assert res["outcome"] == "done", res
    assert res["generation"] == 2
    after = set(dr.wait_workers(3))
    assert not before & after, f"pids survived the reload: {before & after}"
    assert h.serving_pids(addr, len(after)) == after


@pytest.mark.parametrize("keepalive", [False, True], ids=["close", "keepalive"])
def test_reloads_under_load_lose_nothing(drover, keepalive):
    port = h.free_port()
    dr = drover.start(apps=web(port))
    addr = f"127.0.0.1:{port}"
    dr.wait_http(addr)
    before = set(dr.wait_workers(3))
    result = {}
    t = threading.Thread(target=lambda: result.update(
        p=run_wrk(f"http://{addr}/", 12, keepalive)))
    t.start()
    for i in range(3):
        h.wait_until(lambda: h.http_ok(addr), 5)
        dr.signal(signal.SIGHUP)
        wait_reloads(dr, i + 1, timeout=15)
    t.join()
    out = result["p"].stdout
    errors, non2xx, total = wrk_failures(out)
    assert total > 100, out
    assert (errors, non2xx) == (0, 0), f"requests lost during reloads:\n{out}"
    assert all(r["outcome"] == "done" for r in reload_results(dr))
    after = set(dr.wait_workers(3))
    assert not before & after
    floor = ready_floor(dr, 3)
    assert floor is not None and floor >= 3, f"ready workers dropped to {floor}"


def test_broken_command_rolls_back(drover):
    port = h.free_port()
    dr = drover.start(apps=web(port))
    addr = f"127.0.0.1:{port}"
    dr.wait_http(addr)
    before = set(dr.wait_workers(3))
    dr.write_config(apps=web(port, command="/bin/false"))
    dr.signal(signal.SIGHUP)
    res = wait_reloads(dr, 1)[0]
    assert res["outcome"] == "rolled_back", res
    assert res["generation"] == 1
    assert set(dr.workers()) == before, "the old generation must be untouched"
    assert h.serving_pids(addr, len(before)) == before


def test_invalid_config_is_rejected(drover):
    port = h.free_port()
    dr = drover.start(apps=web(port))
    addr = f"127.0.0.1:{port}"
    dr.wait_http(addr)
    before = set(dr.wait_workers(3))
    path = dr.config_path
    path.write_text(path.read_text() + "bogus_key = 1\n")
    dr.signal(signal.SIGHUP)
    rec = dr.wait_record(lambda r: "reload rejected" in r.get("msg", ""))
    assert "bogus_key" in rec["msg"] and f"{path.name}:" in rec["msg"], rec
    assert set(dr.workers()) == before
    assert not reload_results(dr)
    # One refusal, one record (issue 13, item 13): the signal handler does not say it again.
    dr.signal(signal.SIGUSR1)  # a marker: once its record is there, SIGHUP's are too
    dr.wait_record(lambda r: "log file reopened" in r.get("msg", ""))
    said = dr.find(lambda r: "bogus_key" in r.get("msg", ""))
    assert len(said) == 1, said


def test_reload_changes_worker_count(drover):
    port = h.free_port()
    dr = drover.start(apps=web(port, workers=2))
    addr = f"127.0.0.1:{port}"
    dr.wait_http(addr)
    dr.wait_workers(2)
    dr.write_config(apps=web(port, workers=4))
    dr.signal(signal.SIGHUP)
    assert wait_reloads(dr, 1)[0]["outcome"] == "done"
    four = dr.wait_workers(4)
    assert h.serving_pids(addr, 4) == set(four)
    dr.write_config(apps=web(port, workers=1))
    dr.signal(signal.SIGHUP)
    assert wait_reloads(dr, 2)[1]["outcome"] == "done"
    dr.wait_workers(1)


def test_reload_moves_listen_address(drover):
    port, port2 = h.free_port(), h.free_port()
    dr = drover.start(apps=web(port, workers=2))
    dr.wait_http(f"127.0.0.1:{port}")
    dr.write_config(apps=web(port2, workers=2))
    dr.signal(signal.SIGHUP)
    assert wait_reloads(dr, 1)[0]["outcome"] == "done"
    dr.wait_http(f"127.0.0.1:{port2}")
    # The old address is closed once no worker uses it.
    h.wait_until(lambda: not h.http_ok(f"127.0.0.1:{port}"), 10, what="old address closed")


def test_memory_limit_replaces_worker_without_failed_request(drover):
    port = h.free_port()
    marker = drover.tmp / "grown"
    app = {"command": h.helper("leaky_http.py", "--marker", marker, "--grow-mb", 120),
           "workers": 2, "listen": f"127.0.0.1:{port}", "ready": "notify",
           "max_memory": "64M", "memory_check_interval": "200ms", "min_uptime": "100ms",
           "kill_timeout": "3s"}
    dr = drover.start(apps={"web": app})
    addr = f"127.0.0.1:{port}"
    dr.wait_http(addr)
    result = {}
    t = threading.Thread(target=lambda: result.update(p=run_wrk(f"http://{addr}/", 4, False)))
    t.start()
    rec = dr.wait_record(lambda r: "over max_memory" in r.get("msg", ""), timeout=10)
    assert rec["rss_bytes"] > 64 * 1024 * 1024
    res = dr.wait_record(lambda r: r.get("outcome") == "done" and "memory replacement" in r.get("msg", ""),
                         timeout=10)
    assert res
    t.join()
    errors, non2xx, total = wrk_failures(result["p"].stdout)
    assert total > 0 and (errors, non2xx) == (0, 0), result["p"].stdout
    assert rec["pid"] not in dr.workers()


def test_droverctl_reload_and_restart(drover):
    port = h.free_port()
    dr = drover.start(apps=web(port, workers=2))
    addr = f"127.0.0.1:{port}"
    dr.wait_http(addr)
    before = set(dr.wait_workers(2))
    r = dr.ctl("reload", "web", timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "web: reload done, generation 2" in r.stdout and "ready after" in r.stdout, r.stdout
    after = set(dr.wait_workers(2))
    assert not before & after
    # restart of one slot: only that slot's pid changes, the generation stays
    st = dr.status()
    slot1 = [w["pid"] for a in st["apps"] for w in a["workers"] if w["slot"] == 1][0]
    r = dr.ctl("--json", "restart", "web", "1", timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    res = __import__("json").loads(r.stdout.strip().splitlines()[-1])
    assert res["outcome"] == "done" and res["generation"] == 2
    assert [s["old_pid"] for s in res["slots"]] == [slot1]
    assert slot1 not in dr.wait_workers(2)
    serving = set(dr.wait_workers(2))
    # a broken command: exit 1, the reason, and the failed worker's own last words
    dr.write_config(apps=web(port, workers=2,
                             command="/bin/sh -c 'echo boom-from-worker && exit 3'"))
    r = dr.ctl("reload", timeout=30)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "web: reload rolled back" in r.stderr and "exit code 3" in r.stderr, r.stderr
    assert "boom-from-worker" in r.stderr, r.stderr
    assert set(dr.workers()) == serving
    r = dr.ctl("restart", "web", "9")
    assert r.returncode == 1 and "no slot 9" in r.stderr


def test_failed_reload_reports_output_that_is_not_utf8(drover):
    """The failed worker's last words go into the reload result as JSON text even when they
    are not UTF-8 (bytes become '?'), so droverctl can still read the result."""
    port = h.free_port()
    dr = drover.start(apps=web(port, workers=1))
    dr.wait_http(f"127.0.0.1:{port}")
    dr.write_config(apps=web(port, workers=1,
                             command="/bin/sh -c 'printf \"bad\\377bytes\\n\" >&2; exit 3'"))
    r = dr.ctl("--json", "reload", timeout=30)
    assert r.returncode == 1, r.stdout + r.stderr
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert "apps" in res, r.stdout
    (app,) = res["apps"]
    assert app["outcome"] == "rolled_back", app
    assert "bad?bytes" in app["last_output"], app
    # and drover's own log keeps the line too, instead of a record without its message
    assert dr.find(lambda rec: "last output: bad?bytes" in rec.get("msg", "")), dr.output()[-2000:]


def test_memory_breach_right_after_start_does_not_cut_the_request(drover):
    """Issue 13, item 5 (SPEC 10, "Memory"): a fresh worker that crosses max_memory while
    answering is replaced gracefully, not killed: the request that made it grow is answered.
    Being that soon after its start, its replacement backs off instead."""
    port = h.free_port()
    app = {"command": h.helper("leaky_http.py", "--marker", drover.tmp / "unused", "--slot", 99),
           "workers": 1, "listen": f"127.0.0.1:{port}", "ready": "notify",
           "max_memory": "90M", "memory_check_interval": "100ms", "min_uptime": "30s",
           "restart_delay": "200ms", "kill_timeout": "5s"}
    dr = drover.start(apps={"web": app})
    addr = f"127.0.0.1:{port}"
    dr.wait_http(addr)
    first = dr.workers()[0]
    status, body = h.http_get(addr, "/grow?mb=120&hold_ms=1500", timeout=h.scaled(10))
    assert status == 200 and f"grew 120 MB, leaky pid {first}" in body, (status, body)
    rec = dr.wait_record(lambda r: "over max_memory" in r.get("msg", ""), timeout=5)
    assert rec["pid"] == first and "backing off" in rec["msg"], rec
    assert rec["delay_ms"] > 0, rec
    assert not dr.find(lambda r: "killing it" in r.get("msg", "")), "the worker was killed"
    # The replacement still comes, gracefully: a new worker serves and the big one is gone.
    h.wait_until(lambda: dr.workers() and first not in dr.workers(), 15,
                 what="the worker over max_memory replaced")
    status, body = h.http_get(addr)
    assert status == 200 and "leaky pid" in body
    st = dr.status()["apps"][0]
    assert st["restarts"]["memory"] == 1, st
