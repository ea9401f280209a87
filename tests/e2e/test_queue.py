"""Accept-queue readings (SPEC 13): drover owns the listening sockets, so it reports how many
connections wait in each one's accept queue, and its limit, as `ss -ltn` sees them."""

import json
import re
import socket
import subprocess

import drover_harness as h


def idle_app(addr, backlog=None):
    """Workers that hold the socket and never accept: every connection stays queued."""
    return {"command": "/bin/sleep 1000", "workers": 1, "ready": "none",
            "listen": addr + (f" backlog={backlog}" if backlog else "")}


def ss_queue(port):
    """(Recv-Q, Send-Q) of the listening socket on port, as ss reports them."""
    out = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True,
                         timeout=10).stdout
    for line in out.splitlines():
        f = line.split()
        if f and f[0] == "LISTEN":
            return int(f[1]), int(f[2])
    return None


def app_listen(drover, name):
    r = drover.ctl("--json", "status")
    assert r.returncode == 0, r.stderr
    return [a for a in json.loads(r.stdout)["apps"] if a["name"] == name][0]["listen"]


def test_queue_readings_match_ss(drover, tmp):
    port = h.free_port()
    admin = f"127.0.0.1:{h.free_port()}"
    drover.start(supervisor={"admin_listen": admin},
                 apps={"slow": idle_app(f"127.0.0.1:{port}", backlog=64),
                       "local": {"command": "/bin/sleep 1000", "ready": "none",
                                 "listen": f"unix:{tmp}/local.sock"}})
    h.wait_until(lambda: len(drover.workers()) == 2, 10, what="the two workers")
    held = []
    try:
        for _ in range(5):
            s = socket.create_connection(("127.0.0.1", port), timeout=2)
            held.append(s)
        h.wait_until(lambda: ss_queue(port) == (5, 64), 5, what="ss to see 5 of 64")
        listen = app_listen(drover, "slow")
        assert listen == [{"address": f"127.0.0.1:{port}", "queue": 5, "limit": 64}], listen
        # A unix socket has no such reading: the address alone.
        assert app_listen(drover, "local") == [{"address": f"unix:{tmp}/local.sock"}]
        status, body = h.http_get(admin, "/metrics")
        assert status == 200
        assert f'drover_listen_queue_length{{app="slow",listen="127.0.0.1:{port}"}} 5' in body
        assert f'drover_listen_queue_limit{{app="slow",listen="127.0.0.1:{port}"}} 64' in body
        assert 'app="local",listen=' not in body
        table = drover.ctl("status").stdout
        row = [l for l in table.splitlines() if l.startswith("slow")][0]
        assert row.split()[-1] == "5/64", table
    finally:
        for s in held:
            s.close()


def test_a_backlog_cut_by_somaxconn_is_reported(drover):
    with open("/proc/sys/net/core/somaxconn") as f:
        somaxconn = int(f.read())
    port = h.free_port()
    drover.start(apps={"slow": idle_app(f"127.0.0.1:{port}", backlog=65535)})
    rec = drover.wait_record(lambda r: "net.core.somaxconn" in r.get("msg", ""),
                             what="the somaxconn warning")
    assert rec["level"] == "warn" and rec["backlog"] == 65535 and rec["somaxconn"] == somaxconn
    h.wait_until(lambda: ss_queue(port) == (0, somaxconn), 5, what="the kernel's limit")
    assert app_listen(drover, "slow")[0]["limit"] == somaxconn


def test_bad_backlog_is_a_config_error(drover, tmp):
    path = tmp / "bad.ini"
    path.write_text(h.ini(apps={"a": {"command": "/bin/true",
                                      "listen": "127.0.0.1:9 backlog=0"}}))
    r = h.run([h.DROVER, "-t", "-c", path])
    assert r.returncode == 2
    assert re.search(r"bad\.ini:\d+: listen: '127\.0\.0\.1:9 backlog=0': backlog", r.stdout +
                     r.stderr), r.stdout + r.stderr
