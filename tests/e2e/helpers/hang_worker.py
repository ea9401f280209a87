#!/usr/bin/python3
"""A socket-activated HTTP worker whose main loop can be made to hang (SPEC section 10).

It serves "hang-worker pid N" on fd 3 from one single-threaded select loop, which is also where
its signs of life come from, as an app's loop sends them:

  --mode channel   {"type":"ready"} and {"type":"heartbeat"} on DROVER_CHANNEL_FD, a heartbeat
                   every WATCHDOG_USEC/4.
  --mode systemd   python-systemd, unmodified: systemd.daemon.notify("READY=1") and
                   notify("WATCHDOG=1") every WATCHDOG_USEC/2, as under systemd; --pings N
                   stops pinging after N pings (the loop goes on serving, silently).
  --mode trigger   like systemd, but GET /hang answers and then says WATCHDOG=trigger.

GET /hang (channel, systemd modes) starts a thread that spins on the CPU and leaves the main
loop stuck for good in a blocking wait: busy, alive, and useless. Each start appends
"pid WATCHDOG_PID WATCHDOG_USEC" to --record, so a test can check what it was given.
"""
import argparse
import os
import select
import socket
import threading
import time

p = argparse.ArgumentParser()
p.add_argument("--mode", choices=["channel", "systemd", "trigger"], default="channel")
p.add_argument("--pings", type=int, default=-1)
p.add_argument("--record")
a = p.parse_args()

usec = int(os.environ.get("WATCHDOG_USEC", "0"))
if a.record:
    with open(a.record, "a") as f:
        f.write(f"{os.getpid()} {os.environ.get('WATCHDOG_PID', '-')} {usec}\n")

if a.mode == "channel":
    chan = socket.socket(fileno=int(os.environ["DROVER_CHANNEL_FD"]))

    def say(obj_json):
        chan.sendall(obj_json.encode() + b"\n")

    def ready():
        say('{"type":"ready"}')

    def beat():
        say('{"type":"heartbeat"}')

    period = usec / 4e6 if usec else 1.0
else:
    from systemd import daemon

    def ready():
        daemon.notify("READY=1")

    def beat():
        daemon.notify("WATCHDOG=1")

    period = usec / 2e6 if usec else 1.0

sock = socket.socket(fileno=3)
sock.setblocking(False)


def spin():
    x = 0
    while True:
        x += 1


def hang():
    threading.Thread(target=spin, daemon=True).start()
    threading.Event().wait()  # the main loop, stuck for good


ready()
next_beat = time.monotonic()
pings = 0
conns = {}
while True:
    now = time.monotonic()
    if now >= next_beat:
        if a.pings < 0 or pings < a.pings:
            beat()
            pings += 1
        next_beat = now + period
    r, _, _ = select.select([sock] + list(conns), [], [], max(0.0, next_beat - now))
    for s in r:
        if s is sock:
            try:
                c, _ = sock.accept()
                conns[c] = b""
            except BlockingIOError:
                pass
            continue
        try:
            data = s.recv(65536)
        except OSError:
            data = b""
        if not data:
            conns.pop(s, None)
            s.close()
            continue
        conns[s] += data
        while b"\r\n\r\n" in conns[s]:
            head, conns[s] = conns[s].split(b"\r\n\r\n", 1)
            path = head.split(b" ", 2)[1] if head.count(b" ") >= 2 else b"/"
            if path == b"/hang" and a.mode != "trigger":
                hang()
            body = f"hang-worker pid {os.getpid()}\n".encode()
            keep = b"connection: close" not in head.lower()
            s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: " + str(len(body)).encode() +
                      (b"\r\n" if keep else b"\r\nConnection: close\r\n") + b"\r\n" + body)
            if path == b"/hang" and a.mode == "trigger":
                daemon.notify("WATCHDOG=trigger")
            if not keep:
                conns.pop(s, None)
                s.close()
                break
