#!/usr/bin/python3
"""Writes log lines in the dialects real apps use, then idles.

stderr: a plain line (as gunicorn and Python's logging write INFO), pino lines with "level":30
and "level":50, a `<4>` sd-daemon prefixed line, a Python-logging style JSON line with
"level":"WARNING", and a JSON line whose members collide with drover's own keys (ts, pid,
worker, app). stdout: a plain line and a `<3>` line. Every line carries the tag from argv[1]
and a name, so a test can find the record made of each; the last line is "<tag> done".
"""
import json
import os
import signal
import sys

tag = sys.argv[1] if len(sys.argv) > 1 else "levels"
pid = os.getpid()


def err(line):
    print(line, file=sys.stderr, flush=True)


def out(line):
    print(line, flush=True)


err(f"[INFO] {tag} plain-stderr pid {pid}")
out(f"{tag} plain-stdout pid {pid}")
err(json.dumps({"level": 30, "time": 1700000000000, "pid": pid, "hostname": "h",
                "msg": f"{tag} pino-info", "req": {"id": 7}}))
err(json.dumps({"level": 50, "time": 1700000000001, "pid": pid, "hostname": "h",
                "msg": f"{tag} pino-error", "err": {"type": "Error"}}))
err(f"<4>{tag} sd-warn")
out(f"<3>{tag} sd-err")
err(json.dumps({"level": "WARNING", "msg": f"{tag} python-warning", "logger": "app.db"}))
err(json.dumps({"level": 35, "msg": f"{tag} pino-custom"}))
err(json.dumps({"msg": f"{tag} collide", "ts": 12345, "pid": "not-a-pid", "worker": "w-a",
                "app": "other", "stream": "stderr", "level": "bogus"}))
out(f"{tag} done")
while True:
    signal.pause()
