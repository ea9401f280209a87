"""droverctl, the control CLI (SPEC 2): every command, its human answer and its exit status.

Exit statuses: 0 done, 1 the command failed, 2 usage error, 3 no drover answers at the socket.
"""

import json
import os
import pty
import re
import select
import signal
import socket
import subprocess
import time

import pytest

import drover_harness as h


def web_app(workers=2, **extra):
    app = {"command": h.helper("sockact_app.py"), "workers": workers,
           "listen": f"127.0.0.1:{h.free_port()}", "ready": "notify", "ready_timeout": "10s"}
    app.update(extra)
    return app


def chat_app(workers=1, tag="chat-xyz"):
    return {"command": h.helper("chatty.py", tag), "workers": workers, "ready": "none"}


def app_status(drover, name="web"):
    st = drover.status()
    if not st:
        return None
    for a in st["apps"]:
        if a["name"] == name:
            return a
    return None


def ready_pids(drover, name="web"):
    a = app_status(drover, name)
    return sorted(w["pid"] for w in a["workers"] if w["state"] == "ready") if a else []


def wait_ready(drover, n, name="web", timeout=15):
    return h.wait_until(lambda: (lambda p: p if len(p) == n else None)(ready_pids(drover, name)),
                        timeout, what=f"{n} ready workers of {name}")


ANSI = re.compile(r"\x1b\[[0-9;]*m")


def ctl_env(**extra):
    """droverctl's environment without a DROVER_SOCKET of the caller's."""
    env = h.clean_env(extra)
    if "DROVER_SOCKET" not in extra:
        env.pop("DROVER_SOCKET", None)
    return env


class Lines:
    """Lines from a child's stdout, each read with a deadline (a test never hangs on a pipe)."""

    def __init__(self, pipe):
        self.fd = pipe.fileno()
        self.buf = b""

    def next(self, timeout=10.0):
        """The next line (str, without newline); None at EOF; fails after timeout."""
        deadline = time.monotonic() + h.scaled(timeout)
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise h.Timeout(f"no line within {h.scaled(timeout):.1f}s (have {self.buf!r})")
            ready, _, _ = select.select([self.fd], [], [], left)
            if ready:
                chunk = os.read(self.fd, 65536)
                if not chunk:
                    return None
                self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode()

    def until(self, pred, timeout=10.0):
        """Reads lines until pred(line) holds; returns that line."""
        deadline = time.monotonic() + h.scaled(timeout)
        while True:
            line = self.next(max(0.01, (deadline - time.monotonic()) / h.MULT))
            if line is None:
                raise AssertionError("EOF before the line looked for")
            if pred(line):
                return line


def follow(drover, *args):
    return subprocess.Popen([str(h.DROVERCTL), "-s", drover.control_socket] + list(args),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, env=ctl_env(), start_new_session=True)


def end(p):
    if p.poll() is None:
        p.kill()
    p.wait()
    for f in (p.stdout, p.stderr):
        if f:
            f.close()


# ---------------------------------------------------------------------------------------------
# Exit 2 and 3: usage errors, nobody there


def test_usage_errors_exit_2(tmp):
    ctl = [h.DROVERCTL, "-s", str(tmp / "none.sock")]
    cases = [
        [],
        ["explode"],
        ["scale"],
        ["scale", "web"],
        ["scale", "web", "many"],
        ["scale", "web", "+"],
        ["scale", "web", "2", "3"],
        ["start"],
        ["restart"],
        ["restart", "web", "first"],
        ["status", "a", "b"],
        ["logs", "-n"],
        ["logs", "-n", "lots"],
        ["logs", "--bogus"],
        ["status", "--bogus"],
        ["--timeout", "soon", "status"],
        ["--bogus", "status"],
    ]
    for args in cases:
        r = h.run(ctl + args)
        assert r.returncode == 2, (args, r.returncode, r.stderr)
        assert "usage: droverctl" in r.stderr, (args, r.stderr)
        assert r.stdout == "", (args, r.stdout)
    r = h.run([h.DROVERCTL, "--help"])
    assert r.returncode == 0 and "usage: droverctl" in r.stdout
    for word in ("status", "scale", "start", "stop", "restart", "reload", "logs", "metrics",
                 "DROVER_SOCKET", "--timeout", "--json"):
        assert word in r.stdout, word


def test_no_supervisor_exit_3_with_one_line(tmp):
    missing = tmp / "missing.sock"
    r = h.run([h.DROVERCTL, "-s", missing, "status"])
    assert r.returncode == 3
    assert r.stderr == f"droverctl: no drover at {missing}: No such file or directory\n"
    assert r.stdout == ""

    # A socket file left by a dead drover: nobody listens.
    stale = tmp / "stale.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(stale))
    s.close()
    for args in (["status"], ["stop"], ["logs", "-f"], ["scale", "web", "+1"]):
        r = h.run([h.DROVERCTL, "-s", stale] + args)
        assert r.returncode == 3, (args, r.stderr)
        assert r.stderr == f"droverctl: no drover at {stale}: Connection refused\n", args


def test_default_socket_is_drovers_default(drover, tmp):
    """No -s: droverctl looks where drover puts its socket ($XDG_RUNTIME_DIR/drover.sock)."""
    runtime = tmp / "xdg"
    runtime.mkdir(mode=0o700)
    drover.control_socket = str(runtime / "drover.sock")
    cfg = h.ini({"admin_listen": "off", "log_format": "json", "state_dir": str(drover.tmp / "st")},
                {"web": web_app(1)})
    (drover.tmp / "x.ini").write_text(cfg)
    drover.start(args=["-c", drover.tmp / "x.ini"], env={"XDG_RUNTIME_DIR": str(runtime)})
    env = ctl_env(XDG_RUNTIME_DIR=str(runtime))
    h.wait_until(lambda: h.run([h.DROVERCTL, "status"], env=env).returncode == 0, 15,
                 what="droverctl status on the default socket")
    # DROVER_SOCKET, documented in --help, wins over the default.
    env2 = ctl_env(XDG_RUNTIME_DIR=str(tmp), DROVER_SOCKET=str(runtime / "drover.sock"))
    assert h.run([h.DROVERCTL, "status"], env=env2).returncode == 0
    r = h.run([h.DROVERCTL, "status"], env=ctl_env(XDG_RUNTIME_DIR=str(tmp)))
    assert r.returncode == 3 and str(tmp / "drover.sock") in r.stderr


# ---------------------------------------------------------------------------------------------
# status


def test_status_table_for_people(drover):
    drover.start(apps={"web": web_app(2), "chat": chat_app(1)})
    wait_ready(drover, 2)
    wait_ready(drover, 1, "chat")
    r = drover.ctl("status")
    assert r.returncode == 0, r.stderr
    assert not ANSI.search(r.stdout), "no colour when stdout is not a terminal"
    lines = r.stdout.splitlines()
    header = lines[0].split()
    assert header == ["APP", "SLOT", "PID", "STATE", "GEN", "UPTIME", "RESTARTS", "MEMORY",
                      "CPU", "LAST_EXIT", "QUEUE"]
    # Below the table, which drover answered (the version changes with an upgrade in place).
    assert re.fullmatch(rf"drover \S+, pid {drover.pid}, up \S+", lines[-1]), r.stdout
    rows = [l for l in lines[1:-1] if l.strip()]
    assert len(rows) == 3, r.stdout
    # Aligned: every column starts at the same offset on every line.
    starts = [lines[0].index(col) for col in header]
    for row in rows:
        cells = row.split()
        # The accept queue is the app's: on its first row only, as "LENGTH/LIMIT".
        assert len(cells) in (10, 11), row
        if len(cells) == 11:
            assert re.fullmatch(r"\d+/\d+|-", cells[10]), row
        pos = 0
        for col, start in zip(cells, starts):
            at = row.index(col, pos)
            assert at == start, f"column {col!r} at {at}, header at {start}:\n{r.stdout}"
            pos = at + len(col)
    pids = {w for w in drover.workers()}
    by_app = {}
    for row in rows:
        app, slot, pid, state, gen, up, restarts, mem, cpu, last = row.split()[:10]
        assert last == "-", row  # no exit yet
        by_app.setdefault(app, []).append(int(slot))
        assert int(pid) in pids
        assert state == "ready" and gen == "1" and restarts == "0"
        assert re.fullmatch(r"\d+s|\d+m\d\ds", up), up
        assert re.fullmatch(r"\d+(\.\d)?[KMG]", mem), mem
        assert re.fullmatch(r"\d+\.\d%", cpu), cpu
    assert by_app == {"web": [0, 1], "chat": [0]}

    # status APP shows that app only; --json the raw reply.
    r = drover.ctl("status", "chat")
    assert r.returncode == 0 and [l.split()[0] for l in r.stdout.splitlines()[1:]] == ["chat"]
    r = drover.ctl("--json", "status", "web")
    reply = json.loads(r.stdout)
    assert reply["ok"] is True and [a["name"] for a in reply["apps"]] == ["web"]
    r = drover.ctl("status", "nope")
    assert r.returncode == 1 and r.stderr == "droverctl: no app named 'nope'\n"


def test_status_colour_only_on_a_terminal(drover):
    drover.start(apps={"web": web_app(1)})
    wait_ready(drover, 1)

    def on_tty(extra_env):
        master, slave = pty.openpty()
        env = ctl_env(**extra_env)
        if "NO_COLOR" not in extra_env:
            env.pop("NO_COLOR", None)
        p = subprocess.Popen([str(h.DROVERCTL), "-s", drover.control_socket, "status"],
                             stdin=subprocess.DEVNULL, stdout=slave, stderr=subprocess.PIPE,
                             env=env, start_new_session=True)
        os.close(slave)
        out = b""
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        os.close(master)
        assert p.wait(timeout=h.scaled(10)) == 0
        return out.decode()
    coloured = on_tty({})
    assert ANSI.search(coloured), coloured
    assert "ready" in ANSI.sub("", coloured)
    plain = on_tty({"NO_COLOR": "1"})
    assert not ANSI.search(plain) and "ready" in plain


def test_status_of_a_stopped_app(drover):
    drover.start(apps={"web": web_app(1), "chat": chat_app(1)})
    wait_ready(drover, 1, "chat")
    assert drover.ctl("stop", "chat").returncode == 0
    r = drover.ctl("status")
    rows = {l.split()[0]: l.split() for l in r.stdout.splitlines()[1:]}
    assert rows["chat"][1:4] == ["-", "-", "stopped"], r.stdout


# ---------------------------------------------------------------------------------------------
# scale, stop APP, start APP


def test_scale_up_and_down(drover):
    drover.start(apps={"web": web_app(2)})
    before = wait_ready(drover, 2)

    r = drover.ctl("scale", "web", "4", timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("web: 4 workers, 4 ready"), r.stdout
    # droverctl returns once all four are ready: no waiting needed here.
    a = app_status(drover)
    assert a["wanted"] == 4
    assert sorted(w["slot"] for w in a["workers"]) == [0, 1, 2, 3]
    assert all(w["state"] == "ready" for w in a["workers"]), a
    assert set(before) <= {w["pid"] for w in a["workers"]}, "scaling up keeps the old workers"

    top = {w["slot"]: w["pid"] for w in a["workers"]}
    r = drover.ctl("scale", "web", "-1", timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("web: 3 workers, 3 ready"), r.stdout
    # The highest slot went, and droverctl answered after its worker had exited.
    assert not h.pid_alive(top[3]), "scale down answers once the removed worker has exited"
    a = app_status(drover)
    assert sorted(w["slot"] for w in a["workers"]) == [0, 1, 2]

    r = drover.ctl("--json", "scale", "web", "+2", timeout=30)
    assert r.returncode == 0
    reply = json.loads(r.stdout)
    assert reply["ok"] is True and reply["workers"] == 5 and reply["ready"] == 5

    r = drover.ctl("scale", "web", "1", timeout=30)
    assert r.returncode == 0, r.stderr
    assert len(drover.wait_workers(1)) == 1
    assert app_status(drover)["wanted"] == 1

    r = drover.ctl("scale", "web", "0")
    assert r.returncode == 1 and "at least 1" in r.stderr
    r = drover.ctl("scale", "web", "-1")
    assert r.returncode == 1 and "at least 1" in r.stderr
    r = drover.ctl("scale", "nope", "2")
    assert r.returncode == 1 and r.stderr == "droverctl: no app named 'nope'\n"


def test_scale_fails_when_new_workers_cannot_start(drover):
    flag = drover.tmp / "broken"
    app = web_app(1, restart_delay="3s", min_uptime="5s")
    # The command fails while the flag file exists: only workers started after it break.
    app["command"] = (f"/bin/sh -c 'test -e {flag} && exit 7; exec {h.helper('sockact_app.py')}'")
    drover.start(apps={"web": app})
    wait_ready(drover, 1)
    flag.write_text("")
    r = drover.ctl("scale", "web", "3", timeout=30)
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "failed to start" in r.stderr, r.stderr
    assert drover.proc.poll() is None


def test_stop_and_start_an_app(drover):
    drover.start(apps={"web": web_app(2), "chat": chat_app(1)})
    pids = wait_ready(drover, 2)
    wait_ready(drover, 1, "chat")
    chat_pids = ready_pids(drover, "chat")

    r = drover.ctl("stop", "web", timeout=30)
    assert r.returncode == 0, r.stderr
    assert re.fullmatch(r"web: stopped \(\d+\.\d s\)\n", r.stdout), r.stdout
    # Answered once the app had stopped: its workers are gone, the other app is untouched.
    for p in pids:
        assert not h.pid_alive(p)
    a = app_status(drover)
    assert a["state"] == "stopped" and a["workers"] == [] and a["ready"] == 0
    assert ready_pids(drover, "chat") == chat_pids
    drover.wait_record(lambda rec: rec.get("app") == "web" and rec.get("msg") == "app stopped")

    r = drover.ctl("stop", "web")
    assert r.returncode == 0 and r.stdout == "web: already stopped\n"

    r = drover.ctl("start", "web", timeout=30)
    assert r.returncode == 0, r.stderr
    assert re.fullmatch(r"web: started, 2 workers ready \(\d+\.\d s\)\n", r.stdout), r.stdout
    a = app_status(drover)
    assert a["state"] == "running" and a["ready"] == 2
    assert not set(w["pid"] for w in a["workers"]) & set(pids)

    r = drover.ctl("start", "web")
    assert r.returncode == 0 and "already running" in r.stdout
    r = drover.ctl("start", "nope")
    assert r.returncode == 1 and r.stderr == "droverctl: no app named 'nope'\n"
    r = drover.ctl("stop", "nope")
    assert r.returncode == 1 and r.stderr == "droverctl: no app named 'nope'\n"


def test_stop_the_supervisor(drover):
    drover.start(apps={"web": web_app(2)})
    pids = wait_ready(drover, 2)
    r = drover.ctl("stop", timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"drover (pid {drover.pid}): stopping\ndrover: stopped\n", r.stdout
    # droverctl waited for the end: drover has exited (or is exiting), cleanly.
    assert drover.wait_exit(5) == 0
    for p in pids:
        assert not h.pid_alive(p)
    assert not os.path.exists(drover.control_socket)
    r = drover.ctl("status")
    assert r.returncode == 3


def test_stop_the_supervisor_json(drover):
    drover.start(apps={"web": web_app(1)})
    wait_ready(drover, 1)
    r = drover.ctl("--json", "stop", timeout=30)
    assert r.returncode == 0, r.stderr
    reply = json.loads(r.stdout.splitlines()[0])
    assert reply == {"ok": True, "stopping": True, "pid": drover.pid}
    assert drover.wait_exit(5) == 0


def test_reload_restart_metrics_commands(drover):
    drover.start(apps={"web": web_app(1)})
    wait_ready(drover, 1)
    for args, says in ((["reload"], "web: reload done"), (["reload", "web"], "web: reload done"),
                       (["restart", "web"], "web: restart done"),
                       (["restart", "web", "0"], "web: restart done"),
                       (["metrics"], "# TYPE drover_uptime_seconds")):
        r = drover.ctl(*args, timeout=30)
        assert r.returncode == 0, (args, r.stdout, r.stderr)
        assert says in r.stdout, (args, r.stdout)
        if args[0] == "restart":
            # The reply's reason words are for the metrics (reason="manual"), not a person.
            assert "manual" not in r.stdout, (args, r.stdout)
    r = drover.ctl("--json", "metrics", "--json")
    assert r.returncode == 0 and json.loads(r.stdout.splitlines()[-1])["format"] == "json"
    r = drover.ctl("restart", "nope")
    assert r.returncode == 1 and "no app named 'nope'" in r.stderr
    r = drover.ctl("reload", "nope")
    assert r.returncode == 1 and "no app named 'nope'" in r.stderr


# ---------------------------------------------------------------------------------------------
# logs


def test_logs_recent_lines(drover):
    drover.start(apps={"chat": chat_app(2), "web": web_app(1)})
    pids = wait_ready(drover, 2, "chat")

    def all_done():
        r = drover.ctl("--json", "logs", "chat", "-n", "1000")
        recs = [json.loads(l)["log"] for l in r.stdout.splitlines() if '"log"' in l]
        return recs if len([x for x in recs if x["msg"].startswith("chat-xyz done")]) == 2 \
            else None
    recs = h.wait_until(all_done, 10, what="both chat workers' lines in the ring")
    for rec in recs:
        assert set(rec) == {"ts", "app", "worker", "pid", "stream", "msg"}, rec
        assert rec["app"] == "chat" and rec["pid"] in pids
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", rec["ts"]), rec
    errs = [r for r in recs if r["stream"] == "stderr"]
    assert len(errs) == 2 and all(r["msg"].startswith("chat-xyz stderr") for r in errs)
    assert recs == sorted(recs, key=lambda r: r["ts"])

    # -n N: the last N lines, the newest last.
    r = drover.ctl("--json", "logs", "chat", "-n", "3")
    lines = r.stdout.splitlines()
    assert [json.loads(l)["log"] for l in lines[:-1]] == recs[-3:]
    assert json.loads(lines[-1])["ok"] is True
    assert drover.ctl("--json", "logs", "chat", "-n", "0").stdout.count('"log"') == 0

    # Human form: time, app/slot, pid, stream, the line.
    r = drover.ctl("logs", "chat", "-n", "2")
    assert r.returncode == 0
    out = r.stdout.splitlines()
    assert len(out) == 2
    for l in out:
        assert re.fullmatch(r"\S+Z chat/[01] \[\d+\] (out|err)\| .*", l), l
    assert out[-1].endswith(recs[-1]["msg"])

    # Without an app: every app's lines, interleaved by time.
    r = drover.ctl("--json", "logs", "-n", "1000")
    both = [json.loads(l)["log"] for l in r.stdout.splitlines() if '"log"' in l]
    assert {x["app"] for x in both} >= {"chat"}
    assert both == sorted(both, key=lambda x: x["ts"])
    assert drover.ctl("logs", "nope").returncode == 1


def test_logs_follow_until_sigint(drover):
    drover.start(apps={"chat": chat_app(1, tag="fol-abc")})
    wait_ready(drover, 1, "chat")
    p = follow(drover, "logs", "chat", "-n", "1", "-f")
    try:
        out = Lines(p.stdout)
        # The backlog line comes after drover registered the follower: from here on, nothing
        # the app writes is missed.
        assert "fol-abc" in out.next()
        r = drover.ctl("scale", "chat", "2")
        assert r.returncode == 0, r.stderr
        new_pid = max(drover.wait_workers(2))
        # stdout and stderr are separate pipes: their lines may come in either order.
        want = {f"fol-abc stderr pid {new_pid}": None, f"fol-abc done pid {new_pid}": None}

        def note(line):
            for k in want:
                if k in line:
                    want[k] = line
            return all(want.values())
        out.until(note)
        line = want[f"fol-abc stderr pid {new_pid}"]
        assert re.fullmatch(rf"\S+Z chat/1 \[{new_pid}\] err\| fol-abc stderr pid {new_pid} "
                            r"slot 1", line), line
        assert p.poll() is None, "logs -f keeps following"
        p.send_signal(signal.SIGINT)
        assert p.wait(timeout=h.scaled(5)) == 0
    finally:
        end(p)
    # The follower is gone from drover too: the next lines go nowhere, and nothing breaks.
    assert drover.ctl("scale", "chat", "3").returncode == 0
    assert drover.ctl("status").returncode == 0


def test_logs_follow_json(drover):
    drover.start(apps={"chat": chat_app(1, tag="fj")})
    wait_ready(drover, 1, "chat")
    h.wait_until(lambda: (lambda o: "fj done" in o and "fj stderr" in o)(
        drover.ctl("logs", "-n", "10").stdout), 10, what="the first worker's lines")
    p = follow(drover, "--json", "logs", "-f", "-n", "1")
    try:
        out = Lines(p.stdout)
        first = json.loads(out.next())
        assert first["log"]["app"] == "chat" and first["log"]["worker"] == 0, first
        assert json.loads(out.next()) == {"ok": True, "lines": 1, "truncated": 0,
                                          "follow": True}
        assert drover.ctl("scale", "chat", "2").returncode == 0
        got = json.loads(out.until(lambda l: "fj done pid" in l))
        assert got["log"]["app"] == "chat" and got["log"]["worker"] == 1
        p.send_signal(signal.SIGINT)
        assert p.wait(timeout=h.scaled(5)) == 0
    finally:
        end(p)


def test_logs_follow_ends_when_drover_stops(drover):
    drover.start(apps={"chat": chat_app(1)})
    wait_ready(drover, 1, "chat")
    h.wait_until(lambda: "chat-xyz done" in drover.ctl("logs").stdout, 10,
                 what="the worker's last line")
    p = follow(drover, "logs", "-f")
    try:
        Lines(p.stdout).until(lambda l: "chat-xyz done" in l)
        drover.signal(15)
        assert drover.wait_exit(15) == 0
        assert p.wait(timeout=h.scaled(5)) == 0
    finally:
        end(p)


def test_a_stopped_apps_clients_are_refused_until_it_starts(drover):
    """Issue 13, item 10 (SPEC 5, "Start"): after `stop APP` nobody drains the backlog, so the
    app's addresses refuse connections at once instead of hanging them; `start` binds them
    again. A unix address loses its file meanwhile."""
    port = h.free_port()
    path = drover.tmp / "web.sock"
    drover.start(apps={"web": web_app(1, listen=[f"127.0.0.1:{port}", f"unix:{path}"]),
                       "chat": chat_app(1)})
    wait_ready(drover, 1)
    assert drover.ctl("stop", "web", timeout=30).returncode == 0
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    assert not path.exists()
    drover.wait_record(lambda r: r.get("app") == "web" and "refused until" in r.get("msg", ""))
    # The other app's port is untouched.
    wait_ready(drover, 1, "chat")
    assert drover.ctl("start", "web", timeout=30).returncode == 0
    wait_ready(drover, 1)
    assert h.http_get(f"127.0.0.1:{port}")[0] == 200
    # The helper serves its first address only; the second is bound and takes connections.
    with socket.socket(socket.AF_UNIX) as u:
        u.connect(str(path))


def test_start_reports_an_address_taken_while_stopped(drover):
    port = h.free_port()
    drover.start(apps={"web": web_app(1, listen=f"127.0.0.1:{port}")})
    wait_ready(drover, 1)
    assert drover.ctl("stop", "web", timeout=30).returncode == 0
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port))
        squatter.listen(1)
        r = drover.ctl("start", "web", timeout=30)
        assert r.returncode == 1, (r.stdout, r.stderr)
        assert f"bind('127.0.0.1:{port}') failed: Address already in use" in r.stderr, r.stderr
        assert app_status(drover)["state"] == "stopped"
    assert drover.ctl("start", "web", timeout=30).returncode == 0
    wait_ready(drover, 1)
