"""Hooks (SPEC 11): exec and url hooks act on events, and a hook that hangs, floods, fails or
points at a dead address harms nothing: it is killed, cut off, retried and counted."""

import http.server
import json
import os
import signal
import threading
import time

import drover_harness as h


def web(addr, workers=1):
    return {"command": h.hello(), "workers": workers, "listen": addr, "ready": "notify",
            "restart_delay": "100ms", "min_uptime": "1s"}


def metric(admin, name, **labels):
    status, body = h.http_get(admin, "/metrics")
    assert status == 200
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in body.splitlines():
        if line.startswith(f"{name}{{{want}}} ") or (not labels and line.startswith(name + " ")):
            return float(line.split()[-1])
    return None


def in_group(pgid):
    """The live processes of process group pgid."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = h.proc_stat(int(name))
            if st and st[2] == pgid and st[0] != "Z":
                found.append(int(name))
    return found


def start(drover, hooks, workers=1):
    addr = f"127.0.0.1:{h.free_port()}"
    admin = f"127.0.0.1:{h.free_port()}"
    apps = {"web": web(addr, workers)}
    apps.update({f"hook:{k}": v for k, v in hooks.items()})
    drover.start(supervisor={"admin_listen": admin}, apps=apps)
    drover.wait_http(addr)
    return addr, admin


def kill_one(drover):
    pid = drover.wait_workers(1)[0]
    os.kill(pid, signal.SIGKILL)
    return pid


def test_exec_hook_gets_the_event_on_stdin_and_inherits_no_socket(drover, tmp):
    script = tmp / "hook.sh"
    out = tmp / "events"
    script.write_text("#!/bin/sh\n"
                      f"cat >> {out}\n"
                      f"ls /proc/$$/fd > {tmp}/fds\n"
                      "echo hook saw it; echo on stderr >&2\n")
    script.chmod(0o755)
    addr, admin = start(drover, {"seen": {"events": "worker_exit", "exec": str(script)}})
    victim = kill_one(drover)
    h.wait_until(lambda: out.exists() and out.read_text().strip(), 10, what="the hook's input")
    ev = json.loads(out.read_text().splitlines()[0])
    assert ev["type"] == "worker_exit" and ev["pid"] == victim and ev["signal"] == "KILL", ev
    # The script lists its fds after it has read the event: wait for that too.
    h.wait_until(lambda: (tmp / "fds").exists() and (tmp / "fds").read_text().strip(), 10,
                 what="the hook's fd list")
    fds = sorted(int(x) for x in (tmp / "fds").read_text().split())
    # sh may hold its script open (fd 255 or 10): nothing of drover's (no listen socket, no pipe).
    assert all(fd < 3 or fd >= 10 for fd in fds), fds
    rec = drover.wait_record(lambda r: r.get("hook") == "seen" and "hook saw it" in r.get("msg", ""),
                             what="the hook's output in drover's log")
    assert rec["level"] == "info"
    drover.wait_record(lambda r: r.get("hook") == "seen" and "on stderr" in r.get("msg", ""))
    h.wait_until(lambda: metric(admin, "drover_hook_runs_total", hook="seen", result="ok") == 1,
                 10, what="the run counted ok")
    assert metric(admin, "drover_hook_dropped_total", hook="seen") == 0


def test_a_hanging_hook_is_killed_and_its_queue_is_bounded(drover, tmp):
    marker = tmp / "hang.pid"
    script = tmp / "hang.sh"
    script.write_text(f"#!/bin/sh\necho $$ >> {marker}\nsleep 1000 &\nexec sleep 1000\n")
    script.chmod(0o755)
    addr, admin = start(drover, {"hang": {"events": "*", "exec": str(script), "timeout": "300ms"}})
    h.wait_until(lambda: metric(admin, "drover_hook_runs_total", hook="hang", result="timeout")
                 and metric(admin, "drover_hook_runs_total", hook="hang", result="timeout") >= 2,
                 15, what="two runs killed at their timeout")
    # Each run leads its own process group: the background sleep went with it.
    for pid in (int(x) for x in marker.read_text().split()[:2]):
        h.wait_until(lambda: not in_group(pid), 5, what=f"process group {pid} gone")
    # Events pile up faster than a hook that always times out can take them: dropped, counted.
    for _ in range(3):
        assert drover.ctl("scale", "web", "12", timeout=60).returncode == 0
        assert drover.ctl("scale", "web", "1", timeout=60).returncode == 0
    h.wait_until(lambda: (metric(admin, "drover_hook_dropped_total", hook="hang") or 0) > 0, 20,
                 what="events dropped by the full queue")
    t0 = time.monotonic()
    assert drover.ctl("status").returncode == 0
    assert time.monotonic() - t0 < h.scaled(2)
    drops = [r for r in drover.records() if "is behind" in r.get("msg", "")]
    assert len(drops) == 1, drops  # logged once, not per dropped event


def test_a_flooding_hook_is_cut_off(drover, tmp):
    script = tmp / "flood.sh"
    script.write_text("#!/bin/sh\nyes 'flood flood flood' | head -n 200000\n")
    script.chmod(0o755)
    addr, admin = start(drover, {"flood": {"events": "worker_exit", "exec": str(script),
                                           "timeout": "20s"}})
    kill_one(drover)
    h.wait_until(lambda: metric(admin, "drover_hook_runs_total", hook="flood", result="ok") == 1,
                 20, what="the flooding run to end")
    lines = [r for r in drover.records() if r.get("hook") == "flood" and "flood flood" in
             r.get("msg", "")]
    assert len(lines) == 50, len(lines)
    assert drover.find(lambda r: r.get("hook") == "flood" and "the rest is dropped" in
                       r.get("msg", ""))


class Sink(http.server.BaseHTTPRequestHandler):
    bodies = []
    delay = 0.0

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(n)
        time.sleep(self.delay)
        self.bodies.append((self.headers.get("Content-Type"), body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def serve(delay=0.0):
    handler = type("S", (Sink,), {"bodies": [], "delay": delay})
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, handler


def test_url_hook_posts_the_event_and_retries_a_dead_address(drover):
    srv, handler = serve()
    dead = f"http://127.0.0.1:{h.free_port()}/x"
    try:
        url = f"http://127.0.0.1:{srv.server_address[1]}/alerts"
        addr, admin = start(drover, {"hook": {"events": "worker_exit crash_loop", "url": url},
                                     "dead": {"events": "worker_exit", "url": dead,
                                              "retries": "2", "timeout": "1s"}})
        victim = kill_one(drover)
        h.wait_until(lambda: handler.bodies, 10, what="the POST")
        ctype, body = handler.bodies[0]
        assert ctype == "application/json"
        ev = json.loads(body)
        assert ev["type"] == "worker_exit" and ev["pid"] == victim
        h.wait_until(lambda: metric(admin, "drover_hook_runs_total", hook="hook", result="ok") == 1,
                     10, what="ok counted")
        h.wait_until(lambda: metric(admin, "drover_hook_runs_total", hook="dead",
                                    result="failed") == 1, 15, what="the dead address failed")
        rec = drover.find(lambda r: r.get("hook") == "dead" and r.get("result") == "failed")[0]
        assert "after 3 tries" in rec["msg"], rec
    finally:
        srv.shutdown()


def test_a_slow_webhook_times_out_and_slows_nothing(drover):
    srv, handler = serve(delay=3.0)
    try:
        url = f"http://127.0.0.1:{srv.server_address[1]}/slow"
        addr, admin = start(drover, {"slow": {"events": "*", "url": url, "timeout": "300ms",
                                              "retries": "0"}})
        kill_one(drover)
        for _ in range(20):
            t0 = time.monotonic()
            status, _ = h.http_get(admin, "/metrics")
            assert status == 200 and time.monotonic() - t0 < h.scaled(0.5)
            t0 = time.monotonic()
            assert drover.ctl("status").returncode == 0
            assert time.monotonic() - t0 < h.scaled(1.0)
        h.wait_until(lambda: (metric(admin, "drover_hook_runs_total", hook="slow",
                                     result="timeout") or 0) >= 1, 10, what="a timed out POST")
    finally:
        srv.shutdown()


def test_hooks_follow_a_reload_and_are_checked_by_t(drover, tmp):
    out = tmp / "late"
    addr, admin = start(drover, {})
    text = drover.config_path.read_text()
    drover.config_path.write_text(text + f"\n[hook:late]\nevents = reload\nexec = /bin/sh -c "
                                         f"'cat > {out}'\n")
    assert drover.ctl("reload", timeout=60).returncode == 0
    h.wait_until(lambda: out.exists() and out.read_text().strip(), 10, what="the new hook ran")
    assert json.loads(out.read_text())["type"] == "reload"

    bad = tmp / "bad.ini"
    bad.write_text(text + "\n[hook:x]\nevents = crash_lop\nexec = /bin/true\n")
    r = h.run([h.DROVER, "-t", "-c", bad])
    assert r.returncode == 2
    line = text.count("\n") + 3
    assert f"{bad}:{line}: events: 'crash_lop' is not an event type" in r.stdout + r.stderr, \
        r.stdout + r.stderr
