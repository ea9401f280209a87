"""What a worker sees (SPEC 4): socket activation variables, identity, the channel, and no
descriptor it was not meant to have; each worker leads its own process group (SPEC 5)."""

import json
import os
import socket

import drover_harness as h


def start_envdump(drover, listen, workers, systemd_socket=None):
    outdir = drover.tmp / "dumps"
    outdir.mkdir()
    env = {}
    if systemd_socket:
        env["NOTIFY_SOCKET"] = str(systemd_socket)
    drover.start(apps={"env": {"command": h.helper("envdump.py", outdir), "workers": workers,
                               "listen": listen, "ready": "none"}},
                 env=env)
    def dumps():
        files = sorted(outdir.glob("*.json"))
        return [json.loads(f.read_text()) for f in files] if len(files) >= workers else None
    found = h.wait_until(dumps, 10, interval=0.05, what=f"{workers} environment dumps")
    assert len(found) == workers, f"expected {workers} workers, got {len(found)} dumps"
    return found


def fake_systemd(tmp):
    """A datagram socket standing in for systemd's, put in drover's own environment."""
    path = tmp / "systemd-notify.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(str(path))
    return s, path


def test_socket_activation_identity_and_fds(drover):
    port = h.free_port()
    sd, sd_path = fake_systemd(drover.tmp)
    try:
        check_three_workers(drover, port, sd_path)
    finally:
        sd.close()


def check_three_workers(drover, port, sd_path):
    dumps = start_envdump(drover, f"127.0.0.1:{port}", 3, systemd_socket=sd_path)
    workers = set(drover.workers())
    slots = set()
    for d in dumps:
        env, pid = d["env"], d["pid"]
        shown = {k: v for k, v in env.items() if k.startswith(("LISTEN", "DROVER", "NOTIFY"))}
        ctx = f"worker pid {pid}: env={shown} fds={d['fds']}"
        assert pid in workers, ctx
        assert d["ppid"] == drover.pid, ctx
        # systemd socket activation, exactly
        assert env.get("LISTEN_FDS") == "1", ctx
        assert env.get("LISTEN_PID") == str(pid), ctx
        assert env.get("LISTEN_FDNAMES") == "env", ctx
        # readiness goes to drover, never to drover's own systemd socket
        assert env.get("NOTIFY_SOCKET"), ctx
        assert env["NOTIFY_SOCKET"] != str(sd_path), ctx
        # identity
        assert env.get("DROVER_APP") == "env", ctx
        assert env.get("DROVER_GENERATION", "").isdigit(), ctx
        assert env.get("DROVER_WORKER_ID", "").isdigit(), ctx
        slots.add(int(env["DROVER_WORKER_ID"]))
        state_file = env.get("DROVER_STATE_FILE")
        assert state_file, ctx
        state_dir = os.path.realpath(drover.tmp / "state")
        assert os.path.realpath(os.path.join(d["cwd"], state_file)).startswith(state_dir + "/"), ctx
        # descriptors: 0, 1, 2, the listening socket at 3, the channel; nothing else
        chan = env.get("DROVER_CHANNEL_FD", "")
        assert chan.isdigit(), ctx
        chan = int(chan)
        fds = {int(k) for k in d["fds"]}
        assert fds == {0, 1, 2, 3, chan}, f"unexpected fds {sorted(fds - {0, 1, 2, 3, chan})}: {ctx}"
        assert chan > 3, ctx
        s3 = d["sockets"]["3"]
        assert s3["listening"] is True, ctx
        assert s3["sockname"] == ["127.0.0.1", port], ctx
        assert d["fds"][str(chan)].startswith("socket:"), ctx
        assert d["sockets"][str(chan)]["listening"] is False, ctx
        # its own process group (and session), so signals reach its children too
        assert d["pgid"] == pid, ctx
        # stdout and stderr are drover's pipes, not drover's own stdout
        assert d["fds"]["1"].startswith("pipe:") and d["fds"]["2"].startswith("pipe:"), ctx
    assert slots == {0, 1, 2}, f"slots {sorted(slots)}"
    state_files = {d["env"]["DROVER_STATE_FILE"] for d in dumps}
    assert len(state_files) == 3, f"each slot has its own state file: {state_files}"
    channels = {d["fds"][d["env"]["DROVER_CHANNEL_FD"]] for d in dumps}
    assert len(channels) == 3, f"each worker has its own channel: {channels}"


def test_two_listens_in_order(drover):
    port = h.free_port()
    path = drover.tmp / "second.sock"
    dumps = start_envdump(drover, [f"127.0.0.1:{port}", f"unix:{path}"], 2)
    for d in dumps:
        env = d["env"]
        ctx = f"worker {d['pid']}: fds={d['fds']} sockets={d['sockets']}"
        assert env.get("LISTEN_FDS") == "2", ctx
        assert env.get("LISTEN_PID") == str(d["pid"]), ctx
        assert env.get("LISTEN_FDNAMES") == "env:env", ctx
        chan = int(env["DROVER_CHANNEL_FD"])
        assert {int(k) for k in d["fds"]} == {0, 1, 2, 3, 4, chan}, ctx
        assert d["sockets"]["3"]["sockname"] == ["127.0.0.1", port], ctx
        assert d["sockets"]["3"]["listening"] is True, ctx
        assert d["sockets"]["4"]["sockname"] == str(path), ctx
        assert d["sockets"]["4"]["listening"] is True, ctx
