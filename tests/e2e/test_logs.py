"""Worker output becomes drover's log records (SPEC 4 "stdout/stderr", SPEC 8)."""

import fcntl
import json
import os
import re
import socket
import threading
import time

import pytest

import drover_harness as h


def chat_app(workers=2, tag="chat-xyz"):
    return {"command": h.helper("chatty.py", tag), "workers": workers, "ready": "none"}


def test_worker_lines_become_json_records(drover):
    drover.start(apps={"chat": chat_app()})
    workers = drover.wait_workers(2)

    def done_records():
        found = drover.find(lambda r: str(r.get("msg", "")).startswith("chat-xyz done"))
        return found if len(found) == 2 else None
    h.wait_until(done_records, 10, what="both workers' last line as a record")
    recs = drover.records()
    for rec in recs:
        assert isinstance(rec.get("ts"), str) and re.fullmatch(
            r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", rec["ts"]), rec
        assert rec.get("level") in ("debug", "info", "warn", "error"), rec

    slots = set()
    for pid in workers:
        mine = [r for r in recs if r.get("pid") == pid]
        out = [r for r in mine if r.get("msg", "").startswith(f"chat-xyz stdout pid {pid}")]
        err = [r for r in mine if r.get("msg", "").startswith(f"chat-xyz stderr pid {pid}")]
        obj = [r for r in mine if r.get("user") == "alice"]
        assert len(out) == 1 and len(err) == 1 and len(obj) == 1, f"records of {pid}: {mine}"
        slot = int(out[0]["msg"].rsplit(" ", 1)[1])
        slots.add(slot)
        for r in (out[0], err[0], obj[0]):
            assert r.get("app") == "chat", r
            assert r.get("worker") == slot, r
            assert r.get("pid") == pid, r
        # A line that is a JSON object is merged, not quoted.
        o = obj[0]
        assert o.get("n") == 42 and o.get("tag") == "chat-xyz", o
        assert o.get("msg") == f"chat-xyz structured pid {pid}", o
        assert "{" not in o["msg"], o
        # stderr is told apart from stdout.
        assert err[0] != out[0]
        assert (err[0].get("level"), err[0].get("stream")) != (out[0].get("level"),
                                                              out[0].get("stream")), (err, out)
    assert slots == {0, 1}

    # Every line on stdout is a JSON record: nothing else is mixed in.
    for line in drover.stdout_text().splitlines():
        if line.strip():
            assert isinstance(json.loads(line), dict), line


def test_text_format_is_for_humans(drover):
    drover.start(supervisor={"log_format": "text"}, apps={"chat": chat_app(workers=1)})
    (pid,) = drover.wait_workers(1)

    def line_seen():
        return [l for l in drover.stdout_text().splitlines() if f"chat-xyz done pid {pid}" in l]
    h.wait_until(line_seen, 10, what="the worker's last line in drover's text log")
    lines = [l for l in drover.stdout_text().splitlines() if l.strip()]
    for line in lines:
        try:
            json.loads(line)
        except ValueError:
            continue
        raise AssertionError(f"a JSON line in text format: {line}")
    out = [l for l in lines if f"chat-xyz stdout pid {pid}" in l]
    assert len(out) == 1, lines
    assert "chat" in out[0].split("chat-xyz")[0], f"the app is named before the message: {out[0]}"
    assert str(pid) in out[0].split("chat-xyz")[0], f"the pid is named: {out[0]}"
    assert [l for l in lines if f"chat-xyz structured pid {pid}" in l], lines


# ---- levels (SPEC 8): stderr is not an error; a worker's own level is normalised ----------

def levels_app(tag="lv-xyz"):
    return {"command": h.helper("levels.py", tag), "workers": 1, "ready": "none"}


def wait_levels(drover, tag="lv-xyz"):
    (pid,) = drover.wait_workers(1)
    # Its last lines on stdout and on stderr: the two pipes arrive in either order.
    drover.wait_record(lambda r: r.get("pid") == pid and r.get("msg") == f"{tag} done",
                       timeout=10, what="the levels worker's last stdout line")
    drover.wait_record(lambda r: r.get("pid") == pid and r.get("msg") == f"{tag} collide",
                       timeout=10, what="the levels worker's last stderr line")
    recs = [r for r in drover.records() if r.get("pid") == pid]

    def one(name):
        found = [r for r in recs if name in str(r.get("msg", ""))]
        assert len(found) == 1, f"{name}: {found}\nall: {recs}"
        return found[0]
    return pid, one


def test_levels_are_normalised(drover):
    drover.start(apps={"lv": levels_app()})
    pid, one = wait_levels(drover)

    # A plain line on stderr stays info and says where it came from.
    r = one("plain-stderr")
    assert (r["level"], r["stream"]) == ("info", "stderr"), r
    assert r["msg"] == f"[INFO] lv-xyz plain-stderr pid {pid}", r
    r = one("plain-stdout")
    assert (r["level"], r["stream"]) == ("info", "stdout"), r

    # pino numbers become drover's words; the worker's other members are kept.
    r = one("pino-info")
    assert (r["level"], r["stream"]) == ("info", "stderr"), r
    assert r["time"] == 1700000000000 and r["hostname"] == "h" and r["req"] == {"id": 7}, r
    assert "line_level" not in r and "line_pid" not in r, r
    r = one("pino-error")
    assert r["level"] == "error" and r["err"] == {"type": "Error"}, r
    r = one("pino-custom")
    assert r["level"] == "info" and r["line_level"] == 35, r

    # `<N>` prefixes give the syslog level and are stripped.
    r = one("sd-warn")
    assert (r["level"], r["msg"], r["stream"]) == ("warn", "lv-xyz sd-warn", "stderr"), r
    r = one("sd-err")
    assert (r["level"], r["msg"], r["stream"]) == ("error", "lv-xyz sd-err", "stdout"), r

    r = one("python-warning")
    assert r["level"] == "warn" and r["logger"] == "app.db", r

    # drover's own keys keep their types; a worker's contradicting ones are kept as line_*.
    r = one("collide")
    assert (r["app"], r["worker"], r["pid"], r["stream"]) == ("lv", 0, pid, "stderr"), r
    assert isinstance(r["ts"], str) and r["level"] == "info", r
    assert (r["line_ts"], r["line_pid"], r["line_worker"], r["line_app"], r["line_level"]) == (
        12345, "not-a-pid", "w-a", "other", "bogus"), r
    assert "line_stream" not in r, r

    # One field, one type and one vocabulary in the whole stream.
    for rec in drover.records():
        assert rec.get("level") in ("trace", "debug", "info", "warn", "error", "fatal"), rec
        assert isinstance(rec.get("ts"), str), rec
        for key in ("worker", "pid"):
            assert key not in rec or type(rec[key]) is int, rec


def test_text_format_shows_the_normalised_level(drover):
    drover.start(supervisor={"log_format": "text"}, apps={"lv": levels_app()})
    (pid,) = drover.wait_workers(1)

    # stdout and stderr are two pipes: their lines arrive in either order.
    names = ("lv-xyz done", "lv-xyz collide")

    def lines():
        text = drover.stdout_text().splitlines()
        return text if all(any(n in l for l in text) for n in names) else None
    text = h.wait_until(lines, 10, what="the levels worker's lines in the text log")

    def one(name):
        found = [l for l in text if name in l]
        assert len(found) == 1, f"{name}: {found}\nall: {text}"
        return found[0].split()

    assert one("plain-stderr")[1] == "info"
    assert one("pino-error")[1] == "error"
    assert one("sd-warn")[1] == "warn"
    assert one("python-warning")[1] == "warn"
    # The message, not the JSON: the worker's other members follow as key=value.
    words = one("pino-error")
    assert words[words.index("lv-xyz") + 1] == "pino-error", words
    assert 'err={"type":"Error"}' in words and not any('"level"' in w for w in words), words
    assert "stream=stderr" in one("plain-stderr")
    assert "stream=stderr" not in one("plain-stdout")


# ---- drover's stdout (SPEC 8): never blocks, never changes what it shares with its parent ----

class FdReader:
    """Reads drover's stdout from the test's end of a pipe, socket or pty, in a thread."""

    def __init__(self, fd):
        self.fd = fd
        self.data = bytearray()
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while True:
            try:
                chunk = os.read(self.fd, 65536)
            except OSError:  # EIO: a pty whose other side is gone; EBADF: closed by the test
                return
            if not chunk:
                return
            with self.lock:
                self.data += chunk

    def size(self):
        with self.lock:
            return len(self.data)

    def wait_quiet(self, quiet=0.5, timeout=20):
        """Waits until nothing arrived for `quiet` seconds: drover has written all it kept."""
        last = [self.size(), time.monotonic()]

        def settled():
            n = self.size()
            if n != last[0]:
                last[:] = [n, time.monotonic()]
            return time.monotonic() - last[1] >= quiet
        h.wait_until(settled, timeout, interval=0.05, what="drover's stdout to settle")

    def records(self):
        with self.lock:
            text = bytes(self.data)
        recs = []
        for line in text.replace(b"\r\n", b"\n").split(b"\n"):
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict):
                recs.append(rec)
        return recs


def is_nonblocking(fd):
    return bool(fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_NONBLOCK)


def shared_stdout(kind):
    """(drover's end, the test's reading end) of a fresh pipe, socketpair or pty."""
    if kind == "pipe":
        r, w = os.pipe()
    elif kind == "socket":
        a, b = socket.socketpair()
        r, w = a.detach(), b.detach()
    else:
        r, w = os.openpty()
    return w, r


AS_NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


def open_to_nobody(drover):
    """Lets drover run as nobody in its temp dir (the dir and its parent belong to root)."""
    if os.geteuid() != 0:
        pytest.skip("needs root to run drover as another user")
    os.chmod(drover.tmp.parent, 0o711)
    os.chmod(drover.tmp, 0o777)


# as_nobody: a pipe created by root cannot be reopened through /proc by drover running as
# nobody, so these cases take the per-call non-blocking path instead of the private reopening.
CASES = [("pipe", False), ("socket", False), ("tty", False), ("pipe", True)]


@pytest.mark.parametrize("kind,as_nobody", CASES, ids=["pipe", "socket", "tty", "pipe-nobody"])
def test_stdout_description_is_left_as_drover_found_it(drover, kind, as_nobody):
    w, r = shared_stdout(kind)
    try:
        if as_nobody:
            open_to_nobody(drover)
        assert not is_nonblocking(w)
        reader = FdReader(r)
        drover.start(apps={"chat": chat_app(workers=1)}, stdout=w,
                     wrapper=AS_NOBODY if as_nobody else None)
        (pid,) = drover.wait_workers(1)
        h.wait_until(lambda: [x for x in reader.records()
                              if x.get("msg") == f"chat-xyz done pid {pid}"], 10,
                     what="the worker's last line on the test's end")
        # O_NONBLOCK belongs to the open file description, which the test shares with drover:
        # had drover set it, the test's (the parent shell's) own writes would fail with EAGAIN.
        assert not is_nonblocking(w), f"drover made the {kind} it shares non-blocking"
        drover.stop()
        assert not is_nonblocking(w)
        # Written from the loop to the end, the shutdown's records included.
        h.wait_until(lambda: [x for x in reader.records() if x.get("phase") == "complete"], 5,
                     what="the shutdown's last record")
    finally:
        os.close(w)
        os.close(r)


def dropped_lines(admin, app):
    try:
        status, body = h.http_get(admin, "/metrics")
    except OSError:
        return None
    m = re.search(r'^drover_log_lines_dropped_total\{app="%s"\} (\S+)$' % app, body, re.M)
    return float(m.group(1)) if status == 200 and m else None


@pytest.mark.parametrize("as_nobody", [False, True], ids=["reopened", "nobody"])
def test_a_reader_that_stops_never_stalls_drover(drover, as_nobody):
    """Nobody reads drover's stdout: the pipe fills, drover's buffer fills, worker lines are
    dropped and counted, and drover goes on answering; once the reader is back, records flow."""
    w, r = shared_stdout("pipe")
    try:
        if as_nobody:
            open_to_nobody(drover)
        admin = f"127.0.0.1:{h.free_port()}"
        flood = {"command": h.helper("chatty.py", "flood", "--lines", "40000"), "workers": 1,
                 "ready": "none"}
        drover.start(supervisor={"admin_listen": admin}, apps={"chat": flood}, stdout=w,
                     wrapper=AS_NOBODY if as_nobody else None)
        h.wait_until(lambda: (dropped_lines(admin, "chat") or 0) > 0, 20,
                     what="worker lines dropped and counted while nobody reads")
        status = drover.status()
        assert status and status["ok"], status
        assert not is_nonblocking(w)

        reader = FdReader(r)
        h.wait_until(lambda: [x for x in reader.records() if "flood line" in x.get("msg", "")],
                     10, what="the buffered records once the reader is back")
        reader.wait_quiet()
        (old,) = drover.wait_workers(1)
        assert drover.ctl("restart", "chat").returncode == 0
        h.wait_until(lambda: [x for x in reader.records() if x.get("pid") not in (None, old)
                              and x.get("state") == "starting"], 10,
                     what="a new record after the reader caught up")
    finally:
        drover.stop()
        os.close(w)
        os.close(r)


def test_lines_of_any_length_arrive_whole_or_in_16k_pieces(drover):
    """A worker's output buffers grow as its lines need (most workers print little), up to
    16 KiB; a longer line arrives in pieces of that size, and nothing is lost."""
    script = ("import sys; sys.stdout.write('short-xyz\\n' + 'm' * 3000 + '-mid\\n'"
              " + 'L' * 40000 + '-end\\n'); sys.stdout.flush(); import time; time.sleep(60)")
    drover.start(apps={"w": {"command": f"{h.PYTHON} -c \"{script}\"", "workers": 1,
                             "ready": "none"}})
    drover.wait_record(lambda r: str(r.get("msg", "")).endswith("-end"), timeout=10,
                       what="the long line's last piece")
    msgs = [str(r.get("msg", "")) for r in drover.records() if r.get("app") == "w"
            and r.get("stream") == "stdout"]
    assert "short-xyz" in msgs
    assert "m" * 3000 + "-mid" in msgs
    pieces = [m for m in msgs if m and set(m.rstrip("-end")) == {"L"}]
    assert [len(p) for p in pieces] == [16384, 16384, 40000 - 2 * 16384 + 4], \
        [len(p) for p in pieces]
