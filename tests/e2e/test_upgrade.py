"""Upgrade in place (SPEC section 12): the master's program replaced under the same pid, every
worker kept, counters continuing; and every way the new program can fail, rolled back.

The "new version" is drover-next, the same sources built with another version string; the
binary that rejects the state is drover-otherstate, built with another handover format."""

import json
import os
import re
import signal
import subprocess
import threading
import time

import pytest

import drover_harness as h
from test_deploy import NotifyListener
from test_reload import wrk_failures

NEXT = h.BUILD / "supervisor" / "drover-next"
OTHERSTATE = h.BUILD / "supervisor" / "drover-otherstate"


def web(port, workers=3, **extra):
    app = {"command": h.hello(), "listen": f"127.0.0.1:{port}", "workers": workers}
    app.update(extra)
    return {"web": app}


def start(drover, workers=3, admin=True, **extra):
    port = h.free_port()
    sup = {"admin_listen": f"127.0.0.1:{h.free_port()}"} if admin else {}
    dr = drover.start(supervisor=sup, apps=web(port, workers, **extra))
    addr = f"127.0.0.1:{port}"
    dr.wait_http(addr)
    dr.wait_workers(workers)
    h.wait_until(lambda: (lambda s: s and all(w["state"] == "ready"
                                              for a in s["apps"] for w in a["workers"]))(
        dr.status()), 10, what="every worker ready")
    return dr, addr, sup.get("admin_listen")


def worker_pids(dr):
    st = dr.status()
    return sorted(w["pid"] for a in st["apps"] for w in a["workers"])


def upgrade(dr, binary=None, timeout=20):
    args = ["--json", "upgrade"] + (["--binary", str(binary)] if binary else [])
    r = dr.ctl(*args, timeout=timeout)
    reply = json.loads(r.stdout.strip().splitlines()[-1]) if r.stdout.strip() else {}
    return r.returncode, reply


def counters(admin):
    """The summed request counter and drover's upgrade counters from /metrics."""
    status, text = h.http_get(admin, "/metrics")
    assert status == 200
    reqs = sum(float(m.group(1)) for m in
               re.finditer(r'^http_requests_total\{[^}]*\} (\S+)$', text, re.M))
    ups = {m.group(1): float(m.group(2)) for m in
           re.finditer(r'^drover_upgrades_total\{result="(\w+)"\} (\S+)$', text, re.M)}
    return reqs, ups


class Scraper:
    """Scrapes /metrics every 50 ms and notes any request counter that went down: what
    Prometheus would see as a counter reset."""

    def __init__(self, admin):
        self.admin, self.stop, self.resets, self.samples, self.failed = admin, False, [], 0, 0
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        last = 0.0
        while not self.stop:
            try:
                value, _ = counters(self.admin)
            except (OSError, AssertionError, ValueError):
                self.failed += 1  # a scrape cut by the exec itself: no reset, no data
                time.sleep(0.05)
                continue
            if value < last:
                self.resets.append((last, value))
            last = max(last, value)
            self.samples += 1
            time.sleep(0.05)

    def close(self):
        self.stop = True
        self.thread.join()


@pytest.mark.parametrize("keepalive", [True, False], ids=["keepalive", "close"])
def test_ten_upgrades_under_load_keep_every_worker_and_counter(drover, keepalive):
    dr, addr, admin = start(drover)
    pids = worker_pids(dr)
    fds_before = sorted(os.listdir(f"/proc/{dr.pid}/fd"))
    seconds = 8
    args = ["wrk", "-t2", "-c16", f"-d{seconds}s", "--timeout", "5s", f"http://{addr}/"]
    if not keepalive:
        args[1:1] = ["-H", "Connection: close"]
    load = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    scraper = Scraper(admin)
    try:
        time.sleep(0.5)  # the load is under way before the first upgrade
        binaries = [NEXT, h.DROVER] * 5
        for i, binary in enumerate(binaries):
            rc, reply = upgrade(dr, binary)
            assert rc == 0 and reply.get("ok"), f"upgrade {i + 1} to {binary}: {reply}\n" \
                                                f"{dr.output()[-3000:]}"
            assert reply["pid"] == dr.pid
            assert worker_pids(dr) == pids, f"upgrade {i + 1} changed the workers"
        out, _ = load.communicate(timeout=seconds + 30)
    finally:
        if load.poll() is None:
            load.kill()
        scraper.close()
    errors, non2xx, total = wrk_failures(out)
    assert total > 0, out
    assert (errors, non2xx) == (0, 0), f"failed requests during 10 upgrades:\n{out}"
    assert scraper.resets == [], f"counter went down on /metrics: {scraper.resets}"
    assert scraper.samples > 20
    assert dr.proc.poll() is None and dr.pid == dr.proc.pid
    # Nothing survives an exec but what the state names: no descriptor leaks from one image to
    # the next (numbers may differ; how many may not grow).
    h.wait_until(lambda: len(os.listdir(f"/proc/{dr.pid}/fd")) <= len(fds_before), 5,
                 what=f"the master's {len(fds_before)} fds "
                      f"(now {sorted(os.listdir(f'/proc/{dr.pid}/fd'))})")
    st = dr.status()
    assert st["version"] == h.run([h.DROVER, "--version"]).stdout.split()[1]
    _, ups = counters(admin)
    assert ups["done"] == 10
    # The upgrade is an event, and the event sequence went on through all ten.
    r = dr.ctl("--json", "events")
    events = [x["event"] for x in map(json.loads, r.stdout.splitlines()) if "event" in x]
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert sum(1 for e in events if e["type"] == "upgrade" and e["result"] == "done") == 10


def test_status_shows_the_new_version_and_state_survives(drover):
    dr, addr, admin = start(drover, workers=2)
    # Something of each kind of state: a crash (restart count, last exit, retired counts), a
    # few requests, log lines.
    for _ in range(20):
        h.http_get(addr)
    h.wait_until(lambda: counters(admin)[0] >= 20, 5, what="the requests counted")
    victim = worker_pids(dr)[0]
    os.kill(victim, signal.SIGKILL)
    h.wait_until(lambda: victim not in worker_pids(dr) and len(worker_pids(dr)) == 2 and
                 all(w["state"] == "ready" for w in dr.status()["apps"][0]["workers"]), 10,
                 what="the crashed worker replaced")
    before, _ = counters(admin)
    st0 = dr.status()
    logs0 = dr.ctl("logs", "web").stdout
    assert "serving on" in logs0

    def page_samples():
        return json.loads(h.http_get(admin, "/status/samples.json")[1])["samples"]

    kept = h.wait_until(page_samples, 10, what="a status page sample")
    rc, reply = upgrade(dr, NEXT)
    assert rc == 0, reply
    assert reply["from"] != reply["version"] and reply["version"].endswith("+next")
    assert page_samples()[:len(kept)] == kept  # the status page's charts came along
    r = dr.ctl("status")
    assert "+next" in r.stdout, r.stdout
    st1 = dr.status()
    assert st1["pid"] == st0["pid"] and st1["uptime_s"] >= st0["uptime_s"]
    a0, a1 = st0["apps"][0], st1["apps"][0]
    assert a1["generation"] == a0["generation"]
    for w0, w1 in zip(sorted(a0["workers"], key=lambda w: w["slot"]),
                      sorted(a1["workers"], key=lambda w: w["slot"])):
        assert (w1["pid"], w1["restarts"], w1["state"]) == (w0["pid"], w0["restarts"], "ready")
        assert w1.get("last_exit") == w0.get("last_exit")
    after, _ = counters(admin)
    assert after >= before > 0
    assert "serving on" in dr.ctl("logs", "web").stdout  # the log ring came along
    # The workers' channels still work: a new snapshot is merged, the counter moves on.
    for _ in range(10):
        h.http_get(addr)
    h.wait_until(lambda: counters(admin)[0] >= before + 10, 5, what="counts after the upgrade")
    # And the new image supervises: a crash is replaced.
    victim = worker_pids(dr)[0]
    os.kill(victim, signal.SIGKILL)
    h.wait_until(lambda: victim not in worker_pids(dr) and len(worker_pids(dr)) == 2, 10,
                 what="a crash after the upgrade replaced")


def test_failed_candidates_roll_back_and_drover_serves_on(drover):
    dr, addr, admin = start(drover, workers=2)
    pids = worker_pids(dr)
    quits = drover.tmp / "exits-at-once"
    quits.write_text("#!/bin/sh\nexit 0\n")
    quits.chmod(0o755)
    cases = [
        (quits, "not a drover that can take over"),
        (OTHERSTATE, "state format 1 handed over"),
        (drover.tmp / "no-such-drover", "No such file or directory"),
    ]
    for binary, why in cases:
        r = dr.ctl("upgrade", "--binary", str(binary), timeout=20)
        assert r.returncode == 1, (binary, r.stdout, r.stderr)
        assert why in r.stderr and "rolled back" in r.stderr, (binary, r.stderr)
        assert worker_pids(dr) == pids
        assert h.http_ok(addr)
        assert dr.proc.poll() is None
    _, ups = counters(admin)
    assert ups["rolled_back"] == 3 and ups["done"] == 0
    # Rolled back, it is the same drover as before, and it can still be upgraded.
    assert dr.status()["version"] == h.run([h.DROVER, "--version"]).stdout.split()[1]
    rc, reply = upgrade(dr, NEXT)
    assert rc == 0, reply
    assert worker_pids(dr) == pids


def test_upgrade_checks_the_config_file_first(drover):
    dr, addr, _ = start(drover, workers=1, admin=False)
    good = dr.config_path.read_text()
    dr.config_path.write_text(good + "\n[app:broken]\nworkers = many\n")
    r = dr.ctl("upgrade", "--binary", str(NEXT), timeout=20)
    assert r.returncode == 1
    assert "refused" in r.stderr and "drover.ini:" in r.stderr and "workers" in r.stderr, \
        r.stderr
    assert dr.status()["version"] == h.run([h.DROVER, "--version"]).stdout.split()[1]
    dr.config_path.write_text(good)
    rc, reply = upgrade(dr, NEXT)
    assert rc == 0, reply


def test_upgrade_during_a_reload_is_refused_with_the_reason(drover):
    dr, addr, _ = start(drover, workers=2, admin=False, ready="delay", ready_delay="1500ms")
    text = dr.config_path.read_text().replace("workers = 2", "workers = 2\nenv = X=1")
    dr.config_path.write_text(text)
    reload = subprocess.Popen([str(h.DROVERCTL), "-s", dr.control_socket, "reload"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        h.wait_until(lambda: dr.status()["apps"][0]["state"] == "reloading", 5,
                     what="the reload under way")
        r = dr.ctl("upgrade", "--binary", str(NEXT), timeout=20)
        assert r.returncode == 1 and "reload" in r.stderr, r.stderr
    finally:
        out, err = reload.communicate(timeout=h.scaled(30))
    assert reload.returncode == 0, err
    rc, reply = upgrade(dr, NEXT)
    assert rc == 0, reply


def test_a_worker_that_exits_around_the_exec_is_reaped_and_replaced(drover):
    dr, addr, _ = start(drover, workers=2, admin=False)
    for i in range(5):
        victim = worker_pids(dr)[i % 2]
        # The master is stopped while the request arrives and the worker dies, so both wait
        # for the same loop turn: the exit may land before the state is taken or after the
        # exec, and either way the new image must reap it.
        os.kill(dr.pid, signal.SIGSTOP)
        ctl = subprocess.Popen([str(h.DROVERCTL), "-s", dr.control_socket, "--json", "upgrade",
                                "--binary", str(NEXT if i % 2 == 0 else h.DROVER)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(0.05)
        os.kill(victim, signal.SIGKILL)
        os.kill(dr.pid, signal.SIGCONT)
        out, err = ctl.communicate(timeout=h.scaled(20))
        assert ctl.returncode in (0, 1), err
        h.wait_until(lambda: victim not in worker_pids(dr) and len(worker_pids(dr)) == 2 and
                     all(w["state"] == "ready" for w in dr.status()["apps"][0]["workers"]),
                     10, what=f"round {i}: the dead worker replaced")
        assert not [p for p in h.children_of(dr.pid) if (h.proc_stat(p) or ("?",))[0] == "Z"]


def test_control_clients_during_upgrades_get_an_answer_or_a_clean_error(drover):
    dr, addr, _ = start(drover, workers=2, admin=False)
    follower = subprocess.Popen([str(h.DROVERCTL), "-s", dr.control_socket, "events", "-f"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    results, stop = [], threading.Event()

    def hammer():
        while not stop.is_set():
            t0 = time.monotonic()
            r = subprocess.run([str(h.DROVERCTL), "-s", dr.control_socket, "--timeout", "10",
                                "--json", "status"], capture_output=True, text=True)
            results.append((r.returncode, time.monotonic() - t0, r.stderr))

    threads = [threading.Thread(target=hammer) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        for binary in [NEXT, h.DROVER, NEXT, h.DROVER]:
            rc, reply = upgrade(dr, binary)
            assert rc == 0, reply
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=h.scaled(30))
    assert results
    for rc, took, err in results:
        # Answered (0), or told the connection closed (1): never left hanging (3: droverctl's
        # own --timeout ran out).
        assert rc in (0, 1), (rc, took, err)
        if rc == 1:
            assert "closed the connection" in err, err
    assert sum(1 for rc, _, _ in results if rc == 0) > len(results) // 2
    # A follower from before the first upgrade is closed cleanly, not left waiting forever.
    follower.wait(timeout=h.scaled(10))
    assert follower.returncode in (0, 1)


def test_sigusr2_upgrades_to_the_path_drover_started_from(drover):
    dr, addr, _ = start(drover, workers=2, admin=False)
    pids = worker_pids(dr)
    dr.signal(signal.SIGUSR2)
    dr.wait_record(lambda r: r.get("event_type") == "upgrade", 10, what="the upgrade event")
    rec = dr.find(lambda r: r.get("event_type") == "upgrade")[0]
    assert rec["result"] == "done", rec
    assert worker_pids(dr) == pids
    assert h.http_ok(addr)


def test_upgrade_under_systemd_keeps_mainpid_and_sends_reloading_then_ready(drover):
    path = str(drover.tmp / "systemd.sock")
    listener = NotifyListener(path)
    try:
        port = h.free_port()
        addr = f"127.0.0.1:{port}"
        dr = drover.start(apps=web(port, 2), env={"NOTIFY_SOCKET": path})
        dr.wait_http(addr)
        listener.wait_for(lambda t: "READY=1" in t, 10, what="READY=1 at start")
        pid = dr.pid
        n = len(listener.texts())
        rc, reply = upgrade(dr, NEXT)
        assert rc == 0, reply
        assert reply["pid"] == pid  # MAINPID stays what systemd knows
        h.wait_until(lambda: any("READY=1" in t for t in listener.texts()[n:]), 10,
                     what="READY=1 after the upgrade")
        after = listener.texts()[n:]
        reloading = next(i for i, t in enumerate(after) if "RELOADING=1" in t)
        ready = next(i for i, t in enumerate(after) if "READY=1" in t)
        assert reloading < ready, after
        assert "MONOTONIC_USEC=" in after[reloading]
        assert not any("MAINPID=" in t and f"MAINPID={pid}" not in t for t in after)
    finally:
        listener.close()


def test_hook_counters_and_events_go_on_after_an_upgrade(drover):
    port, admin = h.free_port(), f"127.0.0.1:{h.free_port()}"
    apps = web(port, 2)
    apps["hook:note"] = {"events": "worker_start upgrade", "exec": "/bin/sh -c 'cat >/dev/null'"}
    dr = drover.start(supervisor={"admin_listen": admin}, apps=apps)
    dr.wait_http(f"127.0.0.1:{port}")

    def runs():
        _, text = h.http_get(admin, "/metrics")
        m = re.search(r'^drover_hook_runs_total\{hook="note",result="ok"\} (\S+)$', text, re.M)
        return float(m.group(1)) if m else 0

    h.wait_until(lambda: runs() == 2, 10, what="two worker_start hook runs")
    rc, reply = upgrade(dr, NEXT)
    assert rc == 0, reply
    # The two runs before, and the upgrade event's own run in the new image.
    h.wait_until(lambda: runs() == 3, 10, what="the counter going on from 2")


def test_the_upgraded_drover_reloads_the_config_file(drover):
    dr, addr, _ = start(drover, workers=2, admin=False)
    rc, reply = upgrade(dr, NEXT)
    assert rc == 0, reply
    before = worker_pids(dr)
    text = dr.config_path.read_text().replace("workers = 2", "workers = 2\nenv = AFTER=upgrade")
    dr.config_path.write_text(text)
    r = dr.ctl("reload", timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    st = dr.status()
    assert st["apps"][0]["generation"] == 2
    after = worker_pids(dr)
    assert not set(before) & set(after)
    assert all(h.proc_environ(p).get("AFTER") == "upgrade" for p in after)
    # And it stops as any drover does: six phases, exit 0.
    dr.signal(signal.SIGTERM)
    assert dr.wait_exit(20) == 0, dr.output()[-2000:]
    dr.wait_record(lambda r: r.get("msg") == "drover stopped", 5, what="drover stopped")
