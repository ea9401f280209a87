"""Probes shared by the hardening tests (test_chaos, test_soak, test_abuse): what the master
holds (fds, RSS, children), what wrk says, and a raw control-socket client.

Everything here only reads /proc or talks to 127.0.0.1 and the test's own control socket.
"""

import json
import os
import re
import socket
import statistics
import subprocess
import time

import drover_harness as h


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def fd_table(pid):
    """fd -> target, for failure messages."""
    out = {}
    for name in os.listdir(f"/proc/{pid}/fd"):
        try:
            out[int(name)] = os.readlink(f"/proc/{pid}/fd/{name}")
        except OSError:
            pass
    return dict(sorted(out.items()))


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def sanitized(pid):
    """True when pid runs under ASan (RSS then says little: freed memory sits in quarantine)."""
    try:
        with open(f"/proc/{pid}/maps") as f:
            return "libasan" in f.read()
    except OSError:
        return False


def under_valgrind():
    return "valgrind" in os.environ.get("DROVER_WRAPPER", "")


def zombies_of(ppid):
    """Pids of zombie children of ppid right now."""
    out = set()
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = h.proc_stat(int(name))
            if st and st[1] == ppid and st[0] == "Z":
                out.add(int(name))
    return out


def assert_no_lasting_zombie(ppid, timeout=3.0):
    """A child may be a zombie for the instant between its exit and the master's reaping; none
    may stay one. Every zombie seen now must be gone (reaped) within timeout."""
    first = zombies_of(ppid)
    if first:
        h.wait_until(lambda: not (zombies_of(ppid) & first), timeout,
                     what=f"zombies {sorted(first)} of {ppid} reaped")


# ---------------------------------------------------------------------------------------------
# wrk

WRK_ERRORS_RE = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")


def wrk_start(url, seconds, connections=16, threads=2, timeout_s=5, headers=()):
    """Starts wrk in its own session (a process this test owns); returns the Popen."""
    args = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{int(seconds)}s", "--timeout",
            f"{timeout_s}s"]
    for hdr in headers:
        args += ["-H", hdr]
    args.append(url)
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def wrk_result(out):
    """{'requests', 'connect', 'read', 'write', 'timeout', 'non2xx'} from wrk's output."""
    m = re.search(r"(\d+) requests in", out)
    res = {"requests": int(m.group(1)) if m else 0, "connect": 0, "read": 0, "write": 0,
           "timeout": 0, "non2xx": 0}
    m = WRK_ERRORS_RE.search(out)
    if m:
        res.update(zip(("connect", "read", "write", "timeout"), map(int, m.groups())))
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m:
        res["non2xx"] = int(m.group(1))
    return res


# ---------------------------------------------------------------------------------------------
# control socket, raw


def control_ask(path, request, timeout=5.0):
    """One request on a fresh connection to the control socket; returns the final reply."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(h.scaled(timeout))
        s.connect(path)
        s.sendall((json.dumps(request) + "\n").encode())
        buf = b""
        while True:
            chunk = s.recv(1 << 16)
            if not chunk:
                raise AssertionError(f"no reply to {request}")
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                reply = json.loads(line)
                if "ok" in reply:
                    return reply


def status_latency(dr, n=20):
    """Seconds of `droverctl --json status` (median) and of a raw status request (median,
    fastest)."""
    ctl, raw = [], []
    for _ in range(n):
        t0 = time.monotonic()
        r = dr.ctl("--json", "status", timeout=10)
        ctl.append(time.monotonic() - t0)
        assert r.returncode == 0, r.stderr
        t0 = time.monotonic()
        reply = control_ask(dr.control_socket, {"cmd": "status"})
        raw.append(time.monotonic() - t0)
        assert reply["ok"] is True
    return statistics.median(ctl), statistics.median(raw), min(raw)


def app_status(dr, name):
    st = dr.status()
    if not st:
        return None
    for a in st["apps"]:
        if a["name"] == name:
            return a
    return None


# ---------------------------------------------------------------------------------------------
# /metrics (when the admin endpoint is there)

SAMPLE_RE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)")


def monotonic_series(text):
    """{series: value} of every counter and histogram sample of a Prometheus text page (the
    series a merged page must never let go down)."""
    kinds = {}
    out = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            parts = line.split()
            if len(parts) >= 4:
                kinds[parts[2]] = parts[3]
            continue
        if not line or line.startswith("#"):
            continue
        m = SAMPLE_RE.match(line)
        if not m:
            continue
        name, labels, value = m.group(1), m.group(2) or "", m.group(3)
        base = name
        for suffix in ("_bucket", "_sum", "_count", "_total"):
            if kinds.get(base) is None and name.endswith(suffix):
                base = name[: -len(suffix)]
        kind = kinds.get(name) or kinds.get(base)
        if kind not in ("counter", "histogram"):
            continue
        if name.endswith("_sum") and kind == "histogram":
            pass  # a sum of non-negative observations: also monotonic here (durations)
        try:
            out[name + labels] = float(value)
        except ValueError:
            pass
    return out
