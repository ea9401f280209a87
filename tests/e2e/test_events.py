"""Lifecycle events (SPEC 11): one event per change, kept in a ring, read with `droverctl events`,
followed with -f, counted in drover_events_total, and written from the same call as the log
record of the change."""

import json
import os
import select
import signal
import subprocess
import time

import drover_harness as h


def events(drover, *args):
    r = drover.ctl("--json", "events", *args)
    assert r.returncode == 0, r.stderr
    lines = [json.loads(x) for x in r.stdout.splitlines() if x.strip()]
    assert lines and lines[-1].get("ok") is True, lines
    return [x["event"] for x in lines if "event" in x], lines[-1]


def wait_event(drover, pred, timeout=10.0, what="an event"):
    def look():
        evs, _ = events(drover)
        hits = [e for e in evs if pred(e)]
        return hits or None
    return h.wait_until(look, timeout, interval=0.05, what=what)


def web(addr, workers=2, **extra):
    app = {"command": h.hello(), "workers": workers, "listen": addr, "ready": "notify",
           "restart_delay": "100ms", "min_uptime": "1s"}
    app.update(extra)
    return app


def test_a_worker_life_in_events_and_the_same_facts_in_the_log(drover):
    addr = f"127.0.0.1:{h.free_port()}"
    drover.start(apps={"web": web(addr)})
    drover.wait_http(addr)
    pids = drover.wait_workers(2)
    ready = wait_event(drover, lambda e: e["type"] == "worker_ready", what="two worker_ready")
    h.wait_until(lambda: len(wait_event(drover, lambda e: e["type"] == "worker_ready")) == 2, 10,
                 what="two worker_ready events")
    starts = [e for e in events(drover)[0] if e["type"] == "worker_start"]
    assert sorted(e["pid"] for e in starts) == sorted(pids)
    assert {e["worker"] for e in starts} == {0, 1} and all(e["app"] == "web" for e in starts)

    victim = pids[0]
    os.kill(victim, signal.SIGKILL)
    exit_ev = wait_event(drover, lambda e: e["type"] == "worker_exit" and e.get("pid") == victim,
                         what=f"the exit event of {victim}")[0]
    assert exit_ev["signal"] == "KILL" and exit_ev["asked"] is False, exit_ev
    assert exit_ev["uptime_s"] > 0
    # The log record of that exit is the same change: same seq, same message.
    rec = drover.wait_record(lambda r: r.get("seq") == exit_ev["seq"], what="the exit's record")
    assert rec["event_type"] == "worker_exit" and rec["msg"] == exit_ev["msg"], (rec, exit_ev)
    assert rec["pid"] == victim

    seqs = [e["seq"] for e in events(drover)[0]]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), seqs
    assert ready[0]["seq"] < exit_ev["seq"]


def test_scale_reload_and_a_rejected_config_are_events(drover):
    addr = f"127.0.0.1:{h.free_port()}"
    drover.start(apps={"web": web(addr, workers=1)})
    drover.wait_http(addr)
    assert drover.ctl("scale", "web", "2", timeout=30).returncode == 0
    scale = wait_event(drover, lambda e: e["type"] == "scale", what="the scale event")[0]
    assert (scale["from"], scale["to"]) == (1, 2), scale

    assert drover.ctl("reload", timeout=60).returncode == 0
    reloads = wait_event(drover, lambda e: e["type"] == "reload" and e["result"] == "done",
                         what="the reload's done event")
    started = [e for e in events(drover)[0] if e["type"] == "reload" and e["result"] == "started"]
    assert started and started[0]["seq"] < reloads[0]["seq"]
    assert reloads[0]["record"]["outcome"] == "done", reloads[0]

    drover.config_path.write_text(drover.config_path.read_text() + "\n[app:web]\nbogus = 1\n")
    assert drover.ctl("reload", timeout=30).returncode == 1
    rej = wait_event(drover, lambda e: e["type"] == "config_rejected", what="config_rejected")[0]
    assert rej["line"] > 0 and rej["file"].endswith("drover.ini"), rej


def test_crash_loop_and_its_end(drover, tmp):
    """A slot whose worker dies fast twice is in a crash loop; once a worker of it lives past
    min_uptime the loop is over, and both are events."""
    addr = f"127.0.0.1:{h.free_port()}"
    count = tmp / "count"
    script = tmp / "flaky.sh"
    script.write_text("#!/bin/sh\n"
                      f"n=$(cat {count} 2>/dev/null || echo 0)\n"
                      f"echo $((n + 1)) > {count}\n"
                      f"[ \"$n\" -ge 2 ] && exec {h.hello()} \"$@\"\n"
                      "exit 1\n")
    script.chmod(0o755)
    drover.start(apps={"web": web(addr, workers=1, command=str(script), min_uptime="1s")})
    loop = wait_event(drover, lambda e: e["type"] == "crash_loop", what="a crash_loop event")[0]
    assert loop["worker"] == 0 and loop["delay_ms"] > 0, loop
    end = wait_event(drover, lambda e: e["type"] == "crash_loop_end", timeout=15,
                     what="the crash loop's end")[0]
    assert end["seq"] > loop["seq"] and end["worker"] == 0


def test_follow_since_and_the_counter(drover):
    addr = f"127.0.0.1:{h.free_port()}"
    drover.start(apps={"web": web(addr, workers=1)}, supervisor={"admin_listen": f"127.0.0.1:{h.free_port()}"})
    drover.wait_http(addr)
    wait_event(drover, lambda e: e["type"] == "worker_ready", what="worker_ready")
    evs, reply = events(drover)
    last = reply["last_seq"]
    assert last == evs[-1]["seq"]
    # --since: only what came after.
    assert events(drover, "--since", str(last))[0] == []
    assert [e["seq"] for e in events(drover, "--since", str(last - 1))[0]] == [last]

    # Unbuffered: the reply's readline() below must not take the event lines with it.
    follower = subprocess.Popen([str(h.DROVERCTL), "-s", drover.control_socket, "--json",
                                 "events", "-f", "--since", str(last)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0)
    try:
        # The reply comes first, then the follow stream.
        line = follower.stdout.readline()
        assert json.loads(line).get("ok") is True, line
        t0 = time.monotonic()
        os.kill(drover.workers()[0], signal.SIGKILL)
        seen = []
        # Read the raw fd: a buffered readline() may take several lines at once, and select()
        # then never sees the ones already buffered.
        fd, buf = follower.stdout.fileno(), b""
        while time.monotonic() - t0 < h.scaled(10) and "worker_ready" not in seen:
            ready, _, _ = select.select([fd], [], [], 0.5)
            if not ready:
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            buf += chunk
            while b"\n" in buf and "worker_ready" not in seen:
                line, buf = buf.split(b"\n", 1)
                seen.append(json.loads(line)["event"]["type"])
        assert seen[:1] == ["worker_exit"] and "worker_start" in seen and \
            seen[-1] == "worker_ready", seen
    finally:
        follower.send_signal(signal.SIGINT)
        assert follower.wait(5) == 0
    admin = drover.config_path.read_text().split("admin_listen = ")[1].split()[0]
    status, body = h.http_get(admin, "/metrics")
    assert status == 200
    counts = {}
    for line in body.splitlines():
        if line.startswith("drover_events_total{"):
            counts[line.split('type="')[1].split('"')[0]] = float(line.split()[-1])
    evs, _ = events(drover)
    assert counts["worker_exit"] == 1 and counts["worker_start"] == 2, counts
    assert counts["worker_ready"] == sum(1 for e in evs if e["type"] == "worker_ready")


def test_shutdown_phases_reach_a_follower(drover):
    addr = f"127.0.0.1:{h.free_port()}"
    drover.start(apps={"web": web(addr, workers=1)})
    drover.wait_http(addr)
    follower = subprocess.Popen([str(h.DROVERCTL), "-s", drover.control_socket, "--json",
                                 "events", "-f", "--since", "999999"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert json.loads(follower.stdout.readline()).get("ok") is True
    drover.signal(signal.SIGTERM)
    out, _ = follower.communicate(timeout=h.scaled(20))
    assert follower.returncode == 0
    phases = [(e["phase"], e["result"]) for e in
              (json.loads(x)["event"] for x in out.decode().splitlines() if x.strip())
              if e["type"] == "shutdown_phase"]
    # The socket closes at cleanup: the follower sees the phases up to there.
    assert phases[:4] == [("initiated", "started"), ("initiated", "done"), ("drain", "started"),
                          ("drain", "done")], phases
    assert drover.wait_exit(20) == 0


def test_a_hang_and_a_recycle_are_events(drover):
    addr = f"127.0.0.1:{h.free_port()}"
    drover.start(apps={"web": web(addr, workers=2, watchdog="500ms", kill_timeout="1s",
                                  max_lifetime="2s")})
    drover.wait_http(addr)
    victim = drover.wait_workers(2)[0]
    os.kill(victim, signal.SIGSTOP)
    hung = wait_event(drover, lambda e: e["type"] == "worker_hung" and e["pid"] == victim,
                      what="the worker_hung event")[0]
    exit_ev = wait_event(drover, lambda e: e["type"] == "worker_exit" and e["pid"] == victim,
                         what="its exit")[0]
    assert exit_ev["reason"] == "hang" and exit_ev["seq"] > hung["seq"], exit_ev
    rec = wait_event(drover, lambda e: e["type"] == "recycle", timeout=15, what="a recycle")[0]
    assert rec["reason"] == "lifetime", rec
