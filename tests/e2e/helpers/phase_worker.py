#!/usr/bin/python3
"""A worker that speaks drover's channel protocol directly (no SDK) and reports the shutdown
phases it is sent, for the six-phase tests.

It says {"type":"ready"} on DROVER_CHANNEL_FD, then for every {"type":"phase"} message prints
"phase NAME" on stdout (a log record) and answers phase_done, after --delay-PHASE ms if given.
--ignore PHASE never answers that phase. At cleanup it exits after answering. Without a channel
message for a phase it keeps running; SIGTERM is ignored unless --honour-term.
"""
import argparse
import json
import os
import signal
import socket
import sys
import time

p = argparse.ArgumentParser()
for ph in ("drain", "save", "close", "cleanup"):
    p.add_argument(f"--delay-{ph}", type=int, default=0)
p.add_argument("--ignore", action="append", default=[])
p.add_argument("--honour-term", action="store_true")
a = p.parse_args()

if not a.honour_term:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)

ch = socket.socket(fileno=int(os.environ["DROVER_CHANNEL_FD"]))
ch.sendall(b'{"type":"ready"}\n')
buf = b""
while True:
    data = ch.recv(65536)
    if not data:
        print("channel closed", flush=True)
        sys.exit(0)
    buf += data
    while b"\n" in buf:
        line, buf = buf.split(b"\n", 1)
        msg = json.loads(line)
        if msg.get("type") != "phase":
            continue
        ph = msg["phase"]
        print(f"phase {ph} timeout_ms={msg.get('timeout_ms')}", flush=True)
        if ph in a.ignore or ph in ("initiated", "complete"):
            continue
        time.sleep(getattr(a, f"delay_{ph}", 0) / 1000)
        ch.sendall(json.dumps({"type": "phase_done", "phase": ph}).encode() + b"\n")
        if ph == "cleanup":
            sys.exit(0)
