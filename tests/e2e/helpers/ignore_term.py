#!/usr/bin/python3
"""A worker that ignores SIGTERM (and SIGINT, SIGHUP) and never talks to the channel.

Announces READY=1 over NOTIFY_SOCKET when present, serves "ignore_term pid N" on fd 3 when it
was given a listening socket, otherwise just idles. Only SIGKILL ends it.
"""
import os
import signal
import socket
import sys

for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
    signal.signal(sig, signal.SIG_IGN)
print(f"ignore_term {os.getpid()} ignoring SIGTERM", flush=True)
path = os.environ.get("NOTIFY_SOCKET")
if path:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.connect("\0" + path[1:] if path.startswith("@") else path)
        s.sendall(b"READY=1")
if os.environ.get("LISTEN_PID") == str(os.getpid()) and int(os.environ.get("LISTEN_FDS", "0")):
    srv = socket.socket(fileno=3)
    srv.setblocking(True)
    body = f"ignore_term pid {os.getpid()}\n".encode()
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
while True:
    signal.pause()
