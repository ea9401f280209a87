#!/usr/bin/python3
"""Dumps what a worker sees to OUTDIR/<pid>.json, then idles (or exits with --exit).

The fd listing comes first, before this script opens anything of its own: every fd open at that
point was inherited from drover. Written to a temp name and renamed, so a reader never sees
half a file. The worker also answers READY=1 on NOTIFY_SOCKET if there is one.
"""
import fcntl
import json
import os
import signal
import socket
import sys


def fd_table():
    fds = {}
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        try:
            fds[fd] = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            pass  # the directory fd listdir used, already closed
    return fds


def main():
    fds = fd_table()
    outdir = sys.argv[1]
    info = {
        "pid": os.getpid(),
        "ppid": os.getppid(),
        "pgid": os.getpgid(0),
        "sid": os.getsid(0),
        "cwd": os.getcwd(),
        "argv": sys.argv,
        "env": dict(os.environ),
        "fds": {str(k): v for k, v in sorted(fds.items())},
        "sockets": {},
    }
    for fd, target in fds.items():
        if not target.startswith("socket:"):
            continue
        try:
            s = socket.socket(fileno=os.dup(fd))
        except OSError as e:
            info["sockets"][str(fd)] = {"error": str(e)}
            continue
        with s:
            d = {"family": int(s.family), "type": int(s.type)}
            try:
                d["listening"] = bool(s.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN))
            except OSError:
                d["listening"] = None
            try:
                name = s.getsockname()
                d["sockname"] = list(name) if isinstance(name, tuple) else name
            except OSError:
                d["sockname"] = None
            info["sockets"][str(fd)] = d
    info["cloexec"] = {}
    for fd in fds:
        try:
            info["cloexec"][str(fd)] = bool(fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC)
        except OSError:
            pass
    tmp = os.path.join(outdir, f".{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        json.dump(info, f)
    os.rename(tmp, os.path.join(outdir, f"{os.getpid()}.json"))

    path = os.environ.get("NOTIFY_SOCKET")
    if path:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
                s.connect("\0" + path[1:] if path.startswith("@") else path)
                s.sendall(b"READY=1")
        except OSError:
            pass
    if "--exit" in sys.argv[2:]:
        return 0
    while True:
        signal.pause()


if __name__ == "__main__":
    sys.exit(main())
