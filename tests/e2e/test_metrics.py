"""The combined metrics page and the admin endpoint (SPEC sections 4 and 6).

Workers are tests/e2e/helpers/metrics_worker.py: their numbers depend only on their slot, so
every sum on the page is known in advance (see the helper's docstring). A replacement process
in a slot counts from zero, so "the sum did not change" is exact after kills, reloads and
scale-downs. The page is read the way Prometheus reads it: parsed line by line, and checked
with promtool.
"""

import http.client
import json
import os
import re
import shutil
import socket
import signal
import subprocess
import time

import pytest

import drover_harness as h

PROMTOOL = shutil.which("promtool")
FAST_STOP = {"shutdown_timeout": "5s", "drain_timeout": "1s", "save_timeout": "1s",
             "close_timeout": "1s", "cleanup_timeout": "1s"}


def worker(*args):
    return h.helper("metrics_worker.py", "--interval", "0.1", *args)


def start(drover, apps, **supervisor):
    """Starts drover with an admin endpoint on a free port; returns its address once
    /health/live answers."""
    admin = f"127.0.0.1:{h.free_port()}"
    sup = dict(FAST_STOP, admin_listen=admin)
    sup.update(supervisor)
    drover.start(supervisor=sup, apps=apps)
    drover.wait_http(admin, "/health/live")
    return admin


def request(admin, path, method="GET", timeout=5.0):
    """(status, headers dict, body text) of one request on a fresh connection."""
    conn = http.client.HTTPConnection(*h.parse_address(admin)[1], timeout=timeout)
    try:
        conn.request(method, path, headers={"Connection": "close"})
        resp = conn.getresponse()
        body = resp.read().decode("utf-8", "replace")
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, body
    finally:
        conn.close()


LABEL_RE = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*,?')


def parse_page(text):
    """Prometheus text format 0.0.4 -> {(name, frozenset(labels.items())): value}. Fails on a
    series that appears twice or a family typed twice."""
    samples, typed = {}, set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            name = line.split()[2]
            assert name not in typed, f"family {name} typed twice"
            typed.add(name)
            continue
        if not line or line.startswith("#"):
            continue
        head, value = line.rsplit(" ", 1)
        labels = {}
        if "{" in head:
            name, rest = head.split("{", 1)
            assert rest.endswith("}"), line
            rest = rest[:-1]
            pos = 0
            while pos < len(rest):
                m = LABEL_RE.match(rest, pos)
                assert m, f"bad labels in {line!r}"
                labels[m.group(1)] = m.group(2).encode().decode("unicode_escape")
                pos = m.end()
        else:
            name = head
        key = (name, frozenset(labels.items()))
        assert key not in samples, f"series twice on the page: {line}"
        samples[key] = float(value)
    return samples


def scrape(admin):
    status, headers, body = request(admin, "/metrics")
    assert status == 200
    assert headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    return parse_page(body)


def val(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())))


def wait_value(admin, name, want, timeout=10.0, **labels):
    """Waits until the series has exactly the value want; returns the page."""
    def look():
        page = scrape(admin)
        return page if val(page, name, **labels) == want else None
    try:
        return h.wait_until(look, timeout, interval=0.05, what=f"{name}{labels} == {want}")
    except h.Timeout as e:
        page = scrape(admin)
        raise AssertionError(f"{e}; now {val(page, name, **labels)}") from None


def promtool_check(body):
    if not PROMTOOL:
        pytest.skip("promtool not installed (apt-get install prometheus)")
    r = subprocess.run([PROMTOOL, "check", "metrics"], input=body, text=True,
                       capture_output=True, timeout=30)
    assert r.returncode == 0, f"promtool check metrics: {r.stdout}{r.stderr}"


def worker_pid_of_slot(drover, slot):
    for pid in drover.workers():
        if h.proc_environ(pid).get("DROVER_WORKER_ID") == str(slot):
            return pid
    return None


# ---------------------------------------------------------------------------------------------


def test_merged_sums_gauges_histograms(drover):
    admin = start(drover, {"m": {"command": worker(), "workers": 3, "ready": "notify"}})
    page = wait_value(admin, "test_requests_total", 60, app="m", code="200")
    # Counters: summed. 10 + 20 + 30, and 0 + 1 + 2.
    assert val(page, "test_requests_total", app="m", code="500") == 3
    # Gauges by agg over slots 0..2 (values 1, 2, 3).
    assert val(page, "test_level_summed", app="m") == 6
    assert val(page, "test_level_max", app="m") == 3
    assert val(page, "test_level_min", app="m") == 1
    assert val(page, "test_level_avg", app="m") == 2
    for s in range(3):
        assert val(page, "test_level_per_worker", app="m", worker=str(s)) == s + 1
    assert val(page, "test_level_per_worker", app="m") is None
    # Histogram buckets add up: [0,1,2] + [1,2,3] + [2,3,4].
    for le, want in (("0.1", 3), ("1", 6), ("+Inf", 9)):
        assert val(page, "test_latency_seconds_bucket", app="m", op="get", le=le) == want
    assert val(page, "test_latency_seconds_sum", app="m", op="get") == 3
    assert val(page, "test_latency_seconds_count", app="m", op="get") == 9

    # drover's own series (SPEC section 6).
    assert val(page, "drover_workers", app="m", state="ready") == 3
    assert val(page, "drover_workers", app="m", state="backoff") == 0
    for reason in ("crash", "memory", "reload", "manual", "hang", "lifetime", "requested",
                   "scale"):
        assert val(page, "drover_worker_restarts_total", app="m", reason=reason) == 0
    for s in range(3):
        assert val(page, "drover_worker_memory_bytes", app="m", worker=str(s)) > 0
        assert val(page, "drover_worker_cpu_seconds_total", app="m", worker=str(s)) >= 0
        assert val(page, "drover_worker_generation", app="m", worker=str(s)) == 1
        assert 0 <= val(page, "drover_worker_metrics_age_seconds", app="m", worker=str(s)) < 5
    assert val(page, "drover_reloads_total", app="m", result="done") == 0
    assert val(page, "drover_reload_duration_seconds_count", app="m") == 0
    assert val(page, "drover_shutdown_phase") == 0
    assert val(page, "drover_uptime_seconds") > 0
    assert val(page, "drover_scrape_duration_seconds") >= 0
    assert val(page, "drover_log_lines_dropped_total", app="m") == 0
    assert val(page, "drover_build_info", version=re.search(
        r'drover_build_info\{version="([^"]+)"', request(admin, "/metrics")[2]).group(1)) == 1
    assert val(page, "drover_metrics_refused_total", app="m", reason="malformed") == 0
    assert val(page, "drover_metrics_conflicts", app="m") == 0

    # promtool accepts the page, lint included.
    promtool_check(request(admin, "/metrics")[2])

    # /metrics/json says the same.
    status, headers, body = request(admin, "/metrics/json")
    assert status == 200 and headers["content-type"] == "application/json"
    fams = {f["name"]: f for f in json.loads(body)["families"]}
    reqs = fams["test_requests_total"]
    assert reqs["type"] == "counter" and reqs["help"] == "Requests answered."
    assert {(s["labels"]["code"], s["value"]) for s in reqs["samples"]} == {("200", 60),
                                                                             ("500", 3)}
    lat = fams["test_latency_seconds"]
    assert lat["buckets"] == [0.1, 1]
    assert lat["samples"][0]["counts"] == [3, 6, 9] and lat["samples"][0]["count"] == 9


def test_hello_http_extra_series(drover):
    """hello-http --extra-series N: N more counters, the same label sets in every worker, so
    the page merges them into N series (the benchmarks use it for 100 series per worker)."""
    admin = start(drover, {"hello": {"command": h.hello("--extra-series", 5), "workers": 2,
                                     "listen": f"127.0.0.1:{h.free_port()}",
                                     "ready": "notify"}})
    page = wait_value(admin, "hello_extra_total", 8, app="hello", id="4")   # 4 + 4
    assert {dict(k[1])["id"] for k in page if k[0] == "hello_extra_total"} == \
        {str(i) for i in range(5)}
    assert val(page, "hello_extra_total", app="hello", id="0") == 0
    promtool_check(request(admin, "/metrics")[2])


def test_counts_survive_kill_reload_and_scale_down(drover):
    admin = start(drover, {"m": {"command": worker(), "workers": 3, "ready": "notify",
                                 "metrics_per_worker": True, "restart_delay": "100ms"}})
    wait_value(admin, "test_requests_total", 60, app="m", code="200")
    victim = worker_pid_of_slot(drover, 1)
    assert victim
    snapshots = val(scrape(admin), "drover_metrics_snapshots_total", app="m")
    os.kill(victim, signal.SIGKILL)

    # The replacement in slot 1 reports from zero (its own per-worker series says so), and the
    # sum keeps what the killed worker had sent.
    page = wait_value(admin, "test_requests_total", 0, app="m", worker="1", code="200")
    assert worker_pid_of_slot(drover, 1) not in (None, victim)
    assert val(page, "drover_worker_restarts_total", app="m", reason="crash") == 1
    assert val(page, "drover_metrics_snapshots_total", app="m") > snapshots
    assert val(page, "test_requests_total", app="m", code="200") == 60
    assert val(page, "test_requests_total", app="m", code="500") == 3
    assert val(page, "test_latency_seconds_count", app="m", op="get") == 9
    # Gauges are over live workers: the replacement's gauge counts, the dead one's is gone.
    assert val(page, "test_level_summed", app="m") == 6
    # The per-worker view: live workers only, with their own numbers.
    assert val(page, "test_requests_total", app="m", worker="0", code="200") == 10
    assert val(page, "test_requests_total", app="m", worker="2", code="200") == 30
    assert val(page, "test_level_per_worker", app="m", worker="1") == 2  # not duplicated

    # A rolling reload (SIGHUP: same file, new generation): every worker replaced, every count
    # kept.
    drover.signal(signal.SIGHUP)
    for s in range(3):
        wait_value(admin, "drover_worker_generation", 2, app="m", worker=str(s))
    page = wait_value(admin, "drover_reloads_total", 1, app="m", result="done")
    for s in range(3):
        wait_value(admin, "test_requests_total", 0, app="m", worker=str(s), code="200")
    page = scrape(admin)
    assert val(page, "test_requests_total", app="m", code="200") == 60
    assert val(page, "drover_reload_duration_seconds_count", app="m") == 1
    # Scale down to one (SIGTTOU twice): the two leaving workers' counts stay.
    drover.signal(signal.SIGTTOU)
    h.wait_until(lambda: len(drover.workers()) == 2, 10, what="two workers left")
    drover.signal(signal.SIGTTOU)
    h.wait_until(lambda: len(drover.workers()) == 1, 10, what="one worker left")
    page = wait_value(admin, "test_level_summed", 1, app="m")
    assert val(page, "test_requests_total", app="m", code="200") == 60
    assert val(page, "test_requests_total", app="m", worker="1", code="200") is None
    promtool_check(request(admin, "/metrics")[2])


def test_misbehaving_workers_are_contained(drover):
    apps = {"good": {"command": worker(), "workers": 1, "ready": "notify"}}
    for mode in ("garbage", "huge", "malformed", "overlimit", "flood"):
        apps[mode] = {"command": worker("--mode", mode), "workers": 1, "ready": "notify"}
    admin = start(drover, apps)
    wait_value(admin, "test_requests_total", 10, app="good", code="200")

    def refused(app, reason):
        return val(scrape(admin), "drover_metrics_refused_total", app=app, reason=reason) or 0
    h.wait_until(lambda: refused("malformed", "malformed") > 0, 10, what="malformed refused")
    h.wait_until(lambda: refused("overlimit", "worker_limit") > 0, 10, what="overlimit refused")
    drover.wait_record(lambda r: r.get("app") == "garbage" and "channel closed" in r.get("msg", "")
                       and "protocol" in r.get("msg", ""), what="garbage: channel closed")
    drover.wait_record(lambda r: r.get("app") == "huge" and "1 MiB" in r.get("msg", ""),
                       what="huge: channel closed, line over 1 MiB")
    # The malformed worker is told once, not every 100 ms.
    assert len(drover.find(lambda r: r.get("app") == "malformed"
                           and "refused" in r.get("msg", ""))) == 1

    # While the flood goes on, scrapes stay quick and exact, and drover stays small.
    for _ in range(20):
        t0 = time.monotonic()
        page = scrape(admin)
        assert time.monotonic() - t0 < h.scaled(2.0)
        assert val(page, "test_requests_total", app="good", code="200") == 10
    assert val(page, "bench_series_total", app="flood", id="1999") == 1999
    for app in ("garbage", "huge", "malformed", "overlimit"):
        assert val(page, "test_requests_total", app=app, code="200") is None
    assert val(page, "drover_workers", app="garbage", state="ready") == 1
    with open(f"/proc/{drover.pid}/status") as f:
        rss_kb = int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))
    with open(f"/proc/{drover.pid}/maps") as f:
        asan = "libasan" in f.read()  # its quarantine alone holds 256 MB of freed memory
    assert rss_kb < (1024 if asan else 300) * 1024, f"drover uses {rss_kb} kB"
    assert drover.proc.poll() is None
    promtool_check(request(admin, "/metrics")[2])


def test_health_endpoints(drover):
    admin = start(drover, {"slow": {"command": worker("--ready-delay", "1.5"), "workers": 2,
                                    "ready": "notify"}})
    # Live at once; ready only once every app has a ready worker.
    assert request(admin, "/health")[0] == 200
    assert request(admin, "/health/live")[0] == 200
    status, _, body = request(admin, "/health/ready")
    assert status == 503 and "slow" in body
    h.wait_until(lambda: request(admin, "/health/ready")[0] == 200, 10, what="ready")

    assert request(admin, "/nope")[0] == 404
    assert request(admin, "/metrics/")[0] == 404
    status, headers, _ = request(admin, "/metrics", method="POST")
    assert status == 405 and "GET" in headers.get("allow", "")
    assert request(admin, "/health", method="DELETE")[0] == 405
    status, headers, body = request(admin, "/metrics", method="HEAD")
    assert status == 200 and body == ""

    # Ready means one ready worker per app; the detailed view shows each.
    def both_ready():
        status, headers, body = request(admin, "/health/detailed")
        assert status == 200 and headers["content-type"] == "application/json"
        doc = json.loads(body)
        return doc if doc["apps"][0]["ready"] == 2 else None
    doc = h.wait_until(both_ready, 10, what="both workers ready")
    assert doc["ok"] is True and doc["ready"] is True and doc["state"] == "running"
    (app,) = doc["apps"]
    assert app["name"] == "slow" and app["state"] == "running" and app["ready"] == 2
    assert set(app["restarts"]) == {"crash", "memory", "reload", "manual", "hang", "lifetime",
                                    "requested", "scale"}
    assert isinstance(app["last_errors"], list)
    assert set(app["reloads"]) == {"done", "failed"} and "series" in app["metrics"]
    assert [w["slot"] for w in app["workers"]] == [0, 1]
    for w in app["workers"]:
        assert w["state"] == "ready" and w["pid"] > 0 and w["rss_bytes"] > 0
    # The same "apps" schema as the control socket's status reply (SPEC section 7).
    st = drover.status()
    if st is not None:
        (capp,) = st["apps"]
        assert set(capp) <= set(app), set(capp) - set(app)
        assert set(capp["workers"][0]) <= set(app["workers"][0])


def test_ready_is_503_during_shutdown(drover):
    admin = start(drover, {"stuck": {"command": worker("--ignore-phases"), "workers": 1,
                                     "ready": "notify"}},
                  drain_timeout="3s", shutdown_timeout="8s")
    h.wait_until(lambda: request(admin, "/health/ready")[0] == 200, 10, what="ready")
    drover.signal(signal.SIGTERM)

    # initiated, then drain (which the worker never finishes): not ready, still live.
    def draining():
        page = scrape(admin)
        return page if val(page, "drover_shutdown_phase") == 2 else None
    h.wait_until(draining, 3, interval=0.05, what="drover_shutdown_phase == 2 (drain)")
    status, _, body = request(admin, "/health/ready")
    assert status == 503 and "shutting down" in body
    assert request(admin, "/health/live")[0] == 200
    doc = json.loads(request(admin, "/health/detailed")[2])
    assert doc["state"] == "stopping" and doc["ready"] is False
    assert doc["shutdown_phase"] == "drain"
    assert drover.wait_exit(15) == 1  # the drain timed out: forced


def test_worker_can_fetch_the_page(drover):
    start(drover, {"m": {"command": worker("--get-metrics"), "workers": 1, "ready": "notify"}})
    rec = drover.wait_record(lambda r: "metrics_page" in r.get("msg", ""),
                             what="the worker's metrics_page line")
    assert "format=text" in rec["msg"] and "has_requests=True" in rec["msg"]


def test_admin_bind_failure_exits_3(drover):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        addr = f"127.0.0.1:{s.getsockname()[1]}"
        drover.start(supervisor=dict(FAST_STOP, admin_listen=addr),
                     apps={"m": {"command": worker(), "workers": 1}})
        assert drover.wait_exit(10) == 3
    assert f"bind('{addr}') failed: {h.EADDRINUSE_TEXT}" in drover.output()


def test_own_series_of_many_apps_without_workers(drover):
    """drover's own series are laid out per scrape in storage sized from the apps and workers.
    Many apps and no live worker leave no slack anywhere: every app's series must be on the
    page, whole, and the page must be drover's last word (drover_build_info) too."""
    names = [f"a{i}" for i in range(8)]
    apps = {n: {"command": "/bin/true", "workers": 1, "restart": "never", "ready": "none"}
            for n in names}
    admin = start(drover, apps)
    h.wait_until(lambda: not drover.workers() and all(
        not a["workers"] or all(w["state"] == "backoff" for w in a["workers"])
        for a in (drover.status() or {"apps": [{"workers": [1]}]})["apps"]), 10,
        what="every worker gone")
    page = scrape(admin)
    for n in names:
        for state in ("starting", "ready", "draining", "stopping", "backoff"):
            assert val(page, "drover_workers", app=n, state=state) == 0, (n, state)
        assert val(page, "drover_reloads_total", app=n, result="done") == 0, n
        assert val(page, "drover_reloads_total", app=n, result="failed") == 0, n
        assert val(page, "drover_reload_duration_seconds_count", app=n) == 0, n
        assert val(page, "drover_log_lines_dropped_total", app=n) == 0, n
        assert val(page, "drover_metrics_snapshots_total", app=n) == 0, n
        assert val(page, "drover_metrics_conflicts", app=n) == 0, n
        assert val(page, "drover_metrics_series", app=n) == 0, n
    assert [v for (name, _), v in page.items() if name == "drover_build_info"] == [1]
    assert val(page, "drover_shutdown_phase") == 0


def test_a_repeated_snapshot_keeps_the_worker_fresh(drover):
    """The master does not parse again a snapshot identical to the last one (an idle worker
    sends the same every interval), but it still counts as received: the worker's metrics
    age stays small and its numbers stay on the page."""
    admin = start(drover, {"m": {"command": worker(), "workers": 1, "ready": "notify"}})
    page = wait_value(admin, "test_requests_total", 10, app="m", code="200")
    time.sleep(1.5)  # fifteen identical snapshots at --interval 0.1
    page = scrape(admin)
    assert val(page, "test_requests_total", app="m", code="200") == 10
    assert val(page, "drover_worker_metrics_age_seconds", app="m", worker="0") < 0.5
