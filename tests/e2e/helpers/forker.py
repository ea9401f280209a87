#!/usr/bin/python3
"""A socket-activated worker that forks a grandchild which keeps the listening socket (fd 3).

Both serve "forker pid N" / "grandchild pid N" on fd 3. The grandchild writes its pid to
OUTDIR/gc.<worker pid> (temp name, then rename) before serving. The worker says READY=1 over
NOTIFY_SOCKET once the grandchild's pid file exists.

  --setsid          the grandchild calls setsid(): it leaves the worker's process group, so a
                    signal to that group no longer reaches it (only drover's subreaper role and
                    its exit-time sweep can);
  --exit-after-ms N the worker exits with status 3 after N ms, leaving the grandchild behind;
  --gc-exit-after-ms N  the grandchild exits on its own after N ms (0 = serve forever).

SIGTERM ends the worker (exit 0) but is ignored by the grandchild, as a careless daemon would.
"""
import argparse
import os
import signal
import socket
import sys
import threading
import time

p = argparse.ArgumentParser()
p.add_argument("outdir")
p.add_argument("--setsid", action="store_true")
p.add_argument("--exit-after-ms", type=int, default=0)
p.add_argument("--gc-exit-after-ms", type=int, default=0)
a = p.parse_args()

if os.environ.get("LISTEN_PID") != str(os.getpid()):
    print("forker: no LISTEN_FDS for this pid", file=sys.stderr, flush=True)
    sys.exit(1)


def serve(tag):
    srv = socket.socket(fileno=3)
    srv.setblocking(True)
    body = f"{tag} pid {os.getpid()}\n".encode()
    while True:
        conn, _ = srv.accept()
        with conn:
            try:
                conn.settimeout(2)
                conn.recv(4096)
                conn.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: %d\r\n\r\n"
                             % len(body) + body)
            except OSError:
                pass


worker = os.getpid()
child = os.fork()
if child == 0:
    # The grandchild: keep fd 3 (the listening socket), drop everything else we can.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if a.setsid:
        os.setsid()
    tmp = os.path.join(a.outdir, f".gc.{worker}.tmp")
    with open(tmp, "w") as f:
        f.write(str(os.getpid()))
    os.rename(tmp, os.path.join(a.outdir, f"gc.{worker}"))
    if a.gc_exit_after_ms:
        threading.Timer(a.gc_exit_after_ms / 1000, lambda: os._exit(0)).start()
    serve("grandchild")
    os._exit(0)

signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
pidfile = os.path.join(a.outdir, f"gc.{worker}")
deadline = time.monotonic() + 10
while not os.path.exists(pidfile) and time.monotonic() < deadline:
    time.sleep(0.01)
path = os.environ.get("NOTIFY_SOCKET")
if path:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.connect("\0" + path[1:] if path.startswith("@") else path)
        s.sendall(b"READY=1")
print(f"forker pid {worker} forked grandchild {child}", flush=True)
if a.exit_after_ms:
    threading.Timer(a.exit_after_ms / 1000, lambda: os._exit(3)).start()
serve("forker")
