"""Autoscaling (SPEC 13): with workers = MIN..MAX an app grows while connections wait in its
accept queue and shrinks back once the queue stays empty; a count set by hand holds until
`scale APP auto`."""

import json
import socket
import threading
import time

import drover_harness as h


def slow_app(addr, workers, **extra):
    app = {"command": f"{h.helper('slow_app.py')} --ms 100", "workers": workers, "listen": addr,
           "ready": "notify", "scale_up_after": "1s", "scale_down_after": "2s",
           "scale_cooldown": "1s"}
    app.update(extra)
    return app


class Load:
    """clients connections at once, each asking again as soon as it is answered."""

    def __init__(self, addr, clients=16):
        host, port = addr.rsplit(":", 1)
        self.target = (host, int(port))
        self.stop = threading.Event()
        self.answered = 0
        self.failed = 0
        self.threads = [threading.Thread(target=self.run, daemon=True) for _ in range(clients)]
        for t in self.threads:
            t.start()

    def run(self):
        while not self.stop.is_set():
            try:
                with socket.create_connection(self.target, timeout=10) as s:
                    s.sendall(b"GET / HTTP/1.0\r\n\r\n")
                    if s.recv(100).startswith(b"HTTP/1.0 200"):
                        self.answered += 1
                    else:
                        self.failed += 1
            except OSError:
                self.failed += 1

    def end(self):
        self.stop.set()
        for t in self.threads:
            t.join(15)


def app_status(drover):
    r = drover.ctl("--json", "status")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)["apps"][0]


def test_grows_under_load_and_shrinks_back(drover):
    addr = f"127.0.0.1:{h.free_port()}"
    drover.start(apps={"web": slow_app(addr, "1..4")})
    h.wait_until(lambda: app_status(drover)["ready"] == 1, 10, what="one ready worker")
    st = app_status(drover)
    assert st["autoscale"] == {"min": 1, "max": 4, "pinned": False}
    load = Load(addr)
    try:
        h.wait_until(lambda: app_status(drover)["wanted"] == 4, 30, what="4 workers under load")
        # Past MAX it does not go, however long the queue stays.
        time.sleep(h.scaled(2.5))
        assert app_status(drover)["wanted"] == 4
        queued = h.wait_until(lambda: app_status(drover)["listen"][0], 5)
        assert queued["limit"] > 0
    finally:
        load.end()
    assert load.failed == 0, load.failed
    h.wait_until(lambda: app_status(drover)["wanted"] == 1, 30, what="back to 1 without load")
    ups = [r for r in drover.records() if r.get("msg", "").startswith("autoscale: up")]
    downs = [r for r in drover.records() if r.get("msg", "").startswith("autoscale: down")]
    assert len(ups) == 3 and len(downs) == 3, (ups, downs)
    scale_events = [r for r in drover.records() if r.get("event_type") == "scale"]
    assert len(scale_events) == 6
    # One change at a time, never closer than the cooldown.
    times = [r["ts"] for r in ups]
    assert times == sorted(times)


def test_a_pinned_count_holds_until_auto(drover):
    addr = f"127.0.0.1:{h.free_port()}"
    drover.start(apps={"web": slow_app(addr, "1..4")})
    h.wait_until(lambda: app_status(drover)["ready"] == 1, 10, what="one ready worker")
    r = drover.ctl("scale", "web", "2", timeout=30)
    assert r.returncode == 0, r.stderr
    assert app_status(drover)["autoscale"]["pinned"] is True
    load = Load(addr)
    try:
        time.sleep(h.scaled(3))
        assert app_status(drover)["wanted"] == 2, "a pinned count does not follow the load"
        r = drover.ctl("scale", "web", "auto")
        assert r.returncode == 0, r.stderr
        assert "autoscaling between 1 and 4 workers" in r.stdout, r.stdout
        h.wait_until(lambda: app_status(drover)["wanted"] == 4, 30, what="growing again")
    finally:
        load.end()


def test_a_fixed_count_never_grows(drover):
    addr = f"127.0.0.1:{h.free_port()}"
    drover.start(apps={"web": slow_app(addr, "1..1")})
    h.wait_until(lambda: app_status(drover)["ready"] == 1, 10, what="one ready worker")
    assert "autoscale" not in app_status(drover)
    load = Load(addr)
    try:
        time.sleep(h.scaled(3))
        assert app_status(drover)["wanted"] == 1
        assert app_status(drover)["listen"][0]["queue"] > 0, "the load queues"
    finally:
        load.end()
    r = drover.ctl("scale", "web", "auto")
    assert r.returncode == 1 and "does not scale itself" in r.stderr, r.stderr


def test_the_memory_limit_bounds_growth(drover, tmp):
    """max_memory x workers stays within the cgroup's memory.max (here a file standing in for
    it): 512M at 256M each holds two workers, whatever MAX says."""
    limit = tmp / "memory.max"
    limit.write_text(f"{512 * 1024 * 1024}\n")
    addr = f"127.0.0.1:{h.free_port()}"
    drover.start(supervisor={"cgroup_memory_max": str(limit)},
                 apps={"web": slow_app(addr, "1..4", max_memory="256M")})
    h.wait_until(lambda: app_status(drover)["ready"] == 1, 10, what="one ready worker")
    load = Load(addr)
    try:
        h.wait_until(lambda: app_status(drover)["wanted"] == 2, 30, what="2 workers")
        time.sleep(h.scaled(3))
        assert app_status(drover)["wanted"] == 2
    finally:
        load.end()
    st = app_status(drover)
    assert st["restarts"]["scale"] == 1, st["restarts"]
