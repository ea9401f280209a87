#!/usr/bin/python3
"""Allocates (and touches) memory in steps until --limit-mb, then holds it and idles.

--step-mb MB per --interval-ms; announces READY=1 over NOTIFY_SOCKET first, so it can be a
ready worker that later grows past max_memory. --limit-mb 0 = grow without end.
"""
import argparse
import os
import signal
import socket
import time

p = argparse.ArgumentParser()
p.add_argument("--limit-mb", type=int, default=0)
p.add_argument("--step-mb", type=int, default=8)
p.add_argument("--interval-ms", type=int, default=50)
p.add_argument("--delay-ms", type=int, default=0, help="idle this long before growing")
a = p.parse_args()
path = os.environ.get("NOTIFY_SOCKET")
if path:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.connect("\0" + path[1:] if path.startswith("@") else path)
        s.sendall(b"READY=1")
print(f"memhog {os.getpid()} growing to {a.limit_mb or 'unlimited'} MB", flush=True)
time.sleep(a.delay_ms / 1000)
hoard = []
while not a.limit_mb or len(hoard) * a.step_mb < a.limit_mb:
    block = bytearray(a.step_mb * 1024 * 1024)
    for i in range(0, len(block), 4096):
        block[i] = 1  # touch every page so it counts in RSS
    hoard.append(block)
    time.sleep(a.interval_ms / 1000)
print(f"memhog {os.getpid()} holding {len(hoard) * a.step_mb} MB", flush=True)
while True:
    signal.pause()
