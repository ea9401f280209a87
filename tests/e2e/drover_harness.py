"""Harness for drover's end-to-end tests: the real binaries, one temp dir and free ports per test.

What it gives a test:
  - paths to the binaries (DROVER_BUILD_DIR, default <repo>/build) and to the helper workers;
  - wait_until(cond, timeout): poll instead of sleeping; every timeout is multiplied by
    DROVER_TEST_TIMEOUT_MULT (default 1) so slow builds (ASan) can stretch them;
  - free ports, an INI writer, a minimal HTTP client for tcp, [::1] and unix: addresses;
  - Drover: starts `drover` with stdout/stderr captured to files, parses its JSON log records,
    lists its worker processes from /proc, and on stop() kills everything it started.

Teardown kills only processes this harness started: drover itself (its own session, started
with start_new_session) and the workers seen as drover's children. Workers are remembered as
(pid, start time) so a recycled pid is never signalled.
"""

import errno
import http.client
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("DROVER_BUILD_DIR") or REPO / "build").resolve()
DROVER = BUILD / "supervisor" / "drover"
DROVERCTL = BUILD / "supervisor" / "droverctl"
HELLO = BUILD / "worker-sdk" / "examples" / "hello-http"
HELPERS = Path(__file__).resolve().parent / "helpers"
PYTHON = "/usr/bin/python3"

MULT = float(os.environ.get("DROVER_TEST_TIMEOUT_MULT") or 1)


def scaled(seconds):
    """A timeout stretched by DROVER_TEST_TIMEOUT_MULT."""
    return seconds * MULT


def helper(name, *args):
    """The command line (as an INI `command` value) running helper script `name`."""
    parts = [PYTHON, str(HELPERS / name)] + [str(a) for a in args]
    return " ".join(parts)


def hello(*args):
    return " ".join([str(HELLO), "--greeting", "hi"] + [str(a) for a in args])


class Timeout(AssertionError):
    pass


def wait_until(cond, timeout, interval=0.02, what=None):
    """Calls cond() until it returns something truthy and returns that.

    Gives up after timeout * DROVER_TEST_TIMEOUT_MULT seconds with an AssertionError naming
    `what` (or the condition). Exceptions from cond() count as "not yet" until the deadline,
    then the last one is chained to the failure.
    """
    deadline = time.monotonic() + scaled(timeout)
    last_exc = None
    while True:
        try:
            value = cond()
            if value:
                return value
            last_exc = None
        except Exception as e:  # noqa: BLE001 - polling: anything may fail until ready
            last_exc = e
        if time.monotonic() >= deadline:
            name = what or getattr(cond, "__name__", "condition")
            msg = f"timed out after {scaled(timeout):.1f}s waiting for {name}"
            if last_exc is not None:
                msg += f" (last error: {last_exc!r})"
            raise Timeout(msg) from last_exc
        time.sleep(interval)


# ---------------------------------------------------------------------------------------------
# Ports and addresses


def free_port(host="127.0.0.1"):
    """A port nothing listens on right now (bind to 0, read it, release it)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def have_ipv6_loopback():
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def parse_address(addr):
    """'127.0.0.1:80' | '[::1]:80' | 'unix:/path' -> (family, sockaddr)."""
    if addr.startswith("unix:"):
        return socket.AF_UNIX, addr[5:]
    m = re.fullmatch(r"\[(.*)\]:(\d+)", addr)
    if m:
        return socket.AF_INET6, (m.group(1), int(m.group(2)))
    host, port = addr.rsplit(":", 1)
    return socket.AF_INET, (host, int(port))


def connect(addr, timeout=2.0):
    family, sockaddr = parse_address(addr)
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(sockaddr)
    except BaseException:
        s.close()
        raise
    return s


class _Conn(http.client.HTTPConnection):
    """http.client over any address parse_address understands."""

    def __init__(self, addr, timeout):
        super().__init__("localhost", timeout=timeout)
        self._addr = addr

    def connect(self):
        self.sock = connect(self._addr, self.timeout)


def http_get(addr, path="/", timeout=2.0, headers=None):
    """One GET on a fresh connection. Returns (status, body text). Raises on failure."""
    conn = _Conn(addr, timeout)
    try:
        hdrs = {"Connection": "close"}
        hdrs.update(headers or {})
        conn.request("GET", path, headers=hdrs)
        resp = conn.getresponse()
        body = resp.read().decode("utf-8", "replace")
        return resp.status, body
    finally:
        conn.close()


def http_ok(addr, path="/"):
    """True when addr answers GET path with 200 (for wait_until)."""
    try:
        status, _ = http_get(addr, path, timeout=1.0)
        return status == 200
    except OSError:
        return False
    except http.client.HTTPException:
        return False


PID_RE = re.compile(r"pid[ =:]+(\d+)")


def body_pid(body):
    m = PID_RE.search(body)
    return int(m.group(1)) if m else None


def serving_pids(addr, want, timeout=5.0, concurrency=16):
    """Sends batches of concurrent requests until `want` distinct pids answered ("pid N" in the
    body) or the timeout passes. Returns the set of pids seen."""
    import concurrent.futures

    seen = set()

    def one(_):
        try:
            status, body = http_get(addr, timeout=2.0)
        except (OSError, http.client.HTTPException):
            return None
        return body_pid(body) if status == 200 else None

    deadline = time.monotonic() + scaled(timeout)
    with concurrent.futures.ThreadPoolExecutor(concurrency) as ex:
        while time.monotonic() < deadline and len(seen) < want:
            for pid in ex.map(one, range(concurrency * 2)):
                if pid:
                    seen.add(pid)
    return seen


# ---------------------------------------------------------------------------------------------
# Processes


def proc_stat(pid):
    """(state, ppid, pgid, starttime) from /proc/PID/stat, or None when it does not exist."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except OSError:
        return None
    rest = data[data.rindex(")") + 2:].split()
    return rest[0], int(rest[1]), int(rest[2]), int(rest[19])


def pid_alive(pid):
    """True when pid exists and is not a zombie."""
    st = proc_stat(pid)
    return st is not None and st[0] not in ("Z", "X")


def children_of(ppid):
    """Live (non-zombie) pids whose parent is ppid, scanning /proc (this kernel has no
    /proc/PID/task/TID/children)."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        st = proc_stat(int(name))
        if st and st[1] == ppid and st[0] not in ("Z", "X"):
            out.append(int(name))
    return sorted(out)


def descendants_of(pid):
    table = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = proc_stat(int(name))
            if st:
                table[int(name)] = st
    result, frontier = [], [pid]
    while frontier:
        p = frontier.pop()
        for child, st in table.items():
            if st[1] == p and st[0] not in ("Z", "X"):
                result.append(child)
                frontier.append(child)
    return result


def proc_environ(pid):
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            raw = f.read()
    except OSError:
        return {}
    env = {}
    for item in raw.split(b"\0"):
        if b"=" in item:
            k, v = item.split(b"=", 1)
            env[k.decode()] = v.decode("utf-8", "replace")
    return env


CLK_TCK = os.sysconf("SC_CLK_TCK")


def uptime():
    """Seconds since boot, the clock /proc/PID/stat start times count in (in CLK_TCK units)."""
    with open("/proc/uptime") as f:
        return float(f.read().split()[0])


class Identity:
    """A process remembered by pid and start time, so a recycled pid is never signalled."""

    def __init__(self, pid):
        st = proc_stat(pid)
        self.pid = pid
        self.start = st[3] if st else None

    def alive(self):
        st = proc_stat(self.pid)
        return st is not None and st[3] == self.start and st[0] not in ("Z", "X")

    def kill_group(self, sig=signal.SIGKILL):
        if not self.alive():
            return
        st = proc_stat(self.pid)
        try:
            if st and st[2] == self.pid:
                os.killpg(self.pid, sig)
            else:
                os.kill(self.pid, sig)
        except ProcessLookupError:
            pass


# ---------------------------------------------------------------------------------------------
# Config


def ini(supervisor=None, apps=None):
    """INI text from dicts. A list value becomes one line per item (listen, env)."""
    lines = ["; written by tests/e2e/drover_harness.py"]

    def section(name, items):
        lines.append(f"[{name}]")
        for k, v in items.items():
            for item in (v if isinstance(v, (list, tuple)) else [v]):
                if isinstance(item, bool):
                    item = "yes" if item else "no"
                lines.append(f"{k} = {item}")
        lines.append("")

    if supervisor is not None:
        section("supervisor", supervisor)
    for name, items in (apps or {}).items():
        # "hook:NAME" (and any other KIND:NAME) is a section of its own; an app name has no ':'.
        section(name if ":" in name else f"app:{name}", items)
    return "\n".join(lines) + "\n"


def clean_env(extra=None):
    """drover's environment: ours minus anything that would leak systemd or sanitizer state."""
    env = dict(os.environ)
    for k in ("NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "WATCHDOG_USEC",
              "WATCHDOG_PID"):
        env.pop(k, None)
    env.update(extra or {})
    return env


SANITIZER_RE = re.compile(r"ERROR: (AddressSanitizer|LeakSanitizer)|runtime error: |"
                          r"SUMMARY: UndefinedBehaviorSanitizer")


def sanitizer_report(text):
    """The first lines of an ASan/LSan/UBSan report in text, or None."""
    m = SANITIZER_RE.search(text or "")
    if not m:
        return None
    start = text.rfind("\n", 0, m.start()) + 1
    return text[start:start + 3000]


def run(args, cwd=None, timeout=10.0, env=None):
    """Runs a binary to completion in its own session; on timeout kills its group and fails.
    Returns CompletedProcess with text stdout/stderr."""
    p = subprocess.Popen([str(a) for a in args], cwd=cwd, env=env or clean_env(),
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = p.communicate(timeout=scaled(timeout))
    except subprocess.TimeoutExpired:
        kids = [Identity(c) for c in descendants_of(p.pid)]
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        for k in kids:
            k.kill_group()
        out, err = p.communicate()
        raise AssertionError(f"{args} did not exit within {scaled(timeout):.1f}s; "
                             f"stdout={out!r} stderr={err!r}")
    report = sanitizer_report(err)
    if report:
        raise AssertionError(f"{args}: sanitizer report:\n{report}")
    return subprocess.CompletedProcess(p.args, p.returncode, out, err)


# ---------------------------------------------------------------------------------------------
# drover under test


def default_supervisor(tmp):
    return {
        "control_socket": str(tmp / "drover.sock"),
        "admin_listen": "off",
        "log_format": "json",
        "state_dir": str(tmp / "state"),
        "shutdown_timeout": "10s",
        "drain_timeout": "3s",
        "save_timeout": "2s",
        "close_timeout": "2s",
        "cleanup_timeout": "2s",
    }


class Drover:
    """One drover process under test, rooted in its own temp dir."""

    def __init__(self, tmp):
        self.tmp = Path(tmp)
        self.proc = None
        self.config_path = None
        self.control_socket = str(self.tmp / "drover.sock")
        self.out_path = self.tmp / "drover.out"
        self.err_path = self.tmp / "drover.err"
        self._known = {}  # pid -> Identity of every worker seen
        self._offset = 0
        self._records = []
        self._partial = b""

    # -- starting ------------------------------------------------------------------------

    def write_config(self, supervisor=None, apps=None, name="drover.ini"):
        sup = default_supervisor(self.tmp)
        sup.update(supervisor or {})
        self.control_socket = sup.get("control_socket", self.control_socket)
        path = self.tmp / name
        path.write_text(ini(sup, apps))
        self.config_path = path
        return path

    def start(self, supervisor=None, apps=None, args=None, env=None, wrapper=None, stdout=None):
        """Starts drover: with a config written from supervisor/apps, or with raw args.

        The command is prefixed with `wrapper` (a list, e.g. prlimit) and then with
        $DROVER_WRAPPER (e.g. valgrind, see scripts/test --valgrind); both must exec drover in
        place, so the Popen pid stays drover's pid. stdout, when given (an fd: a pipe, socket or
        terminal the test reads itself), replaces the capture file; records() then sees
        nothing."""
        if args is None:
            if self.config_path is None or supervisor is not None or apps is not None:
                self.write_config(supervisor, apps)
            args = ["-c", str(self.config_path)]
        self.out = open(self.out_path, "wb") if stdout is None else None
        self.err = open(self.err_path, "wb")
        prefix = [str(w) for w in (wrapper or [])] + shlex.split(os.environ.get("DROVER_WRAPPER",
                                                                                 ""))
        self.proc = subprocess.Popen(prefix + [str(DROVER)] + [str(a) for a in args], cwd=self.tmp,
                                     env=clean_env(env), stdin=subprocess.DEVNULL,
                                     stdout=self.out if stdout is None else stdout,
                                     stderr=self.err, start_new_session=True)
        return self

    def wait_http(self, addr, path="/", timeout=10.0):
        """Waits until addr answers 200; fails early, with the logs, if drover exits."""
        def ready():
            if self.proc.poll() is not None:
                raise AssertionError(f"drover exited with {self.proc.returncode} before "
                                     f"{addr} answered:\n{self.output()}")
            return http_ok(addr, path)
        try:
            wait_until(ready, timeout, interval=0.05, what=f"HTTP 200 from {addr}{path}")
        except Timeout as e:
            raise AssertionError(f"{e}\n--- drover output ---\n{self.output()}") from None
        return self

    def wait_workers(self, n, timeout=10.0):
        """Waits until drover has exactly n live child processes; returns their pids."""
        return wait_until(lambda: (lambda w: w if len(w) == n else None)(self.workers()),
                          timeout, what=f"{n} workers (have {self.workers()})")

    # -- observing -----------------------------------------------------------------------

    @property
    def pid(self):
        return self.proc.pid

    def workers(self):
        """drover's live children now (its workers), remembered for teardown."""
        if self.proc is None:
            return []
        kids = children_of(self.proc.pid)
        for k in kids:
            if k not in self._known or not self._known[k].alive():
                self._known[k] = Identity(k)
        return kids

    def _read(self):
        try:
            with open(self.out_path, "rb") as f:
                f.seek(self._offset)
                data = f.read()
        except FileNotFoundError:
            return
        self._offset += len(data)
        data = self._partial + data
        *lines, self._partial = data.split(b"\n")
        for line in lines:
            line = line.strip()
            if not line.startswith(b"{"):
                continue
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict):
                self._records.append(rec)

    def records(self):
        """Every JSON log record drover has written so far (SPEC section 8)."""
        self._read()
        return list(self._records)

    def find(self, pred):
        return [r for r in self.records() if pred(r)]

    def wait_record(self, pred, timeout=5.0, what="log record"):
        def look():
            found = self.find(pred)
            return found[0] if found else None
        try:
            return wait_until(look, timeout, interval=0.05, what=what)
        except Timeout as e:
            raise AssertionError(f"{e}\n--- drover output ---\n{self.output()}") from None

    def stdout_text(self):
        try:
            return self.out_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def output(self):
        """stdout and stderr together, for assertions on messages and for failure reports."""
        err = self.err_path.read_text(errors="replace") if self.err_path.exists() else ""
        out = self.stdout_text()
        if len(out) > 20000:
            out = "...\n" + out[-20000:]
        return out + ("\n--- stderr ---\n" + err if err else "")

    def ctl(self, *args, timeout=10.0):
        return run([DROVERCTL, "-s", self.control_socket] + list(args), cwd=self.tmp,
                   timeout=timeout)

    def status(self):
        """droverctl --json status as a dict, or None when droverctl cannot say."""
        if not DROVERCTL.exists():
            return None
        try:
            r = self.ctl("--json", "status", timeout=5.0)
        except AssertionError:
            return None
        if r.returncode != 0:
            return None
        try:
            return json.loads(r.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            return None

    # -- stopping ------------------------------------------------------------------------

    def signal(self, sig):
        self.workers()
        os.kill(self.proc.pid, sig)

    def wait_exit(self, timeout=10.0):
        """Waits for drover to exit; returns its exit status (fails on timeout)."""
        try:
            return self.proc.wait(timeout=scaled(timeout))
        except subprocess.TimeoutExpired:
            raise AssertionError(f"drover did not exit within {scaled(timeout):.1f}s:\n"
                                 f"{self.output()}") from None

    def sanitizer_report(self):
        """An ASan/LSan/UBSan report from drover or a worker (their stderr lines are log
        records), or None."""
        err = self.err_path.read_text(errors="replace") if self.err_path.exists() else ""
        return sanitizer_report(err) or sanitizer_report(self.stdout_text())

    def known_workers(self):
        """Every worker process seen during the test, as Identity objects."""
        return list(self._known.values())

    def stop(self):
        """Teardown: SIGTERM, then SIGKILL drover; then SIGKILL the group of any worker left."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            for d in descendants_of(self.proc.pid):
                if d not in self._known or not self._known[d].alive():
                    self._known[d] = Identity(d)
            try:
                os.kill(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=scaled(5))
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait()
            except ProcessLookupError:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # drover's own session: ours alone
        except (ProcessLookupError, PermissionError):
            pass
        for ident in self._known.values():
            ident.kill_group()
        for f in (getattr(self, "out", None), getattr(self, "err", None)):
            if f:
                f.close()


def unix_path_ok(path):
    return len(str(path).encode()) < 100


def errno_text(code):
    return os.strerror(code)


EADDRINUSE_TEXT = errno_text(errno.EADDRINUSE)
