#!/usr/bin/python3
"""Writes known lines to stdout and stderr, one of them a JSON object, then idles.

Each line carries the tag from argv[1], the pid and the slot, so a test can match the log
record drover makes of it. With --lines N it writes N extra numbered stdout lines first.
"""
import json
import os
import signal
import sys

tag = sys.argv[1] if len(sys.argv) > 1 else "chatty"
slot = os.environ.get("DROVER_WORKER_ID", "?")
pid = os.getpid()
extra = int(sys.argv[sys.argv.index("--lines") + 1]) if "--lines" in sys.argv else 0
for i in range(extra):
    print(f"{tag} line {i} pid {pid}")
print(f"{tag} stdout pid {pid} slot {slot}", flush=True)
print(f"{tag} stderr pid {pid} slot {slot}", file=sys.stderr, flush=True)
print(json.dumps({"msg": f"{tag} structured pid {pid}", "user": "alice", "n": 42,
                  "tag": tag}), flush=True)
print(f"{tag} done pid {pid}", flush=True)
while True:
    signal.pause()
