"""Resource bounds and abuse (issue 9, "Hardening"): each test misuses drover one way and
states what must happen instead of a crash, a hang or unbounded growth.

  - 256 workers over 16 apps all become ready, serve, and stop with exit 0; also under the
    file-descriptor limit systemd gives services by default (soft 1024);
  - a worker that floods get_metrics and never reads the replies: the master neither blocks nor
    grows, other apps keep serving, the shutdown ends within its bounds, and the drops are
    logged without flooding the log;
  - a worker that closes its channel (before or after speaking on it), puts another file on its
    fd number, or writes garbage or an over-long line on it: the channel is closed (with a log
    record where it was garbage), the worker stays supervised, and shutdown still exits 0;
  - a worker's child that keeps the listening socket: killed with the worker when it stays in
    the worker's process group; reaped when it left the group and exits; killed when drover
    stops, so nobody holds the port after drover;
  - control clients that pipeline thousands of requests, or come by the hundred: every request
    answered in order, the master keeps answering others and serving;
  - a config line longer than inih's buffer loads whole; one over drover's own bound (1 MiB)
    is refused naming the line (exit 2); 10,000 env lines load and reach the worker.
"""

import json
import os
import signal
import socket
import threading
import time

import pytest

import drover_harness as h
import hardening as hd


# A finding that the report names with its fix; strict, so the test fails once the fix lands
# and the marker must go.
def known_bug(reason):
    return pytest.mark.xfail(strict=True, reason=reason)


def http_app(workers, port=None, **extra):
    app = {"command": h.hello(), "workers": workers,
           "listen": f"127.0.0.1:{port or h.free_port()}", "ready": "notify",
           "ready_timeout": "10s"}
    app.update(extra)
    return app


def total_ready(dr):
    st = dr.status()
    return sum(a["ready"] for a in st["apps"]) if st else -1


# ---------------------------------------------------------------------------------------------
# Many workers


def run_256(drover, wrapper=None):
    apps = {f"a{i:02d}": http_app(16) for i in range(16)}
    # Under a sanitizer every worker runs a leak check as it exits: 256 of them on two cores
    # take seconds, so the phases get room in proportion (a normal build needs well under 1s).
    sup = {"cleanup_timeout": f"{int(h.scaled(5))}s", "shutdown_timeout": f"{int(h.scaled(20))}s"}
    dr = drover.start(supervisor=sup, apps=apps, wrapper=wrapper)

    def all_ready_or_emfile():
        emfile = dr.find(lambda r: "Too many open files" in r.get("msg", ""))
        if emfile:
            return emfile[0]
        return total_ready(dr) == 256
    try:
        outcome = h.wait_until(all_ready_or_emfile, 30, interval=0.2, what="256 ready workers")
    except AssertionError as e:
        raise AssertionError(f"{e}; ready now: {total_ready(dr)}; master fds: "
                             f"{hd.fd_count(dr.pid)}") from None
    assert outcome is True, (f"drover ran out of descriptors with {total_ready(dr)} workers "
                             f"ready and {hd.fd_count(dr.pid)} fds open: {outcome}")
    assert len(dr.workers()) == 256
    for name, app in apps.items():
        status, body = h.http_get(app["listen"])
        assert status == 200 and "hi from pid" in body, (name, status, body)
    print(f"256 workers: master fds {hd.fd_count(dr.pid)}, RSS {hd.rss_kib(dr.pid)} KiB")
    t0 = time.monotonic()
    dr.signal(signal.SIGTERM)
    assert dr.wait_exit(30) == 0
    print(f"shutdown of 256 workers took {time.monotonic() - t0:.2f}s")
    assert not any(w.alive() for w in dr.known_workers())


def test_256_workers_over_16_apps(drover):
    run_256(drover)


@known_bug("drover keeps the soft RLIMIT_NOFILE it was given (1024 under systemd) and runs out "
           "of descriptors at about 250 workers; it should raise its soft limit to the hard "
           "one and give workers back the original")
def test_256_workers_under_the_systemd_default_fd_limit(drover):
    hard = os.sysconf("SC_OPEN_MAX")
    run_256(drover, wrapper=["prlimit", f"--nofile=1024:{max(hard, 4096)}", "--"])


# ---------------------------------------------------------------------------------------------
# Channel abuse


def start_get_metrics_flood(drover, flood_s, series=5000):
    """drover with a serving app, its admin port, and a worker that sends a snapshot of
    `series` series (every page the master renders is large) and then floods get_metrics for
    flood_s seconds without reading. Returns (drover, app address, admin address, abuser pid)
    once the flood has begun."""
    port = h.free_port()
    addr = f"127.0.0.1:{port}"
    admin = f"127.0.0.1:{h.free_port()}"
    short = {"drain_timeout": "1s", "save_timeout": "500ms", "close_timeout": "500ms",
             "cleanup_timeout": "500ms", "shutdown_timeout": "5s", "admin_listen": admin}
    dr = drover.start(supervisor=short, apps={
        "web": http_app(2, port),
        "abuser": {"command": h.helper("channel_abuser.py", "--mode", "flood-get-metrics",
                                       "--seconds", flood_s, "--series", series),
                   "workers": 1, "ready": "notify"}})
    dr.wait_http(addr)
    rec = dr.wait_record(lambda r: "abuser flood-get-metrics" in r.get("msg", "")
                         and "ready" in r.get("msg", ""), what="the flood starting")
    return dr, addr, admin, rec["pid"]


def timed(fn):
    t0 = time.monotonic()
    value = fn()
    return time.monotonic() - t0, value


def get_metrics_flood(drover, flood_s=2):
    """Runs the flood beside a serving app and probes what passes through the master while it
    lasts: the control socket, the admin endpoint, and the other app. Returns (drover, abuser
    pid, drop records, their size in the log)."""
    dr, addr, admin, abuser_pid = start_get_metrics_flood(drover, flood_s)
    rss0 = hd.rss_kib(dr.pid)
    # While the flood lasts, the master answers its control socket and its admin endpoint
    # promptly, and the other app answers every time.
    slow = []
    probes = 0
    t_end = time.monotonic() + flood_s + 0.5
    while time.monotonic() < t_end:
        took, reply = timed(lambda: hd.control_ask(dr.control_socket, {"cmd": "status"},
                                                   timeout=2))
        assert reply["ok"] is True
        if took > h.scaled(0.5):
            slow.append(("status", round(took, 2)))
        took, (status, _) = timed(lambda: h.http_get(admin, "/health", timeout=h.scaled(2)))
        assert status == 200
        if took > h.scaled(0.5):
            slow.append(("/health", round(took, 2)))
        took, (status, _) = timed(lambda: h.http_get(addr, timeout=h.scaled(2)))
        assert status == 200
        if took > h.scaled(0.5):
            slow.append(("app", round(took, 2)))
        probes += 1
        assert hd.fd_count(dr.pid) < 200
    assert not slow, f"the master was slow to answer during the flood: {slow}"
    assert probes >= 3, f"only {probes} rounds of probes in {flood_s + 0.5}s"
    dr.wait_record(lambda r: r.get("pid") == abuser_pid and "done sent=" in r.get("msg", ""),
                   timeout=10, what="the flood ending")
    assert hd.control_ask(dr.control_socket, {"cmd": "status"})["ok"] is True
    grown = hd.rss_kib(dr.pid) - rss0
    drops = dr.find(lambda r: r.get("pid") == abuser_pid and "dropped" in r.get("msg", ""))
    log_bytes = sum(len(json.dumps(r)) + 1 for r in drops)
    print(f"flood: {probes} probe rounds, master RSS +{grown} KiB, {len(drops)} drop records "
          f"({log_bytes} bytes)")
    assert drops, "no log record says the worker's requests were dropped"
    if not hd.sanitized(dr.pid) and not hd.under_valgrind():
        # The channel's output buffer is bounded (4 MiB); the rest is allocator slack.
        assert grown < 16 * 1024, f"master grew by {grown} KiB"
    assert dr.proc.poll() is None
    assert h.pid_alive(abuser_pid), "a worker that only asks too much is not a crash"
    return dr, abuser_pid, drops, log_bytes


def test_get_metrics_flood_from_a_worker_that_never_reads(drover):
    dr, abuser_pid, _, _ = get_metrics_flood(drover)
    # It spoke the protocol, so it is sent the phases; it reads none of them. When its channel
    # buffer is full the phase cannot even be queued and it gets SIGTERM at drain (exit 0);
    # otherwise each phase runs into its timeout and the shutdown is forced (exit 1). Either
    # way the shutdown ends within its bounds and the worker is gone.
    t0 = time.monotonic()
    dr.signal(signal.SIGTERM)
    status = dr.wait_exit(20)
    took = time.monotonic() - t0
    assert status in (0, 1), status
    if status == 1:
        assert dr.find(lambda r: "timed out" in r.get("msg", "") and r.get("phase"))
    assert took < h.scaled(8), f"shutdown took {took:.1f}s"
    assert not h.pid_alive(abuser_pid)


def test_get_metrics_flood_is_logged_in_bounded_form(drover):
    _, _, drops, log_bytes = get_metrics_flood(drover)
    # Bounded logging: one record for the worker, not one per dropped page.
    assert len(drops) == 1, f"{len(drops)} drop records in 2s"
    assert log_bytes < 4 * 1024, f"the drops took {log_bytes} bytes of log"


def test_sigterm_during_a_get_metrics_flood_is_acted_on_at_once(drover):
    dr, _, _, abuser_pid = start_get_metrics_flood(drover, flood_s=10)
    time.sleep(0.5)  # let the flood fill every buffer on the way
    t0 = time.monotonic()
    dr.signal(signal.SIGTERM)
    dr.wait_record(lambda r: "shutdown initiated" in r.get("msg", ""), timeout=5,
                   what="the shutdown beginning")
    took = time.monotonic() - t0
    assert took < h.scaled(1), f"SIGTERM was acted on after {took:.1f}s"
    assert dr.wait_exit(20) in (0, 1)
    assert not h.pid_alive(abuser_pid)


# mode -> (log text drover must write, or None)
MISUSE = {
    "close": None,
    "close-after-channel-ready": None,
    "dup2-null": None,
    "dup2-stdout": None,
    "garbage": "protocol error",
    "huge-line": "line over 1 MiB",
}


@pytest.mark.parametrize("mode", list(MISUSE))
def test_channel_misuse_harms_nothing(drover, mode):
    port = h.free_port()
    addr = f"127.0.0.1:{port}"
    dr = drover.start(apps={
        "web": http_app(1, port),
        "abuser": {"command": h.helper("channel_abuser.py", "--mode", mode), "workers": 2,
                   "ready": "notify", "ready_timeout": "5s"}})
    dr.wait_http(addr)
    done = h.wait_until(
        lambda: (lambda rs: rs if len(rs) == 2 else None)(
            dr.find(lambda r: r.get("app") == "abuser" and f"abuser {mode} pid" in
                    r.get("msg", "") and "done" in r.get("msg", ""))),
        10, what="both abusers done")
    pids = {r["pid"] for r in done}
    want = MISUSE[mode]
    if want:
        for pid in pids:
            dr.wait_record(lambda r, pid=pid: r.get("pid") == pid and "channel closed" in
                           r.get("msg", "") and want in r.get("msg", ""),
                           what=f"'channel closed: {want}' for {pid}")
    if mode == "dup2-stdout":
        # What it wrote now arrives on its stdout pipe: an output line (a JSON object, merged
        # into the record), not a channel message.
        for pid in pids:
            dr.wait_record(lambda r, pid=pid: r.get("pid") == pid and
                           r.get("text") == "through stdout", what="the line through stdout")
    # Nothing else happened to the abusers: still the same ready workers, nothing restarted.
    app = hd.app_status(dr, "abuser")
    assert app["ready"] == 2 and {w["pid"] for w in app["workers"]} == pids, app
    assert app["restarts"]["crash"] == 0
    assert h.http_ok(addr)
    assert dr.proc.poll() is None
    # Shutdown: workers without a usable channel get SIGTERM at drain and exit 0 on it.
    t0 = time.monotonic()
    dr.signal(signal.SIGTERM)
    assert dr.wait_exit(15) == 0
    assert time.monotonic() - t0 < h.scaled(8), "a channel-less worker held the shutdown up"
    assert not any(h.pid_alive(p) for p in pids)


# ---------------------------------------------------------------------------------------------
# Descendants that keep the listening socket


def gc_pid(outdir, worker_pid, timeout=10):
    path = outdir / f"gc.{worker_pid}"
    h.wait_until(path.exists, timeout, what=f"{path}")
    return int(path.read_text())


def port_is_free(port):
    """Nobody listens on 127.0.0.1:port: a fresh socket can bind and listen there."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            s.listen(1)
        except OSError:
            return False
    return True


def forker_app(outdir, port, *args, restart="never"):
    return {"forker": {"command": h.helper("forker.py", outdir, *args), "workers": 1,
                       "listen": f"127.0.0.1:{port}", "ready": "notify", "restart": restart,
                       "ready_timeout": "10s"}}


def test_grandchild_in_the_group_dies_with_the_worker(drover):
    port = h.free_port()
    out = drover.tmp / "gc"
    out.mkdir()
    dr = drover.start(apps=forker_app(out, port, "--exit-after-ms", 1500))
    (worker,) = dr.wait_workers(1)
    gc = gc_pid(out, worker)
    gc_ident = h.Identity(gc)
    assert h.proc_stat(gc)[2] == worker, "the grandchild starts in the worker's group"
    dr.wait_record(lambda r: r.get("pid") == worker and r.get("state") == "exited", timeout=10,
                   what="the worker's exit")
    # drover signals the reaped worker's group: the grandchild goes too, and is reaped by drover
    # (its subreaper) rather than left a zombie.
    h.wait_until(lambda: not gc_ident.alive(), 5, what=f"grandchild {gc} killed")
    hd.assert_no_lasting_zombie(dr.pid)
    h.wait_until(lambda: h.proc_stat(gc) is None or h.proc_stat(gc)[1] != dr.pid, 5,
                 what=f"grandchild {gc} reaped")
    # The master still holds the port (its listen socket lives as long as drover).
    assert not port_is_free(port)
    dr.signal(signal.SIGTERM)
    assert dr.wait_exit(10) == 0
    assert port_is_free(port)


def test_escaped_grandchild_is_reaped_when_it_exits(drover):
    """A daemonising child (setsid) leaves the group; drover, its subreaper, reaps it."""
    port = h.free_port()
    out = drover.tmp / "gc"
    out.mkdir()
    dr = drover.start(apps=forker_app(out, port, "--setsid", "--exit-after-ms", 300,
                                      "--gc-exit-after-ms", 1500))
    (worker,) = dr.wait_workers(1)
    gc = gc_pid(out, worker)
    assert h.proc_stat(gc)[2] == gc, "the grandchild leads its own group"
    # The worker exits first; the grandchild is reparented to drover, then exits on its own.
    h.wait_until(lambda: h.proc_stat(gc) is not None and h.proc_stat(gc)[1] == dr.pid, 5,
                 what=f"grandchild {gc} reparented to drover")
    h.wait_until(lambda: h.proc_stat(gc) is None, 10,
                 what=f"grandchild {gc} exited and reaped (not a zombie)")
    hd.assert_no_lasting_zombie(dr.pid)
    assert dr.proc.poll() is None
    dr.signal(signal.SIGTERM)
    assert dr.wait_exit(10) == 0


def test_escaped_grandchild_does_not_outlive_drover(drover):
    port = h.free_port()
    out = drover.tmp / "gc"
    out.mkdir()
    dr = drover.start(apps=forker_app(out, port, "--setsid"))
    (worker,) = dr.wait_workers(1)
    gc = gc_pid(out, worker)
    gc_ident = h.Identity(gc)
    try:
        assert h.proc_stat(gc)[2] == gc, "the grandchild leads its own group"
        addr = f"127.0.0.1:{port}"
        h.wait_until(lambda: h.serving_pids(addr, 2, timeout=1) == {worker, gc}, 10,
                     what="worker and grandchild both serving")
        dr.signal(signal.SIGTERM)
        assert dr.wait_exit(15) in (0, 1)
        h.wait_until(lambda: not gc_ident.alive(), 5,
                     what=f"escaped grandchild {gc} gone after drover stopped")
        h.wait_until(lambda: port_is_free(port), 5, what=f"port {port} free after drover")
    finally:
        gc_ident.kill_group()  # ours to end: a descendant of the drover this test started


# ---------------------------------------------------------------------------------------------
# Control socket floods


def test_thousands_of_pipelined_status_requests(drover):
    port = h.free_port()
    addr = f"127.0.0.1:{port}"
    dr = drover.start(apps={"web": http_app(2, port)})
    dr.wait_http(addr)
    n = 5000
    payload = b"".join(b'{"cmd":"status","app":"web","n":%d}\n' % i for i in range(n))
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(h.scaled(20))
        s.connect(dr.control_socket)
        writer = threading.Thread(target=s.sendall, args=(payload,))
        writer.start()
        t0 = time.monotonic()
        got, buf = 0, b""
        # While the pipe is full, others are still served.
        probes = 0
        while got < n:
            chunk = s.recv(1 << 16)
            assert chunk, f"drover closed the connection after {got} replies"
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for line in lines:
                reply = json.loads(line)
                assert reply["ok"] is True and reply["apps"][0]["name"] == "web", reply
                got += 1
            if got > probes * 1000:
                probes += 1
                assert h.http_ok(addr)
                assert hd.control_ask(dr.control_socket, {"cmd": "status"})["ok"] is True
        writer.join()
        took = time.monotonic() - t0
    print(f"{n} pipelined status requests answered in {took:.2f}s")
    assert took < h.scaled(30)
    assert dr.proc.poll() is None


def test_many_clients_flooding_at_once(drover):
    port = h.free_port()
    addr = f"127.0.0.1:{port}"
    dr = drover.start(apps={"web": http_app(2, port)})
    dr.wait_http(addr)
    rss0 = hd.rss_kib(dr.pid)
    n_clients, per_client = 200, 50
    errors, answered = [], [0]
    lock = threading.Lock()

    def client(i):
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(h.scaled(30))
                h.wait_until(lambda: s.connect_ex(dr.control_socket) == 0, 10, interval=0.01)
                s.sendall(b'{"cmd":"status"}\n' * per_client)
                f = s.makefile("rb")
                for _ in range(per_client):
                    reply = json.loads(f.readline())
                    assert reply["ok"] is True, reply
                    with lock:
                        answered[0] += 1
        except Exception as e:  # noqa: BLE001 - collected and reported below
            errors.append(f"client {i}: {e!r}")

    # A client that pipelines and never reads is one of the crowd.
    hoarder = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    hoarder.connect(dr.control_socket)
    hoarder.setblocking(False)
    try:
        try:
            for _ in range(2000):
                hoarder.send(b'{"cmd":"status"}\n' * 50)
        except BlockingIOError:
            pass  # drover stopped taking its requests: the backpressure we want
        threads = [threading.Thread(target=client, args=(i,)) for i in range(n_clients)]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads):
            t1 = time.monotonic()
            assert h.http_ok(addr), "the app stopped serving during the control flood"
            assert time.monotonic() - t1 < h.scaled(2)
            time.sleep(0.05)
        for t in threads:
            t.join()
        took = time.monotonic() - t0
    finally:
        hoarder.close()
    assert not errors, errors[:5]
    assert answered[0] == n_clients * per_client
    grown = hd.rss_kib(dr.pid) - rss0
    print(f"{n_clients} clients x {per_client} requests in {took:.2f}s; master RSS +{grown} KiB")
    if not hd.sanitized(dr.pid) and not hd.under_valgrind():
        assert grown < 64 * 1024, f"master grew by {grown} KiB"
    hd.control_ask(dr.control_socket, {"cmd": "status"})
    # Every connection closed: the master holds no fd for any of them any more.
    assert dr.proc.poll() is None


# ---------------------------------------------------------------------------------------------
# Config extremes


def long_command_config(tmp, length):
    pad = "a" * (length - len("command = /bin/echo "))
    text = ("[supervisor]\nadmin_listen = off\n\n[app:web]\nworkers = 1\n"
            f"command = /bin/echo {pad}\n")
    (tmp / "long.ini").write_text(text)


# SPEC 3: a value may be as long as a person writes it; the 200 bytes inih reads at once are
# no excuse.
@pytest.mark.parametrize("length", [199, 10_000, 1_000_000, 1024 * 1024])
def test_long_config_line_loads(tmp, length):
    long_command_config(tmp, length)
    r = h.run([h.DROVER, "-t", "-c", "long.ini"], cwd=tmp, timeout=20)
    assert r.returncode == 0, (r.returncode, (r.stdout + r.stderr)[:500])
    assert "long.ini: ok" in r.stdout + r.stderr


# drover's own bound, a line of at most 1 MiB, keeps a file that is no config from being read
# whole into memory.
@pytest.mark.parametrize("length", [1024 * 1024 + 1, 5_000_000])
def test_overlong_config_line_is_refused_naming_the_line(tmp, length):
    long_command_config(tmp, length)
    for args in (["-t", "-c", "long.ini"], ["-c", "long.ini"]):
        r = h.run([h.DROVER] + args, cwd=tmp, timeout=20)
        out = r.stdout + r.stderr
        assert r.returncode == 2, (args, r.returncode, out[:500])
        assert "long.ini:6:" in out and "too long" in out, out[:500]
        assert len(out) < 4096, "the message must not echo the whole line"


def test_ten_thousand_env_keys_reach_the_worker(drover):
    out = drover.tmp / "env"
    out.mkdir()
    n = 10_000
    env = [f"HARD_K{i:05d}=v{i}" for i in range(n)]
    t0 = time.monotonic()
    r = h.run([h.DROVER, "-t", "-c",
               drover.write_config(apps={"env": {"command": h.helper("envdump.py", out),
                                                 "workers": 2, "ready": "notify", "env": env}})],
              cwd=drover.tmp, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    print(f"drover -t with {n} env lines: {time.monotonic() - t0:.2f}s")
    dr = drover.start()
    pids = dr.wait_workers(2, timeout=20)
    for pid in pids:
        path = out / f"{pid}.json"
        h.wait_until(path.exists, 10, what=f"{path}")
        seen = json.loads(path.read_text())["env"]
        mine = {k: v for k, v in seen.items() if k.startswith("HARD_K")}
        assert len(mine) == n, f"worker {pid} sees {len(mine)} of {n} env keys"
        assert mine["HARD_K00000"] == "v0" and mine[f"HARD_K{n - 1:05d}"] == f"v{n - 1}"
    assert hd.control_ask(dr.control_socket, {"cmd": "status"})["ok"] is True
    dr.signal(signal.SIGTERM)
    assert dr.wait_exit(10) == 0
