#!/usr/bin/python3
"""A socket-activated HTTP worker that, once, grows past a memory limit while serving.

It serves "leaky pid N" on fd 3 (LISTEN_FDS) and says READY=1 over NOTIFY_SOCKET. The worker of
slot --slot, if the marker file --marker does not exist yet, creates the marker and then grows
by --grow-mb after --delay-ms, while still serving; its replacement finds the marker and stays
small. Requests are answered from threads, so the growth never stalls serving. On SIGTERM it
drains as a well-behaved socket-activated app does: stops accepting, finishes what it accepted,
exits 0.

GET /grow?mb=N&hold_ms=M grows by N MB inside the request itself and answers M ms later.
"""
import argparse
import os
import re
import select
import signal
import socket
import threading
import time

p = argparse.ArgumentParser()
p.add_argument("--slot", type=int, default=0)
p.add_argument("--marker", required=True)
p.add_argument("--grow-mb", type=int, default=200)
p.add_argument("--delay-ms", type=int, default=300)
a = p.parse_args()

sock = socket.socket(fileno=3)
stopping = threading.Event()
hoard = []


def serve():
    while not stopping.is_set():
        if not select.select([sock], [], [], 0.05)[0]:
            continue
        try:
            conn, _ = sock.accept()
        except BlockingIOError:
            continue  # another worker took it
        with conn:
            conn.setblocking(True)
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(4096)
                if not chunk:
                    break
                data += chunk
            body = f"leaky pid {os.getpid()}\n".encode()
            grow = re.match(rb"GET /grow\?mb=(\d+)&hold_ms=(\d+) ", data)
            if grow:
                # Grows inside the request and answers only after hold_ms: a supervisor
                # that kills the worker for its size cuts this request.
                block = bytearray(int(grow.group(1)) * 1024 * 1024)
                for i in range(0, len(block), 4096):
                    block[i] = 1
                hoard.append(block)
                time.sleep(int(grow.group(2)) / 1000)
                body = f"grew {grow.group(1).decode()} MB, leaky pid {os.getpid()}\n".encode()
            conn.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: "
                         + str(len(body)).encode() + b"\r\n\r\n" + body)


sock.setblocking(False)
threads = [threading.Thread(target=serve, daemon=True) for _ in range(4)]
for t in threads:
    t.start()
signal.signal(signal.SIGTERM, lambda *_: stopping.set())

path = os.environ["NOTIFY_SOCKET"]
with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
    s.connect("\0" + path[1:] if path.startswith("@") else path)
    s.sendall(b"READY=1")

if int(os.environ.get("DROVER_WORKER_ID", "-1")) == a.slot and not os.path.exists(a.marker):
    open(a.marker, "w").close()
    time.sleep(a.delay_ms / 1000)
    print(f"leaky {os.getpid()} growing by {a.grow_mb} MB", flush=True)
    block = bytearray(a.grow_mb * 1024 * 1024)
    for i in range(0, len(block), 4096):
        block[i] = 1
    hoard.append(block)
while not stopping.wait(3600):
    pass
for t in threads:
    t.join()

