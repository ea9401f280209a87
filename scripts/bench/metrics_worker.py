#!/usr/bin/python3
"""A worker for the scrape benchmark: speaks drover's channel (DROVER_CHANNEL_FD, SPEC section 4)
with the standard library only, and publishes SERIES counter series every second.

After {"type":"ready"} it sends, once a second and whenever drover asks ({"type":"collect"}), a
full snapshot: one counter family `bench_requests_total` with SERIES samples labelled i="0".."N-1"
(the same label sets in every worker, so drover merges them into SERIES series per app). It
answers the shutdown phases at once and exits after cleanup, or when drover goes away.
"""
import json
import os
import select
import socket
import sys
import time

SERIES = int(os.environ.get("SERIES", "100"))


def main():
    fd = int(os.environ["DROVER_CHANNEL_FD"])
    ch = socket.socket(fileno=fd)
    ch.setblocking(True)
    start = time.monotonic()

    def snapshot():
        v = int((time.monotonic() - start) * 10)
        samples = [{"labels": {"i": str(i)}, "value": v + i} for i in range(SERIES)]
        return {"type": "metrics", "families": [
            {"name": "bench_requests_total", "type": "counter", "help": "bench series",
             "samples": samples}]}

    def send(msg):
        ch.sendall((json.dumps(msg, separators=(",", ":")) + "\n").encode())

    send({"type": "ready"})
    send(snapshot())
    buf = b""
    next_at = time.monotonic() + 1.0
    while True:
        wait = max(0.0, next_at - time.monotonic())
        r, _, _ = select.select([ch], [], [], wait)
        if r:
            data = ch.recv(65536)
            if not data:
                return 0  # drover is gone
            buf += data
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                try:
                    msg = json.loads(line)
                except ValueError:
                    continue
                if msg.get("type") == "collect":
                    send(snapshot())
                elif msg.get("type") == "phase" and msg.get("phase") in ("drain", "save", "close",
                                                                         "cleanup"):
                    send({"type": "phase_done", "phase": msg["phase"]})
                    if msg["phase"] == "cleanup":
                        return 0
        if time.monotonic() >= next_at:
            send(snapshot())
            next_at += 1.0


if __name__ == "__main__":
    sys.exit(main())
