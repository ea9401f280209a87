"""A real Prometheus scraping a real drover (issue 17, SPEC sections 6 and 9).

Debian's /usr/bin/prometheus is started on 127.0.0.1 with a 1 s scrape and evaluation interval,
conf/monitoring's alert rules (with their `for:` durations shortened) and drover's admin
endpoint as its only target. While hello-http workers serve requests and are killed (-9),
reloaded and scaled, Prometheus's own query API must report resets() == 0 for the apps' merged
counters; the same query on the per-worker series (metrics_per_worker) must see resets, so the
assertion can fail. Every alert rule evaluates without error, the crash-loop alert fires for
an app whose command exits at once and clears once that app starts for real, and every query
of conf/monitoring/grafana-dashboard.json returns data (or, for a series this drover does not
export, at least evaluates).
"""

import json
import os
import re
import signal
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

import drover_harness as h

PROMETHEUS = Path("/usr/bin/prometheus")
MONITORING = h.REPO / "conf" / "monitoring"
FAST_STOP = {"shutdown_timeout": "5s", "drain_timeout": "1s", "save_timeout": "1s",
             "close_timeout": "1s", "cleanup_timeout": "1s"}

pytestmark = pytest.mark.skipif(not PROMETHEUS.exists(), reason="no /usr/bin/prometheus "
                                "(Debian package prometheus, scripts/setup installs it)")


class Prometheus:
    def __init__(self, tmp, target):
        self.addr = f"127.0.0.1:{h.free_port()}"
        rules = (MONITORING / "drover-alerts.yml").read_text()
        # Short holds, so that alerts fire within the test; the expressions are the shipped ones.
        rules = re.sub(r"(?m)^(\s+for:) \S+$", r"\1 2s", rules)
        (tmp / "rules.yml").write_text(rules)
        (tmp / "prometheus.yml").write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            f"rule_files:\n  - {tmp / 'rules.yml'}\n"
            "scrape_configs:\n  - job_name: drover\n    static_configs:\n"
            f"      - targets: ['{target}']\n")
        self.log = open(tmp / "prometheus.log", "wb")
        self.log_path = tmp / "prometheus.log"
        self.proc = subprocess.Popen(
            [str(PROMETHEUS), f"--config.file={tmp / 'prometheus.yml'}",
             f"--storage.tsdb.path={tmp / 'tsdb'}", f"--web.listen-address={self.addr}",
             "--log.level=warn"],
            cwd=tmp, stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log,
            start_new_session=True)

    def stop(self):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()

    def api(self, path, **params):
        assert self.proc.poll() is None, \
            f"prometheus exited:\n{self.log_path.read_text(errors='replace')[-4000:]}"
        url = f"http://{self.addr}{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        with urllib.request.urlopen(url, timeout=5) as resp:
            body = json.load(resp)
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr):
        """The instant vector of expr now, as [(labels, float)]; fails on a query error."""
        try:
            data = self.api("/api/v1/query", query=expr)
        except urllib.error.HTTPError as e:
            raise AssertionError(f"query {expr!r} failed: {e.read().decode()}") from None
        assert data["resultType"] == "vector", (expr, data)
        return [(r["metric"], float(r["value"][1])) for r in data["result"]]

    def value(self, expr):
        got = self.query(expr)
        return got[0][1] if len(got) == 1 else None

    def wait_ready(self):
        def ready():
            try:
                with urllib.request.urlopen(f"http://{self.addr}/-/ready", timeout=1) as r:
                    return r.status == 200
            except OSError:
                assert self.proc.poll() is None, \
                    f"prometheus exited:\n{self.log_path.read_text(errors='replace')}"
                return False
        h.wait_until(ready, h.scaled(20), interval=0.1, what="prometheus /-/ready")

    def wait(self, expr, pred, timeout, what):
        """Polls expr until pred(value) is true (value None when expr has not one sample)."""
        return h.wait_until(lambda: (lambda v: v if v is not None and pred(v) else None)(
            self.value(expr)) is not None, h.scaled(timeout), interval=0.2,
            what=f"{what} (prometheus: {expr} = {self.value(expr)})")

    def alerts(self, name):
        return [a for a in self.api("/api/v1/alerts")["alerts"]
                if a["labels"]["alertname"] == name]


class Load(threading.Thread):
    """GETs on hello's address until stopped; failures during kills are expected."""

    def __init__(self, addr):
        super().__init__(daemon=True)
        self.addr, self.stopped, self.ok = addr, threading.Event(), 0

    def run(self):
        while not self.stopped.is_set():
            try:
                if h.http_get(self.addr, "/", timeout=1.0)[0] == 200:
                    self.ok += 1
            except (OSError, AssertionError, Exception):  # noqa: BLE001 - any failure
                time.sleep(0.01)


def hello_pids(drover):
    pids = []
    for pid in drover.workers():
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"hello-http" in cmd:
            pids.append(pid)
    return sorted(pids)


@pytest.fixture
def prometheus_factory(tmp):
    made = []

    def make(target):
        d = tmp / "prometheus"
        d.mkdir()
        p = Prometheus(d, target)
        made.append(p)
        return p
    yield make
    for p in made:
        p.stop()


def test_real_prometheus(drover, tmp, prometheus_factory):
    flag = tmp / "crashy-may-run"
    admin = f"127.0.0.1:{h.free_port()}"
    listen = f"127.0.0.1:{h.free_port()}"
    drover.start(supervisor=dict(FAST_STOP, admin_listen=admin), apps={
        "hello": {"command": h.hello(), "workers": 2, "listen": listen, "ready": "notify",
                  "metrics_per_worker": True, "restart_delay": "100ms"},
        # Exits at once until the flag exists: a crash loop that the test can end.
        "crashy": {"command": f"/bin/sh -c 'test -e {flag} || exit 3; exec sleep 600'",
                   "workers": 1, "ready": "delay", "ready_delay": "300ms", "restart_delay": "1500ms",
                   "restart_delay_max": "1500ms", "min_uptime": "1s"},
    })
    drover.wait_http(admin, "/health/live")
    drover.wait_http(listen, "/")
    prom = prometheus_factory(admin)
    prom.wait_ready()
    prom.wait('up{job="drover"}', lambda v: v == 1, 20, "drover scraped")

    load = Load(listen)
    load.start()
    try:
        merged = 'http_requests_total{app="hello",worker="",code="200"}'
        prom.wait(merged, lambda v: v > 0, 20, "hello's merged request counter in prometheus")

        # Let Prometheus see every worker count for 3 scrapes, so that the replacement of a
        # killed one shows a drop in the per-worker series (the check that resets() can fail).
        prom.wait('min(count_over_time(http_requests_total{app="hello",worker!="",code="200"}'
                  '[10s]))', lambda v: v >= 3, 20, "three scrapes of every hello worker")
        # kill -9 one worker, wait until Prometheus has seen its replacement serve.
        victim = hello_pids(drover)[0]
        before = prom.value('drover_worker_restarts_total{app="hello",reason="crash"}')
        os.kill(victim, signal.SIGKILL)
        prom.wait('drover_worker_restarts_total{app="hello",reason="crash"}',
                  lambda v: v > before, 20, "the kill -9 counted as a crash")
        prom.wait('sum(drover_workers{app="hello",state="ready"})', lambda v: v == 2, 20,
                  "two ready hello workers again")

        # A rolling reload: every hello worker replaced by generation 2. crashy's new worker
        # exits before it is ready, so its reload is rolled back and droverctl exits 1.
        r = drover.ctl("reload", timeout=30)
        assert "hello: reload done" in r.stdout + r.stderr, r.stdout + r.stderr
        assert "crashy: reload rolled back" in r.stdout + r.stderr, r.stdout + r.stderr
        prom.wait('min(drover_worker_generation{app="hello"})', lambda v: v >= 2, 30,
                  "every hello worker at generation 2")

        # Scale up, then down below where we started.
        for n in (4, 1):
            r = drover.ctl("scale", "hello", str(n), timeout=30)
            assert r.returncode == 0, r.stdout + r.stderr
            prom.wait('sum(drover_workers{app="hello",state="ready"}) and '
                      'sum(drover_workers{app="hello",state=~"starting|draining|stopping"}) == 0',
                      lambda v: v == n, 30, f"hello at {n} ready workers")
        # Two more scrapes under load, after the last change.
        seen = prom.value(merged)
        prom.wait(merged, lambda v: v > seen, 10, "the merged counter still growing")
    finally:
        load.stopped.set()
        load.join(timeout=5)
    assert load.ok > 0

    # The merged app counters never reset ...
    window = "[5m]"
    for name in ("http_requests_total", "http_request_duration_seconds_count",
                 "http_request_duration_seconds_sum", "http_request_duration_seconds_bucket"):
        got = prom.query(f'resets({name}{{app="hello",worker=""}}{window})')
        assert got, f"no merged {name} in prometheus"
        assert [(m, v) for m, v in got if v != 0] == [], f"{name} reset"
    # ... while the per-worker view of the same counter does, when its worker is replaced: the
    # query would catch a drop.
    per_worker = prom.query(f'resets(http_requests_total{{app="hello",worker!=""}}{window}) > 0')
    assert per_worker, ("the per-worker series showed no reset, so resets() proves nothing "
                        "here: " + json.dumps(prom.api("/api/v1/query", query='http_requests_total{app="hello",worker!=""}[5m]')))

    # Every alert rule evaluates without error.
    def rules_ok():
        rules = [r for g in prom.api("/api/v1/rules")["groups"] for r in g["rules"]]
        assert len(rules) == 9, [r["name"] for r in rules]
        bad = [(r["name"], r["health"], r.get("lastError")) for r in rules
               if r["health"] != "ok" or r.get("lastError")]
        assert all(health != "err" for _, health, _ in bad), bad
        return not bad
    h.wait_until(rules_ok, h.scaled(10), interval=0.2, what="every rule health ok")

    # The crash loop fires for crashy, and only for it; then crashy starts for real and the
    # alert clears.
    def crash_loop(state):
        return [a for a in prom.alerts("DroverCrashLoop") if a["state"] == state]
    firing = h.wait_until(lambda: crash_loop("firing"), h.scaled(30), interval=0.2,
                          what="DroverCrashLoop firing")
    assert {a["labels"]["app"] for a in firing} == {"crashy"}
    assert prom.alerts("DroverDown") == []
    rolled_back = h.wait_until(lambda: [a for a in prom.alerts("DroverReloadRolledBack")
                                        if a["state"] == "firing"], h.scaled(10), interval=0.2,
                               what="DroverReloadRolledBack firing")
    assert {a["labels"]["app"] for a in rolled_back} == {"crashy"}
    flag.write_text("")
    h.wait_until(lambda: not prom.alerts("DroverCrashLoop"), h.scaled(30), interval=0.2,
                 what="DroverCrashLoop cleared")
    prom.wait('sum(drover_workers{app="crashy",state="ready"})', lambda v: v == 1, 10,
              "crashy running")

    # Every query of the dashboard returns data, unless it reads a series that this drover
    # does not export (then it must still evaluate).
    page = h.http_get(admin, "/metrics")[1]
    exported = set(re.findall(r"(?m)^([a-zA-Z_:][a-zA-Z0-9_:]*)", page))
    dash = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    exprs += [a["expr"] for a in dash["annotations"]["list"]]
    assert len(exprs) >= 15
    empty = []
    for e in exprs:
        q = e.replace("$app", ".*").replace("$__rate_interval", "1m")
        got = prom.query(q)
        if got:
            continue
        names = set(re.findall(r"\b((?:drover|http)_[a-z_]+?)(?:_bucket|_sum|_count)?\b", q))
        missing = {n for n in names if n not in exported and n + "_bucket" not in exported}
        assert missing, f"dashboard query returned no data: {q}"
        empty.append((q, sorted(missing)))
    print("dashboard queries without data (series not exported by this drover):", empty)
