#!/usr/bin/python3
"""An unmodified socket-activated app: knows systemd's protocols, nothing of drover.

It takes its listening socket from LISTEN_FDS (fd 3, checked against LISTEN_PID), serves a
minimal HTTP/1.0-style answer "sockact pid N" on it, and announces READY=1 over NOTIFY_SOCKET
(a path or an '@' abstract name), as any sd_notify user does. With --no-notify it never
announces readiness, to test ready_timeout; with --bad-status its STATUS= text is not UTF-8
(sd_notify carries raw bytes). No drover SDK, no DROVER_* variable is read.
"""
import os
import socket
import sys

SD_LISTEN_FDS_START = 3


def sd_notify(state):
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return False
    if path.startswith("@"):
        path = "\0" + path[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
        s.connect(path)
        s.sendall(state if isinstance(state, bytes) else state.encode())
    return True


def listen_fds():
    if os.environ.get("LISTEN_PID") != str(os.getpid()):
        return []
    n = int(os.environ.get("LISTEN_FDS", "0"))
    return list(range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + n))


def main():
    fds = listen_fds()
    if not fds:
        print("sockact: no LISTEN_FDS for this pid", file=sys.stderr, flush=True)
        return 1
    srv = socket.socket(fileno=fds[0])
    srv.setblocking(True)
    if "--bad-status" in sys.argv[1:]:
        sd_notify(b"READY=1\nSTATUS=serving \xff\xfe clients")
    elif "--no-notify" not in sys.argv[1:]:
        sd_notify("READY=1\nSTATUS=serving")
    body = f"sockact pid {os.getpid()}\n".encode()
    while True:
        conn, _ = srv.accept()
        with conn:
            conn.settimeout(2)
            data = b""
            try:
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                             b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
            except OSError:
                pass


if __name__ == "__main__":
    sys.exit(main())
