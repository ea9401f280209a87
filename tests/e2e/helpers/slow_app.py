#!/usr/bin/python3
"""A socket-activated app that serves one connection at a time, each taking --ms (100) ms: one
worker carries 1000/ms requests a second, and more waits in the accept queue."""
import os
import socket
import sys
import time

ms = 100
if "--ms" in sys.argv:
    ms = int(sys.argv[sys.argv.index("--ms") + 1])
sock = socket.socket(fileno=3)
path = os.environ.get("NOTIFY_SOCKET")
if path:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as n:
        n.connect("\0" + path[1:] if path.startswith("@") else path)
        n.sendall(b"READY=1")
body = f"slow pid {os.getpid()}\n".encode()
answer = b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body
while True:
    c, _ = sock.accept()
    try:
        c.recv(4096)
        time.sleep(ms / 1000)
        c.sendall(answer)
    except OSError:
        pass
    c.close()
