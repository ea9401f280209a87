"""Shared pieces of drover's benchmarks (scripts/bench/*): processes, drover, PM2, wrk, tables.

Every benchmark script imports this module (it sits next to them). What it gives:
  - the lock that keeps one benchmark at a time on a machine (/tmp/drover-bench.lock, also
    taken by scripts/bench/datapath), skipped when scripts/bench/suite already holds it;
  - drover started from an INI config in a temp dir, its JSON log records, droverctl;
  - PM2 installed from the npm registry into a temp folder, run with its own PM2_HOME there, so
    the machine's own PM2 (if any) is never touched, and killed with `pm2 kill` at the end;
  - wrk runs parsed into numbers, HTTP probes, /proc readings;
  - a figure's result: summary rows for the combined table plus a markdown detail section,
    written as JSON for scripts/bench/suite to assemble.

Only processes these helpers start are ever signalled: drover runs in its own session (its
group is ours alone), workers are remembered as (pid, start time) so a recycled pid is never hit.
"""

import atexit
import fcntl
import http.client
import json
import os
import platform
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("DROVER_BUILD_DIR") or ROOT / "build").resolve()
DROVER = BUILD / "supervisor" / "drover"
DROVERCTL = BUILD / "supervisor" / "droverctl"
HELLO = BUILD / "worker-sdk" / "examples" / "hello-http"
NODE_APP = ROOT / "bench" / "node" / "hello.js"
PYTHON = "/usr/bin/python3"
LOCK = "/tmp/drover-bench.lock"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


def log(*args):
    print(*args, flush=True)


# ---------------------------------------------------------------------------------------------
# One benchmark at a time


def take_lock(name):
    """Takes the machine-wide benchmark lock (waiting for it), unless scripts/bench/suite holds
    it for us (DROVER_BENCH_LOCK_HELD=1). The file stays open, so the lock lasts our life."""
    if os.environ.get("DROVER_BENCH_LOCK_HELD") == "1":
        return None
    f = open(LOCK, "w")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        log(f"{name}: another benchmark holds {LOCK}; waiting")
        fcntl.flock(f, fcntl.LOCK_EX)
    return f


def machine_line():
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{os.cpu_count()} CPUs ({model}), Linux {platform.release()}"


# ---------------------------------------------------------------------------------------------
# Numbers


def median(values):
    return statistics.median(values) if values else float("nan")


def percentile(values, p):
    """Nearest-rank percentile (p in 0..100) of a non-empty list."""
    if not values:
        return float("nan")
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(round(p / 100.0 * len(s) + 0.5)) - 1))
    return s[k]


def fmt_num(v, digits=0):
    if v != v:  # nan
        return "–"
    return f"{v:,.{digits}f}"


def fmt_range(values, digits=0, unit=""):
    """'median (min–max)' of a list."""
    if not values:
        return "–"
    return (f"{fmt_num(median(values), digits)}{unit} "
            f"({fmt_num(min(values), digits)}–{fmt_num(max(values), digits)})")


def fmt_ms(seconds_values, digits=1):
    """p50 / p99 of durations given in seconds, printed in ms."""
    ms = [s * 1000 for s in seconds_values]
    return f"{fmt_num(percentile(ms, 50), digits)} / {fmt_num(percentile(ms, 99), digits)} ms"


def ratio(a, b, digits=2):
    if not b or a != a or b != b:
        return "–"
    return f"{a / b:.{digits}f}×"


def md_table(head, rows):
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


class Figure:
    """The result of one benchmark script: summary rows (for the combined table) and a markdown
    detail section. Rows: (measure, drover, other, comparison). Written as JSON to --out."""

    def __init__(self, number, title, command):
        self.number = number
        self.title = title
        self.command = command
        self.rows = []
        self.detail = []
        self.notes = []

    def row(self, measure, drover, other, comparison):
        self.rows.append([measure, drover, other, comparison])
        log(f"  => {measure}: drover {drover} | other {other} | {comparison}")

    def write(self, out):
        data = {"number": self.number, "title": self.title, "command": self.command,
                "rows": self.rows, "detail": "\n".join(self.detail), "notes": self.notes}
        if out:
            Path(out).write_text(json.dumps(data, indent=1))
        else:
            print(json.dumps(data, indent=1))


def script_command(argv=None):
    """The command line that ran this script, relative to the repository root."""
    argv = sys.argv if argv is None else argv
    path = Path(argv[0]).resolve()
    try:
        path = path.relative_to(ROOT)
    except ValueError:
        pass
    args = [a for a in argv[1:]]
    # --out is plumbing, not part of what was measured
    cleaned, skip = [], False
    for a in args:
        if skip:
            skip = False
            continue
        if a == "--out":
            skip = True
            continue
        if a.startswith("--out="):
            continue
        cleaned.append(a)
    return " ".join([str(path)] + [shlex.quote(a) for a in cleaned])


# ---------------------------------------------------------------------------------------------
# Ports, HTTP


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(port, path="/", timeout=2.0, host="127.0.0.1"):
    """One GET on a fresh connection (Connection: close). Returns (status, body)."""
    c = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        c.request("GET", path, headers={"Connection": "close"})
        r = c.getresponse()
        return r.status, r.read().decode("utf-8", "replace")
    finally:
        c.close()


PID_RE = re.compile(r"pid (\d+)")


def http_pid(port, timeout=2.0):
    """The pid that answered GET / ("... pid N ..."), or None on any failure."""
    try:
        status, body = http_get(port, "/", timeout)
    except (OSError, http.client.HTTPException):
        return None
    m = PID_RE.search(body)
    return int(m.group(1)) if status == 200 and m else None


def wait_http(port, alive=lambda: True, timeout=30.0, what="server"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive():
            raise RuntimeError(f"{what} exited before 127.0.0.1:{port} answered")
        if http_pid(port, 1.0) is not None:
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what}: nothing answered on 127.0.0.1:{port} within {timeout}s")


def wait_until(cond, timeout, interval=0.02, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


# ---------------------------------------------------------------------------------------------
# /proc


def proc_stat(pid):
    """(state, ppid, pgid, utime+stime ticks, starttime, rss pages) or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except OSError:
        return None
    rest = data[data.rindex(")") + 2:].split()
    return (rest[0], int(rest[1]), int(rest[2]), int(rest[11]) + int(rest[12]), int(rest[19]),
            int(rest[21]))


def alive(pid):
    st = proc_stat(pid)
    return st is not None and st[0] not in ("Z", "X")


def rss_kb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def cpu_seconds(pid):
    st = proc_stat(pid)
    return st[3] / CLK_TCK if st else None


def cpu_ns(pid):
    """CPU time the process has used, in ns, from /proc/PID/schedstat: the tick counts in
    /proc/PID/stat are 10 ms coarse, too coarse for an idle process or one short request."""
    try:
        with open(f"/proc/{pid}/schedstat") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def process_table():
    table = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = proc_stat(int(name))
            if st:
                table[int(name)] = st
    return table


def children_of(ppid, table=None):
    table = table or process_table()
    return sorted(p for p, st in table.items() if st[1] == ppid and st[0] not in ("Z", "X"))


def descendants_of(pid):
    table = process_table()
    out, frontier = [], [pid]
    while frontier:
        p = frontier.pop()
        for child in children_of(p, table):
            out.append(child)
            frontier.append(child)
    return out


class Identity:
    """A process remembered by pid and start time, so a recycled pid is never signalled."""

    def __init__(self, pid):
        st = proc_stat(pid)
        self.pid = pid
        self.start = st[4] if st else None

    def alive(self):
        st = proc_stat(self.pid)
        return st is not None and st[4] == self.start and st[0] not in ("Z", "X")

    def kill(self, sig=signal.SIGKILL, group=True):
        if not self.alive():
            return
        try:
            st = proc_stat(self.pid)
            if group and st and st[2] == self.pid:
                os.killpg(self.pid, sig)
            else:
                os.kill(self.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def clean_env(extra=None):
    env = dict(os.environ)
    for k in ("NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "WATCHDOG_USEC",
              "WATCHDOG_PID", "ASAN_OPTIONS", "DROVER_CHANNEL_FD", "PM2_HOME"):
        env.pop(k, None)
    env.update(extra or {})
    return env


# ---------------------------------------------------------------------------------------------
# drover


def ini_text(supervisor, apps):
    lines = ["; written by scripts/bench"]
    # "hook:NAME" is a section of its own; an app name has no ':'.
    sections = [(k if ":" in k else f"app:{k}", v) for k, v in apps.items()]
    for name, items in [("supervisor", supervisor)] + sections:
        lines.append(f"[{name}]")
        for k, v in items.items():
            for item in (v if isinstance(v, (list, tuple)) else [v]):
                lines.append(f"{k} = {item}")
        lines.append("")
    return "\n".join(lines)


def node_command():
    return f"{shutil.which('node') or 'node'} {NODE_APP}"


def node_version():
    try:
        return subprocess.run(["node", "--version"], capture_output=True, text=True,
                              timeout=30).stdout.strip()
    except OSError:
        return "?"


def hello_command():
    return f"{HELLO} --greeting hi"


class Drover:
    """One drover from a config file in its own directory under tmp; JSON logs to a file."""

    _serial = 0

    def __init__(self, tmp, apps, supervisor=None, name="drover"):
        Drover._serial += 1
        self.dir = Path(tmp) / f"{name}-{Drover._serial}"
        self.dir.mkdir(parents=True)
        self.sock = str(self.dir / "ctl.sock")
        self.admin_port = None
        sup = {
            "control_socket": self.sock,
            "admin_listen": "off",
            "log_format": "json",
            "state_dir": str(self.dir / "state"),
        }
        sup.update(supervisor or {})
        if sup["admin_listen"] == "auto":
            self.admin_port = free_port()
            sup["admin_listen"] = f"127.0.0.1:{self.admin_port}"
        self.ports = {}
        for app in apps.values():
            if app.get("listen") == "auto":
                port = free_port()
                app["listen"] = f"127.0.0.1:{port}"
        self.ports = {k: int(v["listen"].rsplit(":", 1)[1]) for k, v in apps.items()
                      if "listen" in v and ":" not in k}
        self.config = self.dir / "drover.ini"
        self.config.write_text(ini_text(sup, apps))
        self.out_path = self.dir / "drover.out"
        self._out = open(self.out_path, "wb")
        self.known = {}
        self._offset = 0
        self._partial = b""
        self._records = []
        self.proc = subprocess.Popen([str(DROVER), "-c", str(self.config)], cwd=self.dir,
                                     env=clean_env(), stdin=subprocess.DEVNULL, stdout=self._out,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        _live.append(self)

    @property
    def pid(self):
        return self.proc.pid

    def port(self, app=None):
        return self.ports[app] if app else next(iter(self.ports.values()))

    def workers(self):
        kids = children_of(self.proc.pid)
        for k in kids:
            if k not in self.known or not self.known[k].alive():
                self.known[k] = Identity(k)
        return kids

    def wait_ready(self, n, timeout=60.0, interval=0.05):
        """Waits until n workers are ready (their 'ready' records), and every app answers.
        Each check lists /proc: with hundreds of workers, a longer interval keeps that cheap."""
        def ok():
            if self.proc.poll() is not None:
                raise RuntimeError(f"drover exited with {self.proc.returncode}:\n"
                                   f"{self.tail()}")
            live = self.workers()
            readies = {r.get("pid") for r in self.records() if r.get("state") == "ready"}
            return len(live) >= n and len(readies & set(live)) >= n
        try:
            wait_until(ok, timeout, interval, f"{n} ready workers")
        except RuntimeError as e:
            raise RuntimeError(f"{e}\n{self.tail()}") from None
        for port in self.ports.values():
            wait_http(port, lambda: self.proc.poll() is None, timeout, "drover")
        return self

    def records(self):
        try:
            with open(self.out_path, "rb") as f:
                f.seek(self._offset)
                data = f.read()
        except FileNotFoundError:
            return list(self._records)
        self._offset += len(data)
        data = self._partial + data
        *lines, self._partial = data.split(b"\n")
        for line in lines:
            line = line.strip()
            if line.startswith(b"{"):
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                if isinstance(rec, dict):
                    rec["_seen"] = time.monotonic()
                    self._records.append(rec)
        return list(self._records)

    def tail(self, n=30):
        try:
            lines = self.out_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])

    def ctl(self, *args, timeout=120.0):
        return subprocess.run([str(DROVERCTL), "-s", self.sock] + [str(a) for a in args],
                              capture_output=True, text=True, timeout=timeout, env=clean_env())

    def stop(self, timeout=60.0):
        """SIGTERM and wait (six phases); then make sure nothing of ours is left."""
        if self.proc.poll() is None:
            for d in descendants_of(self.proc.pid):
                if d not in self.known or not self.known[d].alive():
                    self.known[d] = Identity(d)
            try:
                os.kill(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
            except ProcessLookupError:
                pass
        self.kill()

    def kill(self):
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)  # its own session: ours alone
            except (ProcessLookupError, PermissionError):
                pass
            self.proc.wait()
        for ident in self.known.values():
            ident.kill()
        if not self._out.closed:
            self._out.close()
        if self in _live:
            _live.remove(self)


# ---------------------------------------------------------------------------------------------
# PM2 (installed from the npm registry into a temp folder; its own PM2_HOME)


def pm2_install(prefix):
    """`npm install --prefix PREFIX pm2`, with npm's cache inside PREFIX too. Returns the pm2
    script path and its version."""
    prefix = Path(prefix)
    prefix.mkdir(parents=True, exist_ok=True)
    env = clean_env({"npm_config_cache": str(prefix / "npm-cache"),
                     "npm_config_update_notifier": "false", "npm_config_fund": "false",
                     "npm_config_audit": "false"})
    r = subprocess.run(["npm", "install", "--no-save", "--prefix", str(prefix), "pm2"],
                       capture_output=True, text=True, env=env, timeout=600)
    pm2 = prefix / "node_modules" / "pm2" / "bin" / "pm2"
    if r.returncode != 0 or not pm2.exists():
        raise RuntimeError(f"npm install pm2 failed:\n{r.stdout}\n{r.stderr}")
    version = json.loads((prefix / "node_modules" / "pm2" / "package.json").read_text())["version"]
    return pm2, version


def pm2_bin(tmp):
    """pm2 from $DROVER_BENCH_PM2 (scripts/bench/suite installs it once), else installed now."""
    given = os.environ.get("DROVER_BENCH_PM2")
    if given:
        p = Path(given)
        version = json.loads((p.parent.parent / "package.json").read_text())["version"]
        return p, version
    log("installing pm2 from the npm registry into a temp folder ...")
    return pm2_install(Path(tmp) / "pm2")


class PM2:
    """One PM2 daemon (God) with PM2_HOME in its own directory under tmp."""

    _serial = 0

    def __init__(self, tmp, pm2, env=None, name="pm2"):
        PM2._serial += 1
        self.pm2 = str(pm2)
        self.home = Path(tmp) / f"{name}-home-{PM2._serial}"
        self.home.mkdir(parents=True)
        self.dir = self.home
        self.env = clean_env({"PM2_HOME": str(self.home), "PM2_DISCRETE_MODE": "true",
                               "PM2_DISABLE_VERSION_CHECK": "true"})
        self.env.update(env or {})
        self.known = {}
        self.god = None
        _live.append(self)

    def run(self, *args, timeout=120.0, check=True):
        r = subprocess.run([self.pm2] + [str(a) for a in args], capture_output=True, text=True,
                           env=self.env, timeout=timeout, cwd=self.home,
                           stdin=subprocess.DEVNULL)
        if check and r.returncode != 0:
            raise RuntimeError(f"pm2 {' '.join(map(str, args))} failed ({r.returncode}):\n"
                               f"{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
        self._remember_god()
        return r

    def _remember_god(self):
        if self.god is None:
            try:
                pid = int((self.home / "pm2.pid").read_text().strip())
            except (OSError, ValueError):
                return
            self.god = Identity(pid)

    def start_app(self, name, instances, port, extra=None):
        """Cluster mode: `pm2 start eco.json` with the Node app on 127.0.0.1:port."""
        app = {"name": name, "script": str(NODE_APP), "instances": instances,
               "exec_mode": "cluster", "env": {"PORT": str(port), "HOST": "127.0.0.1"},
               "autorestart": True}
        app.update(extra or {})
        eco = self.home / f"{name}.json"
        eco.write_text(json.dumps({"apps": [app]}))
        self.run("start", eco)
        self.port = port
        self.workers()
        return self

    def wait_ready(self, n, port, timeout=60.0):
        """Waits until jlist shows n processes online and the port answers."""
        def ok():
            procs = self.jlist()
            return sum(1 for p in procs if p.get("pm2_env", {}).get("status") == "online") >= n
        wait_until(ok, timeout, 0.2, f"{n} PM2 processes online")
        wait_http(port, timeout=timeout, what="pm2")
        self.workers()
        return self

    def jlist(self):
        r = self.run("jlist", check=False)
        try:
            return json.loads(r.stdout[r.stdout.index("["):])
        except ValueError:
            return []

    def workers(self):
        """The God daemon's live children (the app's processes), remembered for teardown."""
        self._remember_god()
        if not self.god:
            return []
        kids = children_of(self.god.pid)
        for k in kids:
            if k not in self.known or not self.known[k].alive():
                self.known[k] = Identity(k)
        return kids

    def kill(self):
        """`pm2 kill` for our PM2_HOME, then SIGKILL whatever of ours is left."""
        if self.god and self.god.alive():
            self.workers()
            try:
                subprocess.run([self.pm2, "kill"], capture_output=True, env=self.env,
                               timeout=60, cwd=self.home, stdin=subprocess.DEVNULL)
            except subprocess.TimeoutExpired:
                pass
        if self.god:
            self.god.kill(group=False)
        for ident in self.known.values():
            ident.kill(group=False)
        if self in _live:
            _live.remove(self)

    stop = kill


_live = []


def cleanup_all():
    """Stops every drover, PM2 and wrk still running (on any exit path, including errors)."""
    for proc in list(_wrk_live):
        if proc.poll() is None:
            proc.kill()  # by pid: a Popen of ours, not yet reaped, so the pid is still its own
            proc.wait()
    for thing in list(reversed(_live)):
        try:
            thing.kill()
        except Exception as e:  # noqa: BLE001 - best effort at exit
            log(f"cleanup: {e}")


atexit.register(cleanup_all)


def _on_term(signum, frame):
    raise SystemExit(128 + signum)


signal.signal(signal.SIGTERM, _on_term)


# ---------------------------------------------------------------------------------------------
# wrk


_wrk_live = set()  # wrk runs under way (a load thread may still be in one at exit)

WRK_RPS = re.compile(r"Requests/sec:\s+([\d.]+)")
WRK_REQS = re.compile(r"(\d+) requests in ([\d.]+)(\w+)")
WRK_SOCK = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
WRK_NON2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")
WRK_P99 = re.compile(r"^\s+99(?:\.000)?%\s+([\d.]+)(us|ms|s)\b", re.M)


def wrk(port, duration, threads=2, connections=64, close=False, path="/", timeout_s=None):
    """One wrk run against 127.0.0.1:port. Returns a dict: rps, requests, errors (socket errors
    + non-2xx), kinds (each of those by kind: connect, read, write, timeout, non2xx), p99_ms,
    cmd."""
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--latency"]
    if timeout_s:
        cmd += ["--timeout", f"{timeout_s}s"]
    if close:
        cmd += ["-H", "Connection: close"]
    cmd.append(f"http://127.0.0.1:{port}{path}")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL)
    _wrk_live.add(proc)
    try:
        out, err = proc.communicate(timeout=duration + 60)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    finally:
        _wrk_live.discard(proc)
    r = subprocess.CompletedProcess(cmd, proc.returncode, out, err)
    m = WRK_RPS.search(r.stdout)
    if r.returncode != 0 or not m:
        raise RuntimeError(f"wrk failed: {r.stdout}\n{r.stderr}")
    kinds = {"connect": 0, "read": 0, "write": 0, "timeout": 0, "non2xx": 0}
    e = WRK_SOCK.search(r.stdout)
    if e:
        kinds.update(zip(("connect", "read", "write", "timeout"), (int(x) for x in e.groups())))
    n = WRK_NON2XX.search(r.stdout)
    if n:
        kinds["non2xx"] = int(n.group(1))
    errors = sum(kinds.values())
    p99 = WRK_P99.search(r.stdout)
    p99_ms = float("nan")
    if p99:
        p99_ms = float(p99.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99.group(2)]
    q = WRK_REQS.search(r.stdout)
    return {"rps": float(m.group(1)), "requests": int(q.group(1)) if q else 0, "errors": errors,
            "kinds": kinds, "p99_ms": p99_ms, "cmd": " ".join(shlex.quote(c) for c in cmd)}


def wrk_template(duration, threads=2, connections=64, close=False, path="/"):
    parts = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--latency"]
    if close:
        parts += ["-H", "'Connection: close'"]
    parts.append(f"http://127.0.0.1:PORT{path}")
    return " ".join(parts)


# ---------------------------------------------------------------------------------------------
# Script scaffolding


def figure_main(number, title, run, add_args=None, doc=None):
    """Parses the common arguments, checks the binaries, takes the lock, makes a temp dir,
    calls run(args, tmp, fig), writes the figure, cleans up."""
    import argparse
    ap = argparse.ArgumentParser(description=doc or title)
    ap.add_argument("--out", help="write the figure as JSON here (default: print it)")
    ap.add_argument("--keep-tmp", action="store_true", help="keep the temp dir (logs)")
    if add_args:
        add_args(ap)
    args = ap.parse_args()
    for exe in (DROVER, DROVERCTL, HELLO):
        if not exe.exists():
            sys.exit(f"{exe} is missing; build first (scripts/bench/run builds)")
    for tool in ("wrk", "node", "npm"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is missing")
    lock = take_lock(Path(sys.argv[0]).name)
    fig = Figure(number, title, script_command())
    tmp = Path(tempfile.mkdtemp(prefix=f"drover-bench-{number}-"))
    t0 = time.monotonic()
    try:
        run(args, tmp, fig)
    finally:
        cleanup_all()
        if args.keep_tmp:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    fig.notes.append(f"took {time.monotonic() - t0:.0f} s")
    fig.write(args.out)
    if args.out:
        log(f"wrote {args.out}")
    del lock
