"""The control socket (SPEC 7): its file, who may talk, and a master that no client can harm.

Requests here are written by hand on a raw socket, to send what droverctl never would: garbage,
a request over 64 KiB, half a line, nothing at all, a reader that never reads. After each abuse
the master must still answer `droverctl status` at once.
"""

import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import time

import pytest

import drover_harness as h


def web_app(workers=2, **extra):
    """Workers that need no build: an unmodified socket-activated app (sd_notify READY=1)."""
    app = {"command": h.helper("sockact_app.py"), "workers": workers,
           "listen": f"127.0.0.1:{h.free_port()}", "ready": "notify", "ready_timeout": "10s"}
    app.update(extra)
    return app


def ready_count(drover, app="web"):
    st = drover.status()
    if not st:
        return -1
    for a in st["apps"]:
        if a["name"] == app:
            return sum(1 for w in a["workers"] if w["state"] == "ready")
    return -1


def start_ready(drover, workers=2, **kw):
    drover.start(apps={"web": web_app(workers)}, **kw)
    h.wait_until(lambda: ready_count(drover) == workers, 15, what=f"{workers} ready workers")


def connect(drover, timeout=5.0):
    """A raw connection. EAGAIN means drover's backlog is full for a moment: try again."""
    def attempt():
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(h.scaled(timeout))
        try:
            s.connect(drover.control_socket)
        except BlockingIOError:
            s.close()
            return None
        return s
    return h.wait_until(attempt, timeout, interval=0.005, what="a control connection")


def read_reply(s, timeout=5.0):
    """Reads one reply line (a dict); None at EOF."""
    s.settimeout(h.scaled(timeout))
    buf = b""
    while b"\n" not in buf:
        try:
            chunk = s.recv(65536)
        except ConnectionResetError:
            # drover closed with our unread request bytes still queued on its side.
            return None
        if not chunk:
            return None
        buf += chunk
    return json.loads(buf.split(b"\n", 1)[0])


def ask(drover, request, timeout=5.0):
    """One request on a fresh connection; returns the reply (the last line, with "ok")."""
    with connect(drover, timeout) as s:
        s.sendall(request if isinstance(request, bytes) else (json.dumps(request) + "\n").encode())
        f = s.makefile("rb")
        for line in f:
            reply = json.loads(line)
            if "ok" in reply:
                return reply
    raise AssertionError(f"no reply to {request!r}")


def assert_status_answers(drover, within=2.0):
    t0 = time.monotonic()
    r = drover.ctl("--json", "status", timeout=within + 5)
    took = time.monotonic() - t0
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["ok"] is True
    assert took < h.scaled(within), f"status took {took:.2f}s"


def sanitized(pid):
    with open(f"/proc/{pid}/maps") as f:
        return "libasan" in f.read()


def drover_rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


# ---------------------------------------------------------------------------------------------
# The socket file


def test_socket_mode_parent_dir_and_removal(drover):
    sock = drover.tmp / "run" / "sub" / "drover.sock"
    drover.start(supervisor={"control_socket": str(sock)}, apps={"web": web_app(1)})
    h.wait_until(lambda: ready_count(drover) == 1, 15, what="a ready worker")
    st = os.lstat(sock)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o600, oct(st.st_mode)
    # drover created both directories, private to the user.
    for d in (drover.tmp / "run", drover.tmp / "run" / "sub"):
        assert stat.S_IMODE(os.stat(d).st_mode) == 0o700, (d, oct(os.stat(d).st_mode))
    drover.signal(15)
    assert drover.wait_exit(15) == 0
    assert not sock.exists(), "the control socket is removed at exit"


def test_stale_socket_is_replaced(drover):
    # A socket file nobody listens on, as a killed drover leaves behind.
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(drover.control_socket)
    s.close()
    assert os.path.exists(drover.control_socket)
    start_ready(drover, 1)
    assert_status_answers(drover)


def test_live_socket_means_another_drover(drover_factory):
    first = drover_factory()
    start_ready(first, 1)
    second = drover_factory()
    second.start(supervisor={"control_socket": first.control_socket},
                 apps={"web": web_app(1)})
    assert second.wait_exit(15) == 3
    assert f"another drover is running at {first.control_socket}" in second.output()
    # The first is unharmed and keeps its socket.
    assert_status_answers(first)


def test_socket_path_that_is_not_a_socket(drover):
    path = drover.tmp / "plain-file"
    path.write_text("not a socket")
    drover.start(supervisor={"control_socket": str(path)}, apps={"web": web_app(1)})
    assert drover.wait_exit(15) == 3
    assert str(path) in drover.output()
    assert path.read_text() == "not a socket", "a file that is not a socket is left alone"


# ---------------------------------------------------------------------------------------------
# Who may talk


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run droverctl as another uid")
@pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs setpriv (util-linux)")
def test_other_uid_is_refused_whatever_the_mode(drover, tmp):
    start_ready(drover, 1)
    # Open every door the file system has: only SO_PEERCRED stands in the way.
    for p in (tmp, drover.tmp):
        os.chmod(p, 0o777)
    os.chmod(drover.control_socket, 0o777)
    r = h.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
               h.DROVERCTL, "-s", drover.control_socket, "--json", "status"], timeout=10)
    if r.returncode in (126, 127) or "cannot execute" in r.stderr:
        pytest.skip(f"uid 65534 cannot run {h.DROVERCTL}: {r.stderr.strip()}")
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    assert json.loads(r.stdout.strip().splitlines()[-1]) == {"ok": False,
                                                            "error": "permission denied"}
    r = h.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
               h.DROVERCTL, "-s", drover.control_socket, "stop"], timeout=10)
    assert r.returncode == 1 and "permission denied" in r.stderr, (r.stdout, r.stderr)
    # Refused, logged, and nothing else happened: drover runs on.
    drover.wait_record(lambda rec: "refused" in str(rec.get("msg", "")) and "65534" in rec["msg"],
                       what="a record of the refused client")
    assert drover.proc.poll() is None
    assert_status_answers(drover)


# ---------------------------------------------------------------------------------------------
# Bad requests


BAD_REQUESTS = [
    (b"this is not json\n", "not a JSON object"),
    (b"[1, 2, 3]\n", "not a JSON object"),
    (b'{"cmd": 42}\n', "cmd"),
    (b'{"app": "web"}\n', "missing"),
    (b'{"cmd": "explode"}\n', "unknown command"),
    (b'{"cmd": "status", "app": "nope"}\n', "no app named 'nope'"),
    (b'{"cmd": "status", "app": ""}\n', "app"),
    (b'{"cmd": "scale", "app": "web"}\n', "count"),
    (b'{"cmd": "scale", "app": "web", "count": "many"}\n', "count"),
    (b'{"cmd": "scale", "app": "web", "count": 1.5}\n', "count"),
    (b'{"cmd": "scale", "app": "web", "count": 0}\n', "at least 1"),
    (b'{"cmd": "scale", "app": "web", "count": -3, "relative": true}\n', "at least 1"),
    (b'{"cmd": "scale", "app": "web", "count": 100000}\n', "at most"),
    (b'{"cmd": "scale", "app": "nope", "count": 2}\n', "no app named 'nope'"),
    (b'{"cmd": "start"}\n', "app"),
    (b'{"cmd": "start", "app": "nope"}\n', "no app named 'nope'"),
    (b'{"cmd": "stop", "app": "nope"}\n', "no app named 'nope'"),
    (b'{"cmd": "logs", "app": "nope"}\n', "no app named 'nope'"),
    (b'{"cmd": "logs", "lines": -5}\n', "lines"),
    (b'{"cmd": "logs", "follow": "yes"}\n', "follow"),
    (b'{"cmd": "restart", "app": "web", "slot": -1}\n', "slot"),
    (b'{"cmd": "status", "cmd": "stop"}\n', "not a JSON object"),
    (b'\xff\xfe{"cmd": "status"}\n', "not a JSON object"),
    (b'{"cmd": "status"\x00}\n', "not a JSON object"),
]


def test_bad_requests_get_an_error_and_harm_nothing(drover):
    start_ready(drover, 2)
    for request_line, error in BAD_REQUESTS:
        reply = ask(drover, request_line)
        assert reply["ok"] is False, (request_line, reply)
        assert error in reply["error"], (request_line, reply)
        assert set(reply) == {"ok", "error"}, (request_line, reply)
    # Nothing changed and nothing broke.
    assert ready_count(drover) == 2
    assert drover.proc.poll() is None
    assert_status_answers(drover)


def test_many_requests_on_one_connection_in_order(drover):
    start_ready(drover, 1)
    with connect(drover) as s:
        s.sendall(b'{"cmd":"status"}\n\n   \n{"cmd":"explode"}\n{"cmd":"status","app":"web"}\n')
        f = s.makefile("rb")
        replies = [json.loads(f.readline()) for _ in range(3)]
    assert replies[0]["ok"] is True and replies[0]["apps"][0]["name"] == "web"
    assert replies[1] == {"ok": False, "error": "unknown command"}
    assert replies[2]["ok"] is True and [a["name"] for a in replies[2]["apps"]] == ["web"]


def test_request_without_final_newline_at_eof(drover):
    """`echo -n '{"cmd":"status"}' | socat - UNIX-CONNECT:...`: the write side closes."""
    start_ready(drover, 1)
    with connect(drover) as s:
        s.sendall(b'{"cmd":"status"}')
        s.shutdown(socket.SHUT_WR)
        reply = read_reply(s)
        assert reply["ok"] is True
        assert read_reply(s) is None, "drover closes once the last request is answered"


def test_oversized_request(drover):
    start_ready(drover, 1)
    big = b'{"cmd":"status","pad":"' + b"x" * (70 * 1024) + b'"}\n'
    with connect(drover) as s:
        try:
            s.sendall(big)
        except (BrokenPipeError, ConnectionResetError):
            pass  # drover may hang up before taking it all: that is the point
        reply = read_reply(s)
        assert reply == {"ok": False, "error": "request too long (over 65536 bytes)"}, reply
        assert read_reply(s) is None, "the connection is closed after an oversized request"
    assert_status_answers(drover)
    # Just under the limit is fine.
    pad = 64 * 1024 - len(b'{"cmd":"status","pad":""}') - 16
    ok = ask(drover, b'{"cmd":"status","pad":"' + b"y" * pad + b'"}\n')
    assert ok["ok"] is True


def test_oversized_request_without_newline(drover):
    start_ready(drover, 1)
    with connect(drover) as s:
        try:
            s.sendall(b"{" + b'"a":1,' * 20000)
        except (BrokenPipeError, ConnectionResetError):
            pass
        reply = read_reply(s)
        assert reply["ok"] is False and "too long" in reply["error"]
    assert_status_answers(drover)


def test_idle_and_half_line_clients_block_nobody(drover):
    start_ready(drover, 2)
    idle = connect(drover)
    half = connect(drover)
    half.sendall(b'{"cmd":"sta')
    trickle = connect(drover)
    trickle.sendall(b'{"cmd":')
    try:
        for _ in range(3):
            assert_status_answers(drover, within=2.0)
        # The half line is still being assembled, not lost: finish it and it is answered.
        trickle.sendall(b'"status"}\n')
        assert read_reply(trickle)["ok"] is True
    finally:
        for s in (idle, half, trickle):
            s.close()
    assert_status_answers(drover)


def test_client_count_is_bounded(drover):
    start_ready(drover, 1)
    socks, refused = [], 0
    try:
        for _ in range(300):
            socks.append(connect(drover))
        # Beyond the bound, a client is told why and closed; the first 256 stay.
        for s in socks[256:]:
            reply = read_reply(s, timeout=5)
            assert reply == {"ok": False, "error": "too many control clients"}, reply
            refused += 1
        assert refused == 44
        socks[0].sendall(b'{"cmd":"status"}\n')
        assert read_reply(socks[0])["ok"] is True
    finally:
        for s in socks:
            s.close()
    h.wait_until(lambda: drover.ctl("status").returncode == 0, 5,
                 what="status answering once the crowd left")
    assert drover.proc.poll() is None


def test_client_that_never_reads_its_follow_stream(drover):
    """A `logs -f` reader that stops reading loses lines; drover's memory stays bounded."""
    drover.start(apps={"chat": {"command": h.helper("chatty.py", "flood", "--lines", 100000),
                                "workers": 1, "ready": "none"}})
    h.wait_until(lambda: ready_count(drover, "chat") == 1, 10, what="the first chat worker")

    (first_pid,) = drover.wait_workers(1)

    def flood_done(pid):
        out = drover.ctl("--json", "logs", "chat", "-n", "20")
        return out.returncode == 0 and f"flood done pid {pid}" in out.stdout
    h.wait_until(lambda: flood_done(first_pid), 60, interval=0.2,
                 what="the first worker's flood")
    stuck = connect(drover)
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stuck.sendall(b'{"cmd":"logs","app":"chat","lines":0,"follow":true}\n')
    first = read_reply(stuck)
    assert first == {"ok": True, "lines": 0, "truncated": 0, "follow": True}, first
    rss_before = drover_rss_kib(drover.pid)

    # A second worker floods its 100000 lines while the follower reads nothing.
    r = drover.ctl("scale", "chat", "2")
    assert r.returncode == 0, r.stderr
    (second_pid,) = set(drover.wait_workers(2)) - {first_pid}
    h.wait_until(lambda: flood_done(second_pid), 60, interval=0.2,
                 what="the flood to pass through drover")
    assert_status_answers(drover)
    grown = drover_rss_kib(drover.pid) - rss_before
    print(f"drover grew by {grown} KiB while one follower was stuck")
    if not sanitized(drover.pid):  # ASan keeps freed memory in quarantine: RSS says nothing
        assert grown < 32 * 1024, f"drover grew by {grown} KiB for one stuck follower"

    # Now read: some lines came, most were dropped, and the follower is told so.
    got, dropped, buf = 0, None, b""
    stuck.settimeout(h.scaled(1))
    drover.ctl("scale", "chat", "3")  # a few fresh lines after the drops
    deadline = time.monotonic() + h.scaled(20)
    while time.monotonic() < deadline and dropped is None:
        try:
            chunk = stuck.recv(1 << 16)
        except (socket.timeout, TimeoutError):
            continue
        if not chunk:
            break
        buf += chunk
        *lines, buf = buf.split(b"\n")
        for line in lines:
            msg = json.loads(line)
            if "log" in msg:
                got += 1
            elif "dropped" in msg:
                dropped = msg["dropped"]
    stuck.close()
    assert dropped is not None and dropped > 0, f"no drop notice (got {got} lines)"
    assert got < 100000


# ---------------------------------------------------------------------------------------------
# Status as the socket gives it (SPEC 7 schema)


def test_status_schema(drover):
    start_ready(drover, 2)
    pids = set(drover.wait_workers(2))
    # Workers are sampled every memory_check_interval (1s); status samples a new one itself.
    st = ask(drover, {"cmd": "status"})
    assert st["ok"] is True
    assert st["pid"] == drover.pid
    assert isinstance(st["uptime_s"], float) and st["uptime_s"] >= 0
    (app,) = st["apps"]
    assert app["name"] == "web" and app["state"] == "running" and app["generation"] == 1
    assert app["wanted"] == 2 and app["ready"] == 2
    assert app["restarts"] == {"crash": 0, "memory": 0, "reload": 0, "manual": 0, "hang": 0,
                               "lifetime": 0, "requested": 0, "scale": 0}
    assert [w["slot"] for w in app["workers"]] == [0, 1]
    assert {w["pid"] for w in app["workers"]} == pids
    for w in app["workers"]:
        assert set(w) >= {"slot", "pid", "state", "generation", "uptime_s", "restarts",
                          "rss_bytes", "cpu_percent"}, w
        assert w["state"] == "ready" and w["generation"] == 1 and w["restarts"] == 0
        assert isinstance(w["uptime_s"], float) and 0 <= w["uptime_s"] < st["uptime_s"] + 1
        assert isinstance(w["rss_bytes"], int) and w["rss_bytes"] > 1024 * 1024, w
        assert isinstance(w["cpu_percent"], float) and w["cpu_percent"] >= 0


def test_status_shows_backoff_and_crash_restarts(drover):
    drover.start(apps={
        "web": web_app(1),
        "crash": {"command": h.helper("crasher.py"), "workers": 1, "ready": "none",
                  "restart": "always", "min_uptime": "5s", "restart_delay": "2s",
                  "restart_delay_max": "4s"}})

    def backoff_entry():
        st = drover.status()
        if not st:
            return None
        crash = [a for a in st["apps"] if a["name"] == "crash"][0]
        ws = [w for w in crash["workers"] if w["state"] == "backoff"]
        return (crash, ws[0]) if ws else None
    crash, w = h.wait_until(backoff_entry, 15, what="a slot in backoff")
    assert w["pid"] == 0 and w["slot"] == 0 and w["restarts"] >= 1
    assert 0 < w["restart_in_s"] <= 4.0 + 0.1
    assert crash["restarts"]["crash"] >= 1
    assert crash["ready"] == 0


def test_reload_restart_metrics_replies(drover):
    start_ready(drover, 1)
    reply = ask(drover, {"cmd": "reload"})
    assert reply["ok"] is True and reply["apps"][0]["outcome"] == "done", reply
    reply = ask(drover, {"cmd": "restart", "app": "web"})
    assert reply["ok"] is True and reply["reason"] == "manual", reply
    reply = ask(drover, {"cmd": "metrics"})
    assert reply["ok"] is True and "drover_build_info" in reply["body"], reply
    reply = ask(drover, {"cmd": "metrics", "format": "yaml"})
    assert reply["ok"] is False and "format" in reply["error"], reply
    reply = ask(drover, {"cmd": "restart", "app": "nope"})
    assert reply == {"ok": False, "error": "no app named 'nope'"}
    # A config error quotes the file, whose bytes need not be UTF-8: still a JSON answer.
    cfg = drover.config_path
    good = cfg.read_bytes()
    cfg.write_bytes(good + b"\nbad\xffkey = 1\n")
    reply = ask(drover, {"cmd": "reload"})
    assert reply["ok"] is False and "bad?key" in reply["error"], reply
    cfg.write_bytes(good)
    assert ask(drover, {"cmd": "reload"})["ok"] is True


def test_parked_requests_end_when_drover_stops(drover):
    """A client waiting on a scale that cannot finish hears why when drover shuts down."""
    drover.start(apps={"web": web_app(1),
                       "slow": {"command": h.helper("sockact_app.py", "--no-notify"),
                                "listen": f"127.0.0.1:{h.free_port()}", "workers": 1,
                                "ready": "notify", "ready_timeout": "30s"}})
    h.wait_until(lambda: ready_count(drover) == 1, 15, what="web ready")
    with connect(drover, timeout=30) as s:
        s.sendall(b'{"cmd":"scale","app":"slow","count":2}\n')
        drover.wait_record(lambda r: r.get("app") == "slow" and "scaled up" in r.get("msg", ""),
                           what="the scale request taken")
        drover.signal(15)
        reply = read_reply(s, timeout=20)
        assert reply == {"ok": False, "error": "drover is shutting down"}, reply
    assert drover.wait_exit(20) in (0, 1)


def test_a_command_is_carried_out_when_its_asker_leaves(drover):
    """scale and stop are intents: the asker hanging up at once takes nothing back."""
    start_ready(drover, workers=1)
    with connect(drover) as s:
        s.sendall(b'{"cmd":"scale","app":"web","count":3}\n')
    h.wait_until(lambda: ready_count(drover) == 3, 15, what="3 ready workers")
    with connect(drover) as s:
        s.sendall(b'{"cmd":"stop","app":"web"}\n')
    h.wait_until(lambda: [a["state"] for a in drover.status()["apps"]] == ["stopped"], 15,
                 what="web stopped")
    assert_status_answers(drover)


def test_requests_behind_a_command_wait_for_its_answer(drover):
    """A client's requests are answered in order: a status sent right behind a scale is
    answered after the scale's own answer, and sees its result."""
    start_ready(drover, workers=1)
    with connect(drover, timeout=20) as s:
        s.sendall(b'{"cmd":"scale","app":"web","count":2}\n{"cmd":"status"}\n'
                  b'{"cmd":"scale","app":"web","count":0}\n{"cmd":"start","app":"nope"}\n')
        f = s.makefile("rb")
        scaled = json.loads(f.readline())
        assert scaled["ok"] is True and scaled["workers"] == 2 and scaled["ready"] == 2, scaled
        status = json.loads(f.readline())
        workers = status["apps"][0]["workers"]
        assert [w["state"] for w in workers] == ["ready", "ready"], workers
        refused = json.loads(f.readline())
        assert refused == {"ok": False, "error": "cannot scale app 'web' to 0 workers: at least 1 "
                                                 "(stop it instead)"}, refused
        assert json.loads(f.readline()) == {"ok": False, "error": "no app named 'nope'"}


def test_followers_of_an_app_a_reload_removes(drover):
    """An app removed by a reload is freed; a `logs -f` of every app must let go of it, whether
    the app was running (it stops first) or stopped already."""
    chat = {"command": h.helper("chatty.py", "rm"), "workers": 1, "ready": "none"}
    web = web_app(1)
    drover.start(apps={"web": web, "chat": chat, "idle": dict(chat)})
    h.wait_until(lambda: ready_count(drover, "chat") == 1 and ready_count(drover, "idle") == 1,
                 15, what="chat and idle ready")
    assert drover.ctl("stop", "idle").returncode == 0
    follower = connect(drover)
    follower.sendall(b'{"cmd":"logs","lines":0,"follow":true}\n')
    assert read_reply(follower)["follow"] is True
    # The new config keeps web only: chat (running) and idle (stopped) go.
    drover.write_config(apps={"web": web})
    drover.signal(signal.SIGHUP)

    def gone():
        st = drover.status()
        return st and [a["name"] for a in st["apps"]] == ["web"]
    h.wait_until(gone, 15, what="chat and idle removed by the reload")
    # The follower goes now; drover unfollows only what still exists.
    follower.close()
    assert_status_answers(drover)
    assert ask(drover, {"cmd": "logs", "lines": 5})["ok"] is True
    drover.signal(signal.SIGTERM)
    assert drover.wait_exit(15) == 0


def test_clients_at_a_forced_shutdown(drover):
    """A shutdown that has to kill: every client (a follower, an idle one, a parked one) is
    closed in order, the socket file goes, and drover exits 1."""
    drover.start(supervisor={"shutdown_timeout": "1s", "drain_timeout": "500ms"},
                 apps={"stubborn": {"command": h.helper("ignore_term.py"), "workers": 1,
                                    "ready": "notify"},
                       "slow": {"command": h.helper("sockact_app.py", "--no-notify"),
                                "listen": f"127.0.0.1:{h.free_port()}", "workers": 1,
                                "ready": "notify", "ready_timeout": "30s"}})
    h.wait_until(lambda: ready_count(drover, "stubborn") == 1, 15, what="stubborn ready")
    follower = connect(drover)
    follower.sendall(b'{"cmd":"logs","follow":true}\n')
    idle = connect(drover)
    parked = connect(drover, timeout=30)
    parked.sendall(b'{"cmd":"scale","app":"slow","count":2}\n')
    try:
        drover.wait_record(lambda r: r.get("app") == "slow" and "scaled up" in r.get("msg", ""),
                           what="the scale request taken")
        drover.signal(signal.SIGTERM)
        assert drover.wait_exit(20) == 1
        for s in (follower, idle):
            s.settimeout(h.scaled(5))
            while True:
                try:
                    if not s.recv(1 << 16):
                        break
                except ConnectionResetError:
                    break
        assert read_reply(parked) == {"ok": False, "error": "drover is shutting down"}
    finally:
        for s in (follower, idle, parked):
            s.close()
    assert not os.path.exists(drover.control_socket)


def test_scale_while_a_restart_owns_the_app_is_refused_and_leaves_no_orphan(drover):
    """Issue 13, item 3: a restart (or a memory replacement) owns the app's slots until it is
    done; scale and SIGTTOU/TTIN meanwhile are refused with a clear answer, and afterwards every
    live worker has a slot: `wanted` and the worker count agree, and scale answers."""
    drover.start(apps={"web": web_app(2, ready="delay", ready_delay="1500ms")})
    h.wait_until(lambda: ready_count(drover) == 2, 15, what="2 ready workers")
    restart = subprocess.Popen([str(h.DROVERCTL), "-s", drover.control_socket, "--json",
                                "restart", "web"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    try:
        h.wait_until(lambda: any(w["state"] == "starting"
                                 for a in drover.status()["apps"] for w in a["workers"]),
                     5, what="the restart's first new worker")
        reply = ask(drover, {"cmd": "scale", "app": "web", "count": 1})
        assert reply["ok"] is False, reply
        assert "busy with a restart" in reply["error"], reply
        drover.signal(signal.SIGTTOU)
        drover.wait_record(lambda r: "SIGTTOU" in r.get("msg", "") and "busy" in r.get("msg", ""),
                           what="SIGTTOU refused while restarting")
        out, err = restart.communicate(timeout=h.scaled(30))
        assert restart.returncode == 0, (out, err)
    finally:
        if restart.poll() is None:
            restart.kill()
            restart.wait()

    def settled():
        app = drover.status()["apps"][0]
        return app["wanted"] == 2 and len(app["workers"]) == 2 and app["ready"] == 2
    h.wait_until(settled, 10, what="two workers in two slots after the restart")
    assert len(drover.workers()) == 2
    r = drover.ctl("scale", "web", "1", timeout=20)
    assert r.returncode == 0, (r.stdout, r.stderr)
    h.wait_until(lambda: len(drover.workers()) == 1, 10, what="one worker after scale 1")
    app = drover.status()["apps"][0]
    assert app["wanted"] == 1 and len(app["workers"]) == 1, app


def test_errored_when_every_slot_crash_loops_and_running_when_mended(drover):
    """Issue 13, item 8 (SPEC 7): an app whose every slot is in backoff after repeated fast
    crashes is `errored` in status, /health/detailed and the metrics; once a worker lives past
    min_uptime again it is `running`."""
    mended = drover.tmp / "mended"
    cmd = f"/bin/sh -c 'test -e {mended} && exec {h.helper('sockact_app.py')}; exit 1'"
    admin = f"127.0.0.1:{h.free_port()}"
    drover.start(supervisor={"admin_listen": admin}, apps={
        "web": web_app(1),
        "crash": {"command": cmd, "workers": 2, "listen": f"127.0.0.1:{h.free_port()}",
                  "ready": "notify", "min_uptime": "1s", "restart_delay": "100ms",
                  "restart_delay_max": "400ms", "memory_check_interval": "100ms"}})

    def crash_app():
        return [a for a in drover.status()["apps"] if a["name"] == "crash"][0]
    h.wait_until(lambda: crash_app()["state"] == "errored", 15, what="the app errored")
    rec = drover.wait_record(lambda r: r.get("app") == "crash" and r.get("state") == "errored")
    assert rec["level"] == "error" and "crash-looping" in rec["msg"], rec
    status, body = h.http_get(admin, "/health/detailed")
    detailed = {a["name"]: a for a in json.loads(body)["apps"]}
    assert detailed["crash"]["state"] == "errored" and detailed["web"]["state"] == "running"
    _, page = h.http_get(admin, "/metrics")
    assert f'drover_workers{{app="crash",state="ready"}} 0' in page
    # The crash app can reach errored before the other app's (Python) worker is ready, now
    # that a first fast crash is replaced at once: wait for it rather than race it.
    h.wait_until(lambda: ready_count(drover, "web") == 1, 10, what="web's worker ready")
    # Mended (the file a deploy was waiting for appears): running again, without any command.
    mended.touch()
    h.wait_until(lambda: crash_app()["state"] == "running" and crash_app()["ready"] == 2, 15,
                 what="the app running again")
    drover.wait_record(lambda r: r.get("app") == "crash" and r.get("state") == "running"
                       and r.get("from") == "errored")
