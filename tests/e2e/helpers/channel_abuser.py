#!/usr/bin/python3
"""A worker that misuses its channel (DROVER_CHANNEL_FD) on purpose, then idles.

It first says READY=1 over NOTIFY_SOCKET (so it is a ready worker whatever it does to the
channel afterwards), prints "abuser MODE pid N ready", then, by --mode:

  flood-get-metrics  sends {"type":"get_metrics"} lines as fast as the master takes them for
                     --seconds, never reading a reply; then stops sending and idles (with
                     --series N it first sends a snapshot of N series, so that every page the
                     master renders is large);
  close              closes its channel fd;
  close-after-channel-ready  says {"type":"ready"} on the channel first (so drover would send
                     it phases), then closes it;
  dup2-null          puts /dev/null on the channel fd number (dup2) and writes a valid message
                     to it, which goes nowhere;
  dup2-stdout        puts its stdout pipe on the channel fd number and writes a channel message
                     through it (drover sees it as an output line, not as a message);
  garbage            writes a line that is not JSON on the channel;
  huge-line          writes 2 MiB without a newline on the channel.

Then it prints "abuser MODE pid N done sent=K" and idles until SIGTERM, on which it exits 0.
"""
import argparse
import json
import os
import signal
import socket
import sys
import time

p = argparse.ArgumentParser()
p.add_argument("--mode", required=True)
p.add_argument("--seconds", type=float, default=5.0)
p.add_argument("--series", type=int, default=0)
a = p.parse_args()

signal.signal(signal.SIGTERM, lambda *_: os._exit(0))

path = os.environ.get("NOTIFY_SOCKET")
if path:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.connect("\0" + path[1:] if path.startswith("@") else path)
        s.sendall(b"READY=1")
fd = int(os.environ["DROVER_CHANNEL_FD"])
pid = os.getpid()
print(f"abuser {a.mode} pid {pid} ready", flush=True)
sent = 0

if a.mode == "flood-get-metrics":
    if a.series:
        fam = {"name": "abuser_series", "type": "gauge", "help": "one of many", "agg": "worker",
               "samples": [{"labels": {"n": str(i)}, "value": i} for i in range(a.series)]}
        os.write(fd, (json.dumps({"type": "metrics", "families": [fam]}) + "\n").encode())
    req = b'{"type":"get_metrics","format":"text"}\n' * 64
    end = time.monotonic() + a.seconds
    while time.monotonic() < end:
        try:
            os.write(fd, req)
        except OSError as e:
            print(f"abuser write failed: {e}", flush=True)
            break
        sent += 64
elif a.mode == "close":
    os.close(fd)
elif a.mode == "close-after-channel-ready":
    os.write(fd, b'{"type":"ready"}\n')
    os.close(fd)
    sent = 1
elif a.mode == "dup2-null":
    null = os.open("/dev/null", os.O_WRONLY)
    os.dup2(null, fd)
    os.close(null)
    os.write(fd, b'{"type":"status","text":"into the void"}\n')
    sent = 1
elif a.mode == "dup2-stdout":
    sys.stdout.flush()
    os.dup2(1, fd)
    os.write(fd, b'{"type":"status","text":"through stdout"}\n')
    sent = 1
elif a.mode == "garbage":
    os.write(fd, b"this is not json at all\n")
    sent = 1
elif a.mode == "huge-line":
    chunk = b"x" * 65536
    try:
        for _ in range(32):
            os.write(fd, chunk)
            sent += 1
    except OSError as e:
        print(f"abuser write failed: {e}", flush=True)
else:
    print(f"abuser: unknown mode {a.mode}", file=sys.stderr, flush=True)
    sys.exit(2)

print(f"abuser {a.mode} pid {pid} done sent={sent}", flush=True)
while True:
    signal.pause()
