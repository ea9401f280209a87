"""The Python SDK (worker-sdk/python/drover_worker): its channel driven from a socketpair, and
under drover with Debian's uvicorn and prometheus_client (unmodified, and with the SDK)."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import drover_harness as h

SDK_DIR = h.REPO / "worker-sdk" / "python"
EXAMPLE = h.REPO / "worker-sdk" / "examples" / "python-asgi"
sys.path.insert(0, str(SDK_DIR))

import drover_worker  # noqa: E402
import prometheus_client as prom  # noqa: E402


class Master:
    """Our end of a socketpair whose other end a Worker uses as its channel."""

    def __init__(self, **env):
        self.ours, theirs = socket.socketpair()
        self.buf = b""
        self.msgs = []
        self.ours.settimeout(0.05)
        self.w = drover_worker.Worker(env=dict(env, DROVER_APP="t"), channel=theirs)

    def send(self, data):
        self.ours.sendall(data if isinstance(data, bytes) else (json.dumps(data) + "\n").encode())

    def pump(self):
        try:
            data = self.ours.recv(1 << 20)
        except socket.timeout:
            return
        self.buf += data
        while b"\n" in self.buf:
            line, self.buf = self.buf.split(b"\n", 1)
            self.msgs.append(json.loads(line))

    def wait(self, pred, what, timeout=5.0):
        def look():
            self.pump()
            return next((m for m in self.msgs if pred(m)), None)
        return h.wait_until(look, h.scaled(timeout), interval=0.0, what=what)


def test_phases_in_order_each_done_when_its_handler_returns():
    m = Master()
    ran = []
    m.w.on_phase("drain", lambda ctx: (time.sleep(0.2), ran.append(("drain", ctx["timeout_ms"]))))
    m.w.on_phase("save", lambda ctx: ran.append(("save", ctx["timeout_ms"])))
    m.w.ready()
    m.w.status("warming\nup")
    m.w.recycle("leak")
    m.wait(lambda x: x["type"] == "recycle", "recycle")
    assert m.msgs[:3] == [{"type": "ready"}, {"type": "status", "text": "warming up"},
                          {"type": "recycle", "reason": "leak"}]
    t0 = time.monotonic()
    m.send({"type": "phase", "phase": "drain", "timeout_ms": 3000})
    m.wait(lambda x: x == {"type": "phase_done", "phase": "drain"}, "drain done")
    assert time.monotonic() - t0 >= 0.19
    for phase in ("save", "close", "cleanup"):
        m.send({"type": "phase", "phase": phase, "timeout_ms": 1000})
        m.wait(lambda x, p=phase: x == {"type": "phase_done", "phase": p}, f"{phase} done")
    assert ran == [("drain", 3000), ("save", 1000)]
    assert m.w.stopping


def test_coroutine_handlers_run_on_the_asyncio_loop():
    import asyncio
    m = Master()
    seen = []

    async def main():
        m.w.use_asyncio()

        async def drain(ctx):
            await asyncio.sleep(0.1)
            seen.append(asyncio.get_running_loop())
        m.w.on_phase("drain", drain)
        m.send({"type": "phase", "phase": "drain", "timeout_ms": 1000})
        while not any(x.get("type") == "phase_done" for x in m.msgs):
            await asyncio.sleep(0.02)
            m.pump()
        return asyncio.get_running_loop()

    loop = asyncio.run(main())
    assert seen == [loop]


def test_heartbeats_when_watchdog_usec_is_set_and_not_otherwise():
    m = Master(WATCHDOG_USEC="100000")
    h.wait_until(lambda: (m.pump(), sum(x["type"] == "heartbeat" for x in m.msgs) >= 3)[1],
                 h.scaled(3), what="3 heartbeats")
    quiet = Master()
    quiet.w.ready()
    quiet.wait(lambda x: x["type"] == "ready", "ready")
    time.sleep(0.3)  # a window in which heartbeats would have come
    quiet.pump()
    assert not any(x["type"] == "heartbeat" for x in quiet.msgs)


def test_garbage_and_a_closed_channel_are_survived(capfd):
    m = Master()
    gone = threading.Event()
    m.w.on_disconnect = lambda why: gone.set()
    m.send(b"not json\n[1]\nnull\n{\"type\":\"from the future\"}\n")
    m.send({"type": "phase", "phase": "save", "timeout_ms": 100})
    m.wait(lambda x: x.get("phase") == "save", "save done after garbage")
    m.ours.close()
    assert gone.wait(h.scaled(3))
    assert m.w.ready() is False  # no channel any more: a no-op, not an exception
    assert "not JSON" in capfd.readouterr().err


def test_prometheus_registry_as_snapshots_refusals_and_a_raising_registry_once(capfd):
    reg = prom.CollectorRegistry()
    c = prom.Counter("app_requests", "requests", ["code"], registry=reg)
    c.labels("200").inc(3)
    prom.Gauge("app_inflight", "g", registry=reg).set(2)
    hist = prom.Histogram("app_seconds", "h", ["route"], buckets=(0.1, 1), registry=reg)
    for v in (0.05, 0.5, 5):
        hist.labels("/").observe(v)
    prom.Histogram("app_unobserved_seconds", "h", ["route"], registry=reg)
    prom.Summary("app_size", "s", registry=reg).observe(10)
    prom.Counter("drover_mine", "refused", registry=reg).inc()

    class Raising:
        def collect(self):
            raise RuntimeError("boom")

    m = Master()
    m.w.metrics_interval = 3600
    m.w.use_registry(Raising())
    m.w.use_registry(reg)
    # One collect at a time: one that arrives while a snapshot is being taken makes it go round
    # once more, so each is answered, but several at once may share an answer.
    for i in range(1, 4):
        m.send({"type": "collect"})
        h.wait_until(lambda: (m.pump(), sum(x["type"] == "metrics" for x in m.msgs) >= i)[1],
                     h.scaled(5), what=f"snapshot {i}")
    fams = {f["name"]: f for f in [x for x in m.msgs if x["type"] == "metrics"][-1]["families"]}
    assert fams["app_requests_total"]["samples"] == [{"labels": {"code": "200"}, "value": 3.0}]
    assert fams["app_inflight"]["agg"] == "sum"
    assert fams["app_seconds"]["buckets"] == [0.1, 1.0]
    assert fams["app_seconds"]["samples"] == [{"labels": {"route": "/"}, "counts": [1, 2, 3],
                                               "sum": 5.55, "count": 3}]
    assert fams["app_size_count"]["samples"][0]["value"] == 1
    assert "app_unobserved_seconds" not in fams and "drover_mine_total" not in fams
    err = capfd.readouterr().err
    assert err.count("raised") == 1, err
    assert err.count("drover_mine not sent") == 1, err


def test_state_is_saved_atomically_and_loaded(tmp):
    w = drover_worker.Worker(env={"DROVER_STATE_FILE": str(tmp / "s")})
    assert w.load_state() is None
    assert w.save_state({"hits": 3})
    assert drover_worker.Worker(env={"DROVER_STATE_FILE": str(tmp / "s")}).load_state() == \
        {"hits": 3}
    assert os.listdir(tmp) == ["s"]
    (tmp / "s.tmp.999999999").write_text("stale")  # a worker killed while saving
    (tmp / f"s.tmp.{os.getppid()}").write_text("busy")  # a live process's
    w.save_state({"hits": 4})
    assert sorted(os.listdir(tmp)) == ["s", f"s.tmp.{os.getppid()}"]
    outside = drover_worker.Worker(env={})
    assert not outside.supervised and outside.save_state({}) is False and not outside.ready()


# ---- under drover ---------------------------------------------------------------------------

def uvicorn(app_dir, module, extra_env=()):
    return (f"{h.PYTHON} -m uvicorn --fd 3 --no-access-log --app-dir {app_dir} {module}",
            [f"PYTHONPATH={SDK_DIR}"] + list(extra_env))


def test_uvicorn_fd3_runs_under_drover_unmodified(drover):
    port = h.free_port()
    addr = f"127.0.0.1:{port}"
    cmd, env = uvicorn(h.HELPERS, "asgi_plain:app")
    dr = drover.start(apps={"plain": {"command": cmd, "env": env, "workers": 2, "listen": addr,
                                      "ready": "delay", "ready_delay": "1s"}})
    dr.wait_http(addr, timeout=15)
    pids = h.serving_pids(addr, 2, timeout=h.scaled(10))
    assert len(pids) == 2
    status, body = h.http_get(addr)
    assert status == 200 and body.startswith("plain ")
    dr.signal(signal.SIGTERM)  # no channel: uvicorn gets SIGTERM at drain and shuts down
    assert dr.wait_exit(15) == 0, dr.output()


def family_total(page, name, app):
    total, seen = 0.0, False
    for line in page.splitlines():
        mm = re.match(rf'^{re.escape(name)}\{{(.*)\}} (\S+)$', line)
        if mm and f'app="{app}"' in mm.group(1):
            total += float(mm.group(2))
            seen = True
    return total if seen else None


def test_the_sdk_adds_readiness_metrics_phases_and_state_to_uvicorn(drover):
    port, admin = h.free_port(), f"127.0.0.1:{h.free_port()}"
    addr = f"127.0.0.1:{port}"
    cmd, env = uvicorn(EXAMPLE, "app:app")
    dr = drover.start(supervisor={"admin_listen": admin},
                      apps={"api": {"command": cmd, "env": env, "workers": 1, "listen": addr,
                                    "ready": "notify", "ready_timeout": "10s"}})
    dr.wait_record(lambda r: "via channel" in r.get("msg", ""), timeout=h.scaled(15),
                   what="readiness over the channel")
    for i in range(1, 4):
        assert json.loads(h.http_get(addr)[1])["hits"] == i

    def total():
        return family_total(h.http_get(admin, "/metrics")[1], "app_http_requests_total", "api")
    h.wait_until(lambda: (total() or 0) >= 3, h.scaled(10), what="the counter on drover's page")
    results = []
    t = threading.Thread(target=lambda: results.append(h.http_get(addr, "/sleep?ms=1000",
                                                                  timeout=10)[0]))
    t.start()
    h.wait_until(lambda: (family_total(h.http_get(admin, "/metrics")[1], "app_http_inflight",
                                       "api") or 0) >= 1, h.scaled(5), what="one in flight")
    dr.signal(signal.SIGTERM)
    t.join()
    assert results == [200]
    assert dr.wait_exit(15) == 0, dr.output()
    msgs = [r.get("msg", "") for r in dr.records()]
    assert msgs.index("drained") < msgs.index("state saved"), msgs
    assert json.loads((drover.tmp / "state" / "api.0.state").read_text()) == {"hits": 3}
    dr.start(args=["-c", str(dr.config_path)])
    dr.wait_http(addr, "/health", timeout=15)
    assert json.loads(h.http_get(addr)[1])["hits"] == 4
