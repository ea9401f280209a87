"""drover_worker: the Python worker SDK of the drover process supervisor (SPEC sections 4, 5, 14).

Standard library only. A program run by drover learns everything from its environment (the
listening sockets from fd 3, its identity, its saved-state file, and DROVER_CHANNEL_FD: a
channel of newline-delimited JSON to the master). This module reads it on first use and speaks
the channel from a background thread, so it works the same for threaded servers and asyncio
apps: phase handlers may be plain functions (run in a thread) or coroutine functions (run on
the asyncio loop given to use_asyncio(), or the running loop they were registered from).
Outside drover the same program binds its own port and every call is a harmless no-op.

    import drover_worker as drover
    drover.use_registry(prometheus_client.REGISTRY)
    drover.on_phase("save", lambda ctx: drover.save_state({"hits": hits}))
    sock = drover.listen_socket()          # fd 3 under drover, else ("127.0.0.1", $PORT)
    ...
    drover.ready()
"""

import asyncio
import inspect
import json
import math
import os
import re
import socket
import sys
import threading

__all__ = ["Worker", "PHASES", "worker", "ready", "status", "heartbeat", "recycle", "on_phase",
           "save_state", "load_state", "use_registry", "send_metrics", "listen_socket",
           "listen_fds", "use_asyncio", "from_prometheus", "stopping", "supervised"]

PHASES = ("initiated", "drain", "save", "close", "cleanup", "complete")
LINE_MAX = 1024 * 1024  # the longest line the channel carries (SPEC section 4)
STATUS_MAX = 4096
MAX_FAMILIES = 1000  # the master's per-worker limits (supervisor/snapshot.h)
MAX_SERIES = 10000
MAX_BUCKETS = 100
MAX_LABELS = 32
NAME_RE = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
LABEL_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


def _warn(text):
    try:
        sys.stderr.write(f"drover_worker: {text}\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


def _int_env(env, key, default):
    try:
        return int(env.get(key, ""))
    except ValueError:
        return default


# ---- prometheus_client's registry as drover families -------------------------------------

class _Refused(Exception):
    pass


def _labels(labels, reserved):
    if len(labels) > MAX_LABELS:
        raise _Refused(f"more than {MAX_LABELS} labels on a sample")
    out = {}
    for k, v in labels.items():
        if not LABEL_RE.match(k) or k.startswith("__"):
            raise _Refused(f"invalid label name '{k}'")
        if k in reserved:
            raise _Refused(f"label '{k}' is drover's own")
        out[k] = str(v)
    return out


def _finite(v):
    return isinstance(v, (int, float)) and math.isfinite(v)


def _convert(m):
    """One prometheus_client Metric (from registry.collect()) as a list of drover families."""
    typ = m.type
    samples = [s for s in m.samples if not s.name.endswith("_created")]
    if typ in ("counter", "gauge", "info", "stateset", "unknown"):
        name = m.name + "_total" if typ == "counter" else m.name + "_info" if typ == "info" \
            else m.name
        out = []
        for s in samples:
            if not _finite(s.value):
                continue
            if typ == "counter" and s.value < 0:
                raise _Refused("a counter is negative")
            out.append({"labels": _labels(s.labels, ("app", "worker")), "value": s.value})
        if typ == "counter":
            return [{"name": name, "type": "counter", "help": m.documentation, "samples": out}]
        # client_python has no cluster aggregation of its own: sum, as drover's default; an
        # info or stateset is the same in every worker, so max.
        agg = "max" if typ in ("info", "stateset") else "sum"
        return [{"name": name, "type": "gauge", "help": m.documentation, "agg": agg,
                 "samples": out}]
    if typ == "histogram":
        series = {}
        for s in samples:
            rest = {k: v for k, v in s.labels.items() if k != "le"}
            key = tuple(sorted(rest.items()))
            e = series.setdefault(key, {"labels": _labels(rest, ("app", "worker", "le")),
                                        "le": [], "sum": 0.0, "count": None})
            if s.name == m.name + "_bucket":
                e["le"].append((float(s.labels["le"]), s.value))
            elif s.name == m.name + "_sum":
                e["sum"] = s.value
            elif s.name == m.name + "_count":
                e["count"] = s.value
        if not series:
            return []  # no series yet: its buckets are unknown
        buckets, out = None, []
        for e in series.values():
            e["le"].sort()
            bounds = [b for b, _ in e["le"] if b != math.inf]
            if len(bounds) > MAX_BUCKETS:
                raise _Refused(f"more than {MAX_BUCKETS} buckets")
            if buckets is None:
                buckets = bounds
            elif buckets != bounds:
                raise _Refused("series with different buckets")
            counts = [c for b, c in e["le"] if b != math.inf]
            inf = [c for b, c in e["le"] if b == math.inf]
            counts.append(inf[0] if inf else e["count"] if e["count"] is not None else
                          (counts[-1] if counts else 0))
            if any(not _finite(c) or c < 0 for c in counts) or \
                    any(b < a for a, b in zip(counts, counts[1:])):
                raise _Refused("bucket counts are negative or not cumulative")
            out.append({"labels": e["labels"], "counts": counts, "sum": e["sum"],
                        "count": counts[-1]})
        return [{"name": m.name, "type": "histogram", "help": m.documentation,
                 "buckets": buckets, "samples": out}]
    if typ == "summary":
        # Quantiles cannot be merged over workers; _sum and _count can: two counters.
        fams = []
        for suffix in ("_sum", "_count"):
            out = [{"labels": _labels(s.labels, ("app", "worker", "quantile")), "value": s.value}
                   for s in samples if s.name == m.name + suffix and _finite(s.value)
                   and s.value >= 0]
            fams.append({"name": m.name + suffix, "type": "counter", "help": m.documentation,
                         "samples": out})
        return fams
    raise _Refused(f"type '{typ}' is not counter, gauge, histogram or summary")


def from_prometheus(metrics, max_series=MAX_SERIES):
    """prometheus_client Metric objects (registry.collect()) as (families, refused): a family
    drover would refuse is left out (the master refuses a whole snapshot over one bad family),
    with its reason in refused as (name, why)."""
    families, refused, series = [], [], 0
    for m in metrics:
        name = getattr(m, "name", "?")
        try:
            out = _convert(m)
            for f in out:
                if not NAME_RE.match(f["name"]):
                    raise _Refused("not a valid metric name")
                if f["name"].startswith("drover_"):
                    raise _Refused("names starting with drover_ are drover's own")
            n = sum(len(f["samples"]) for f in out)
            if series + n > max_series:
                raise _Refused(f"over the {max_series} series a worker may send")
            if len(families) + len(out) > MAX_FAMILIES:
                raise _Refused(f"over {MAX_FAMILIES} families")
            series += n
            families.extend(out)
        except _Refused as e:
            refused.append((name, str(e)))
    return families, refused


# ---- the worker ----------------------------------------------------------------------------

class Worker:
    """The channel to drover. env: default os.environ (the consumed variables are removed from
    it); channel: a connected socket to use instead of DROVER_CHANNEL_FD (for tests)."""

    def __init__(self, env=None, channel=None, state_file=None, metrics_interval=1.0):
        env = os.environ if env is None else env
        self.app = env.get("DROVER_APP")
        self.worker_id = _int_env(env, "DROVER_WORKER_ID", -1)
        self.generation = _int_env(env, "DROVER_GENERATION", -1)
        self.state_file = state_file or env.get("DROVER_STATE_FILE")
        self.metrics_interval = metrics_interval
        self.phase = None
        self.stopping = False
        self.on_disconnect = None
        self.listen_fds, self.listen_names = [], []
        self._handlers = {}
        self._registries = []
        self._reported = set()
        self._lock = threading.Lock()
        self._collect_lock = threading.Lock()  # guards the two below
        self._collecting = False
        self._collect_again = False
        self._loop = None
        self._sock = None
        self._notify = env.get("NOTIFY_SOCKET")

        n = _int_env(env, "LISTEN_FDS", 0)
        if n > 0 and _int_env(env, "LISTEN_PID", -1) == os.getpid():
            names = env.get("LISTEN_FDNAMES", "").split(":")
            for i in range(n):
                self.listen_fds.append(3 + i)
                self.listen_names.append(names[i] if i < len(names) and names[i] else "unknown")
                os.set_inheritable(3 + i, False)
            for k in ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"):
                env.pop(k, None)

        if channel is not None:
            self._sock = channel
        elif "DROVER_CHANNEL_FD" in env:
            raw = env.pop("DROVER_CHANNEL_FD")
            try:
                self._sock = socket.socket(fileno=int(raw))
                self._sock.set_inheritable(False)
            except (ValueError, OSError) as e:
                _warn(f"DROVER_CHANNEL_FD={raw}: {e}; running without a channel")
        if self._sock is not None:
            self._sock.setblocking(True)
            self._notify = None
            threading.Thread(target=self._reader, name="drover-channel", daemon=True).start()
        self.supervised = bool(self.app or self._sock)

        usec = _int_env(env, "WATCHDOG_USEC", 0)
        wpid = _int_env(env, "WATCHDOG_PID", os.getpid())
        self.watchdog = usec / 1e6 if usec > 0 and wpid == os.getpid() else 0.0
        self._heartbeat_thread = None
        if self.watchdog and (self._sock or self._notify):
            self._heartbeat_thread = threading.Thread(target=self._heartbeats, daemon=True,
                                                      name="drover-heartbeat")
            self._heartbeat_thread.start()

    # -- the channel --

    @property
    def connected(self):
        return self._sock is not None

    def _reader(self):
        buf = b""
        sock = self._sock
        while True:
            try:
                data = sock.recv(65536)
            except OSError:
                data = b""
            if not data:
                self._detach("closed")
                return
            buf += data
            while True:
                nl = buf.find(b"\n")
                if nl < 0:
                    break
                line, buf = buf[:nl], buf[nl + 1:]
                self._on_line(line)
            if len(buf) > LINE_MAX:
                _warn("channel: a line over 1 MiB from the master; closing the channel")
                self._detach("protocol")
                return

    def _detach(self, why):
        sock, self._sock = self._sock, None
        if sock is None:
            return
        try:
            sock.close()
        except OSError:
            pass
        if self.on_disconnect:
            try:
                self.on_disconnect(why)
            except Exception as e:  # noqa: BLE001 - a callback's bug must not kill the reader
                _warn(f"on_disconnect: {e!r}")

    def _on_line(self, line):
        try:
            msg = json.loads(line)
        except ValueError:
            self._report_once("garbage", "channel: a line that is not JSON skipped "
                              "(reported once)")
            return
        if not isinstance(msg, dict):
            return
        # Lines the SDK does not understand are skipped, so a newer master can add messages.
        if msg.get("type") == "phase" and msg.get("phase") in PHASES:
            t = msg.get("timeout_ms")
            self._on_phase(msg["phase"], t if isinstance(t, (int, float)) else -1)
        elif msg.get("type") == "collect":
            threading.Thread(target=self.send_metrics, daemon=True).start()

    def _send(self, obj):
        line = (json.dumps(obj, separators=(",", ":")) + "\n").encode()
        if len(line) > LINE_MAX:
            self._report_once(f"big:{obj['type']}", f"a '{obj['type']}' message over 1 MiB "
                              "not sent")
            return False
        with self._lock:
            sock = self._sock
            if sock is None:
                return False
            try:
                sock.sendall(line)
                return True
            except OSError:
                pass
        self._detach("error")
        return False

    def _sd_notify(self, text):
        if not self._notify:
            return False
        addr = self._notify
        if addr.startswith("@"):
            addr = "\0" + addr[1:]
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
                s.sendto(text.encode(), addr)
            return True
        except OSError:
            return False

    def _report_once(self, key, text):
        if key not in self._reported:
            self._reported.add(key)
            _warn(text)

    # -- readiness, status, liveness, recycling --

    def ready(self):
        return self._send({"type": "ready"}) if self._sock else self._sd_notify("READY=1")

    def status(self, text):
        text = str(text).replace("\n", " ")[:STATUS_MAX]
        return self._send({"type": "status", "text": text}) if self._sock \
            else self._sd_notify(f"STATUS={text}")

    def heartbeat(self):
        return self._send({"type": "heartbeat"}) if self._sock else self._sd_notify("WATCHDOG=1")

    def recycle(self, reason="requested"):
        return self._send({"type": "recycle", "reason": str(reason)[:STATUS_MAX]})

    def _heartbeats(self):
        # In a thread by default; use_asyncio() moves them onto the loop, where a blocked loop
        # stops them (which is what the watchdog is for).
        ev = threading.Event()
        while not ev.wait(self.watchdog / 2):
            if self._loop is not None:
                return
            if not self.heartbeat() and not self._sock and not self._notify:
                return

    def use_asyncio(self, loop=None):
        """Runs coroutine phase handlers, and the heartbeats, on loop (default: the running
        one)."""
        self._loop = loop or asyncio.get_running_loop()
        if self.watchdog:
            def beat():
                self.heartbeat()
                if self._sock or self._notify:
                    self._loop.call_later(self.watchdog / 2, beat)
            self._loop.call_soon_threadsafe(beat)
        return self

    # -- listening --

    def listen_socket(self, index=0, host="127.0.0.1", port=None):
        """The index-th inherited listening socket, or outside drover one bound to
        (host, port or $PORT or 8000)."""
        if index < len(self.listen_fds):
            return socket.socket(fileno=self.listen_fds[index])
        port = port if port is not None else int(os.environ.get("PORT") or 8000)
        s = socket.create_server((host, port), reuse_port=False)
        return s

    # -- phases --

    def on_phase(self, phase, fn):
        """fn(ctx) runs when the master enters phase (ctx: dict with phase, timeout_ms);
        phase_done is sent when it returns (a coroutine function: when it completes). Without
        a handler a phase is acknowledged at once."""
        if phase not in PHASES:
            raise ValueError(f"unknown phase '{phase}'")
        if inspect.iscoroutinefunction(fn) and self._loop is None:
            try:
                self._loop = asyncio.get_running_loop()
            except RuntimeError:
                pass
        self._handlers.setdefault(phase, []).append(fn)
        return fn

    def _on_phase(self, phase, timeout_ms):
        self.stopping = True
        self.phase = phase
        threading.Thread(target=self._run_phase, args=(phase, timeout_ms), daemon=True).start()

    def _run_phase(self, phase, timeout_ms):
        ctx = {"phase": phase, "timeout_ms": timeout_ms}
        for fn in self._handlers.get(phase, []):
            try:
                if inspect.iscoroutinefunction(fn):
                    if self._loop is None:
                        asyncio.run(fn(ctx))
                    else:
                        asyncio.run_coroutine_threadsafe(fn(ctx), self._loop).result()
                else:
                    fn(ctx)
            except Exception as e:  # noqa: BLE001 - a handler's failure still ends the phase
                _warn(f"phase {phase}: {e!r}")
        if phase == "cleanup":
            self.send_metrics()  # the final counts: the master keeps them in its sums
        self._send({"type": "phase_done", "phase": phase})

    # -- saved state --

    def save_state(self, value):
        """Writes value (JSON; str or bytes as is) atomically: temp file, fsync, rename."""
        if not self.state_file:
            return False
        data = value if isinstance(value, bytes) else value.encode() if isinstance(value, str) \
            else json.dumps(value).encode()
        tmp = f"{self.state_file}.tmp.{os.getpid()}"
        self._sweep_temporaries()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.rename(tmp, self.state_file)
        except OSError:
            os.unlink(tmp)
            raise
        return True

    def _sweep_temporaries(self):
        """Temporaries of this state file left by workers killed while saving."""
        d = os.path.dirname(self.state_file) or "."
        prefix = os.path.basename(self.state_file) + ".tmp."
        try:
            names = os.listdir(d)
        except OSError:
            return
        for name in names:
            rest = name[len(prefix):]
            if not name.startswith(prefix) or not rest.isdigit() or int(rest) == os.getpid():
                continue
            try:
                os.kill(int(rest), 0)
            except ProcessLookupError:
                try:
                    os.unlink(os.path.join(d, name))
                except OSError:
                    pass
            except OSError:
                pass  # alive, someone else's

    def load_state(self, raw=False):
        """The saved state parsed as JSON (bytes with raw=True); None when there is none."""
        if not self.state_file:
            return None
        try:
            with open(self.state_file, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return None
        if raw:
            return data
        try:
            return json.loads(data)
        except ValueError:
            _warn(f"{self.state_file}: saved state is not JSON; ignored")
            return None

    # -- metrics --

    def use_registry(self, registry):
        """Sends registry's metrics (prometheus_client: REGISTRY or a CollectorRegistry) every
        metrics_interval, on the master's collect, and at cleanup."""
        if not hasattr(registry, "collect"):
            raise TypeError("use_registry: not a prometheus_client registry")
        first = not self._registries
        self._registries.append(registry)
        if first and self._sock:
            threading.Thread(target=self._metrics_loop, daemon=True, name="drover-metrics").start()
        return registry

    def _metrics_loop(self):
        ev = threading.Event()
        while self._sock:
            self.send_metrics()
            ev.wait(self.metrics_interval)

    def collect(self):
        families = []
        for reg in self._registries:
            try:
                metrics = list(reg.collect())
            except Exception as e:  # noqa: BLE001 - a broken collector must not stop the rest
                self._report_once(f"throw:{e!r}", f"a registry raised, its metrics skipped: "
                                  f"{e!r}")
                continue
            fams, refused = from_prometheus(metrics, MAX_SERIES - len(families))
            for name, why in refused:
                self._report_once(f"refused:{name}:{why}", f"metric family {name} not sent: "
                                  f"{why}")
            families.extend(fams)
        return families

    def send_metrics(self):
        if not self._sock or not self._registries:
            return False
        # One snapshot at a time; a request that comes while one is being taken is not lost:
        # the running one goes round once more (requests meanwhile merge into that one).
        with self._collect_lock:
            if self._collecting:
                self._collect_again = True
                return False
            self._collecting = True
        ok = False
        try:
            while True:
                ok = self._send({"type": "metrics", "families": self.collect()})
                with self._collect_lock:
                    if not self._collect_again:
                        return ok
                    self._collect_again = False
        finally:
            with self._collect_lock:
                self._collecting = False


# ---- the process's worker, made on first use ----------------------------------------------

_instance = None
_instance_lock = threading.Lock()


def worker():
    global _instance
    with _instance_lock:
        if _instance is None:
            _instance = Worker()
        return _instance


def ready():
    return worker().ready()


def status(text):
    return worker().status(text)


def heartbeat():
    return worker().heartbeat()


def recycle(reason="requested"):
    return worker().recycle(reason)


def on_phase(phase, fn=None):
    """on_phase("save", fn), or as a decorator: @on_phase("save")."""
    if fn is None:
        return lambda f: worker().on_phase(phase, f)
    return worker().on_phase(phase, fn)


def save_state(value):
    return worker().save_state(value)


def load_state(raw=False):
    return worker().load_state(raw)


def use_registry(registry):
    return worker().use_registry(registry)


def send_metrics():
    return worker().send_metrics()


def listen_socket(index=0, host="127.0.0.1", port=None):
    return worker().listen_socket(index, host, port)


def listen_fds():
    return list(worker().listen_fds)


def use_asyncio(loop=None):
    return worker().use_asyncio(loop)


def stopping():
    return worker().stopping


def supervised():
    return worker().supervised


# Under drover the worker starts with the module: heartbeats must not wait for a first call.
if "DROVER_CHANNEL_FD" in os.environ:
    worker()
