"""depends_on (SPEC 3): apps start in dependency order (an app's workers start once each app it
depends on has a ready worker), stop in reverse order during the supervisor's shutdown, and a
cycle or an unknown name is a config error on the depends_on line, at `drover -t` and at reload.
An app whose dependency cannot come up waits, and status says for what."""

import json
import signal

import drover_harness as h


def events(drover):
    r = drover.ctl("--json", "events")
    assert r.returncode == 0, r.stderr
    lines = [json.loads(x) for x in r.stdout.splitlines() if x.strip()]
    return [x["event"] for x in lines if "event" in x]


def app_status(drover, name):
    st = drover.status() or {}
    return next((a for a in st.get("apps", []) if a["name"] == name), None)


def http_app(addr, workers=2, **extra):
    app = {"command": h.hello(), "workers": workers, "listen": addr, "ready": "notify",
           "restart_delay": "100ms", "min_uptime": "1s"}
    app.update(extra)
    return app


def three_tier(tmp):
    """web -> api -> db, written in the file in the opposite order of their start. db becomes
    ready only after a delay, so an app started too early would be seen."""
    ports = {n: f"127.0.0.1:{h.free_port()}" for n in ("web", "api", "db")}
    apps = {
        "web": http_app(ports["web"], depends_on="api"),
        "api": http_app(ports["api"], depends_on="db"),
        "db": http_app(ports["db"], ready="delay", ready_delay="700ms"),
    }
    return apps, ports


def first(evs, type_, app):
    hits = [e for e in evs if e["type"] == type_ and e.get("app") == app]
    assert hits, f"no {type_} of {app} in {evs}"
    return hits[0]


def test_start_in_dependency_order_and_stop_in_reverse(drover):
    apps, ports = three_tier(drover.tmp)
    drover.start(apps=apps)
    drover.wait_http(ports["web"], timeout=15)
    evs = events(drover)
    # Nothing of api starts before db has a ready worker; nothing of web before api has one.
    assert first(evs, "worker_start", "api")["seq"] > first(evs, "worker_ready", "db")["seq"]
    assert first(evs, "worker_start", "web")["seq"] > first(evs, "worker_ready", "api")["seq"]
    assert first(evs, "worker_start", "db")["seq"] < first(evs, "worker_start", "api")["seq"]
    web = app_status(drover, "web")
    assert web["depends_on"] == ["api"] and web["state"] == "running", web

    drover.signal(signal.SIGTERM)
    assert drover.wait_exit(timeout=20) == 0, drover.output()
    exits = [r for r in drover.records() if r.get("event_type") == "worker_exit"]
    order = [r["app"] for r in exits]
    assert sorted(order) == sorted(["web"] * 2 + ["api"] * 2 + ["db"] * 2), order
    # Every dependent has gone before anything it depends on goes.
    assert order.index("api") > max(i for i, a in enumerate(order) if a == "web"), order
    assert order.index("db") > max(i for i, a in enumerate(order) if a == "api"), order
    assert all(r.get("asked") is not False for r in exits), exits


def test_a_dependency_that_cannot_start_keeps_its_dependent_waiting(drover):
    addr, admin = f"127.0.0.1:{h.free_port()}", f"127.0.0.1:{h.free_port()}"
    drover.start(supervisor={"admin_listen": admin}, apps={
        "web": http_app(addr, workers=1, depends_on="db"),
        "db": {"command": h.helper("crasher.py"), "workers": 1, "ready": "notify",
               "restart_delay": "50ms", "restart_delay_max": "200ms", "min_uptime": "5s"},
    })
    web = h.wait_until(lambda: (lambda a: a if a and a["state"] == "waiting" else None)(
        app_status(drover, "web")), 10, what="web waiting")
    assert web["waiting_for"] == "db" and web["ready"] == 0, web
    assert not [e for e in events(drover) if e.get("app") == "web" and e["type"] ==
                "worker_start"]
    # drover itself is not ready while an app waits, and says why.
    status, body = h.http_get(admin, "/health/ready")
    assert status == 503 and "app 'web' is waiting for 'db' (depends_on)" in str(body), body
    h.wait_until(lambda: app_status(drover, "db")["state"] == "errored", 15, what="db errored")
    r = drover.ctl("start", "web")
    assert r.returncode == 1 and "waiting for 'db' (errored)" in r.stderr + r.stdout, r


def test_start_brings_up_what_the_app_depends_on(drover):
    apps, ports = three_tier(drover.tmp)
    drover.start(apps=apps)
    drover.wait_http(ports["web"], timeout=15)
    for name in ("web", "api", "db"):
        r = drover.ctl("stop", name, timeout=20)
        assert r.returncode == 0, r
    assert all(app_status(drover, n)["state"] == "stopped" for n in ("web", "api", "db"))
    r = drover.ctl("start", "web", timeout=20)
    assert r.returncode == 0, (r.stdout, r.stderr)
    for name in ("web", "api", "db"):
        a = app_status(drover, name)
        assert a["state"] == "running" and a["ready"] == 2, a
    evs = [e for e in events(drover) if e["seq"] > first(events(drover), "worker_exit", "db")["seq"]]
    assert first(evs, "worker_start", "api")["seq"] > first(evs, "worker_ready", "db")["seq"]
    assert first(evs, "worker_start", "web")["seq"] > first(evs, "worker_ready", "api")["seq"]


def write(tmp, name, text):
    (tmp / name).write_text(text)
    return name


CYCLE = """[app:web]
command = /bin/true
depends_on = api
[app:api]
command = /bin/true
depends_on = db, web
[app:db]
command = /bin/true
"""

UNKNOWN = """[app:web]
command = /bin/true

depends_on = db cache
[app:db]
command = /bin/true
"""


def test_cycle_and_unknown_name_name_the_line(tmp):
    r = h.run([h.DROVER, "-t", "-c", write(tmp, "cycle.ini", CYCLE)], cwd=tmp)
    assert r.returncode == 2, r
    assert "cycle.ini:3: depends_on: a dependency cycle: web -> api -> web" in r.stderr + r.stdout
    r = h.run([h.DROVER, "-t", "-c", write(tmp, "unknown.ini", UNKNOWN)], cwd=tmp)
    assert r.returncode == 2, r
    out = r.stderr + r.stdout
    assert "unknown.ini:4: depends_on:" in out and "'cache'" in out, out
    r = h.run([h.DROVER, "-t", "-c", write(tmp, "self.ini", "[app:a]\ncommand = /bin/true\n"
                                           "depends_on = a\n")], cwd=tmp)
    assert r.returncode == 2 and "self.ini:3: depends_on: a dependency cycle: a -> a" in \
        r.stderr + r.stdout, r


def test_reload_with_a_cycle_is_rejected_with_the_line(drover):
    ports = [f"127.0.0.1:{h.free_port()}" for _ in range(2)]
    apps = {"web": http_app(ports[0], workers=1, depends_on="db"),
            "db": http_app(ports[1], workers=1)}
    drover.start(apps=apps)
    drover.wait_http(ports[0])
    before = {a["name"]: [w["pid"] for w in a["workers"]] for a in drover.status()["apps"]}
    apps["db"]["depends_on"] = "web"
    path = drover.write_config(apps=apps)
    text = path.read_text().splitlines()
    # The message stands on a depends_on line of the cycle (the first app of it in the file).
    line = next(i for i, t in enumerate(text, 1) if t == "depends_on = db")
    r = drover.ctl("reload", timeout=20)
    assert r.returncode == 1, r
    assert f"{path}:{line}: depends_on: a dependency cycle: web -> db -> web" in \
        r.stderr + r.stdout, r
    after = {a["name"]: [w["pid"] for w in a["workers"]] for a in drover.status()["apps"]}
    assert after == before


def test_a_reload_that_drops_the_dependency_starts_the_waiting_app(drover):
    addr = f"127.0.0.1:{h.free_port()}"
    apps = {
        "web": http_app(addr, workers=1, depends_on="db"),
        "db": {"command": h.helper("crasher.py"), "workers": 1, "ready": "notify",
               "restart_delay": "50ms", "restart_delay_max": "200ms", "min_uptime": "5s"},
    }
    drover.start(apps=apps)
    h.wait_until(lambda: (app_status(drover, "web") or {}).get("state") == "waiting", 10,
                 what="web waiting")
    del apps["db"]
    del apps["web"]["depends_on"]
    drover.write_config(apps=apps)
    r = drover.ctl("reload", timeout=20)
    assert r.returncode == 0, (r.stdout, r.stderr)
    drover.wait_http(addr)
    web = app_status(drover, "web")
    assert web["state"] == "running" and "waiting_for" not in web, web
    assert app_status(drover, "db") is None
