"""Fitting into systemd, containers and Kubernetes (SPEC section 9)."""

import os
import re
import signal
import socket
import subprocess
import threading
import time

import pytest

import drover_harness as h

CONF = h.REPO / "conf"


class NotifyListener:
    """Our own NOTIFY_SOCKET, standing in for systemd: collects every datagram drover sends."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + path[1:] if path.startswith("@") else path)
        self.sock.settimeout(0.1)
        self.messages = []  # (monotonic time, text)
        self.stop = False
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stop:
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            self.messages.append((time.monotonic(), data.decode()))

    def texts(self):
        return [t for _, t in self.messages]

    def wait_for(self, pred, timeout=10, what="datagram"):
        return h.wait_until(lambda: next((t for t in self.texts() if pred(t)), None), timeout,
                            what=what)

    def close(self):
        self.stop = True
        self.thread.join()
        self.sock.close()


@pytest.mark.parametrize("abstract", [False, True], ids=["path", "abstract"])
def test_sd_notify_to_our_own_supervisor(drover, abstract):
    path = f"@drover-test-{os.getpid()}-{time.monotonic_ns()}" if abstract \
        else str(drover.tmp / "systemd.sock")
    listener = NotifyListener(path)
    try:
        port = h.free_port()
        addr = f"127.0.0.1:{port}"
        dr = drover.start(apps={"web": {"command": h.hello(), "workers": 2, "listen": addr,
                                        "ready": "notify"}},
                          env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "400000"})
        dr.wait_http(addr)
        listener.wait_for(lambda t: t == "READY=1", what="READY=1")
        listener.wait_for(lambda t: t == "STATUS=web: 2/2 ready, gen 1", what="STATUS")
        # WATCHDOG=1 at half of WATCHDOG_USEC: several within a second
        h.wait_until(lambda: listener.texts().count("WATCHDOG=1") >= 3, 3, what="WATCHDOG=1")
        # Workers never see our supervisor's socket or watchdog.
        for pid in dr.wait_workers(2):
            env = h.proc_environ(pid)
            assert env.get("NOTIFY_SOCKET") != path and "WATCHDOG_USEC" not in env, env
        n = len(listener.texts())
        dr.signal(signal.SIGHUP)
        reloading = listener.wait_for(lambda t: t.startswith("RELOADING=1"), what="RELOADING")
        assert re.search(r"MONOTONIC_USEC=\d+", reloading), reloading
        h.wait_until(lambda: "READY=1" in listener.texts()[n:], 10, what="READY=1 after reload")
        listener.wait_for(lambda t: t == "STATUS=web: 2/2 ready, gen 2", what="STATUS gen 2")
        dr.signal(signal.SIGTERM)
        listener.wait_for(lambda t: t == "STOPPING=1", what="STOPPING=1")
        assert dr.wait_exit(10) == 0
    finally:
        listener.close()


def proc_children_states(ppid):
    """(pid, state) of every process whose parent is ppid, from /proc."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            text = open(f"/proc/{d}/stat").read()
        except OSError:
            continue
        rest = text[text.rindex(")") + 2:].split()
        if int(rest[1]) == ppid:
            out.append((int(d), rest[0]))
    return out


def test_pid1_reaps_orphans_and_stops_cleanly(tmp):
    if os.geteuid() != 0:
        pytest.skip("unshare --pid needs root")
    orphan_log = tmp / "orphan.pid"
    cfg = tmp / "drover.ini"
    cfg.write_text(h.ini(h.default_supervisor(tmp), {
        "orphans": {"command": h.helper("orphan_maker.py", orphan_log), "workers": 2,
                    "ready": "none", "restart": "on-failure"},
        "web": {"command": h.hello(), "workers": 1, "listen": f"unix:{tmp / 'web.sock'}",
                "ready": "notify"}}))
    p = subprocess.Popen(["unshare", "--pid", "--fork", "--mount-proc", str(h.DROVER), "-c",
                          str(cfg)], stdout=open(tmp / "out", "wb"), stderr=subprocess.STDOUT,
                         start_new_session=True, env=h.clean_env())
    try:
        # drover's pid on the host: the child of unshare
        drover_pid = h.wait_until(lambda: next((c for c, _ in proc_children_states(p.pid)),
                                               None), 5, what="drover under unshare")
        h.wait_until(lambda: h.http_ok(f"unix:{tmp / 'web.sock'}"), 10, what="web serving")
        # Each orphan maker leaves a detached grandchild that exits a moment later: reparented
        # to drover (PID 1 of the namespace), it must be reaped, not left a zombie.
        h.wait_until(lambda: orphan_log.exists() and
                     len(orphan_log.read_text().split()) >= 2, 10, what="orphans made")
        h.wait_until(lambda: not [s for _, s in proc_children_states(drover_pid) if s == "Z"]
                     and len(proc_children_states(drover_pid)) == 1, 10,
                     what="orphans reaped, only the web worker left")
        os.kill(drover_pid, signal.SIGTERM)
        assert p.wait(timeout=h.scaled(10)) == 0, (tmp / "out").read_text()
        assert not proc_children_states(drover_pid)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def test_workers_auto_follows_cgroup_cpu_quota(drover):
    cpu_max = drover.tmp / "cpu.max"
    cpu_max.write_text("150000 100000\n")
    sock = drover.tmp / "w.sock"
    app = {"web": {"command": h.hello(), "workers": "auto", "listen": f"unix:{sock}",
                   "ready": "notify"}}
    dr = drover.start(supervisor={"cgroup_cpu_max": str(cpu_max)}, apps=app)
    dr.wait_http(f"unix:{sock}")
    assert len(dr.wait_workers(2)) == 2  # 1.5 CPUs of quota, rounded up
    dr.signal(signal.SIGTERM)
    assert dr.wait_exit(10) == 0
    cpu_max.write_text("max 100000\n")
    dr.start(args=["-c", str(dr.config_path)])
    dr.wait_http(f"unix:{sock}")
    assert len(dr.wait_workers(os.cpu_count())) == os.cpu_count()


def test_user_drops_privileges(drover):
    if os.geteuid() != 0:
        pytest.skip("needs root")
    sock = drover.tmp / "w.sock"
    os.chmod(drover.tmp, 0o755)
    dr = drover.start(apps={"web": {"command": h.hello(), "workers": 1, "user": "nobody",
                                    "listen": f"unix:{sock}", "ready": "notify"}})
    dr.wait_http(f"unix:{sock}")
    pid = dr.wait_workers(1)[0]
    uids = open(f"/proc/{pid}/status").read().split("Uid:")[1].split()[:4]
    assert uids == ["65534"] * 4, uids


def test_unknown_user_refuses_to_start(drover):
    dr = drover.start(apps={"web": {"command": h.hello(), "workers": 1,
                                    "user": "no-such-user-here", "ready": "notify"}})
    assert dr.wait_exit(10) == 3
    assert "no-such-user-here" in dr.output()


def test_deploy_files_are_consistent():
    yaml = pytest.importorskip("yaml")
    for f in sorted((CONF / "k8s").glob("*.yaml")):
        docs = list(yaml.safe_load_all(f.read_text()))
        assert docs and all(isinstance(d, dict) and d.get("kind") for d in docs), f
    deploy = yaml.safe_load((CONF / "k8s" / "deployment.yaml").read_text())
    pod = deploy["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"
    assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    ini = (CONF / "k8s" / "drover.ini").read_text()
    shutdown = int(re.search(r"shutdown_timeout\s*=\s*(\d+)s", ini).group(1))
    assert pod["terminationGracePeriodSeconds"] > shutdown
    unit = (CONF / "systemd" / "drover.service").read_text()
    assert "Type=notify" in unit
    stop = int(re.search(r"TimeoutStopSec=(\d+)", unit).group(1))
    sys_ini = (CONF / "systemd" / "drover.ini").read_text()
    assert stop > int(re.search(r"shutdown_timeout\s*=\s*(\d+)s", sys_ini).group(1))
    containerfile = (CONF / "Containerfile").read_text()
    for lib in ("libev4", "libinih1", "libjansson4", "libmicrohttpd12"):
        assert lib in containerfile
    # The configs shipped beside the deploy files are valid drover configs.
    for cfg in (CONF / "k8s" / "drover.ini", CONF / "systemd" / "drover.ini"):
        r = h.run([h.DROVER, "-t", "-c", cfg])
        assert r.returncode == 0, r.stdout + r.stderr
