#!/usr/bin/python3
"""Exits with a failure, at once or after --after-ms N. With --record FILE it first appends
"<pid> <monotonic seconds>" to FILE, so a test can count spawns and measure the gaps."""
import argparse
import os
import sys
import time

p = argparse.ArgumentParser()
p.add_argument("--after-ms", type=int, default=0)
p.add_argument("--code", type=int, default=1)
p.add_argument("--record")
a = p.parse_args()
if a.record:
    with open(a.record, "a") as f:
        f.write(f"{os.getpid()} {time.monotonic():.6f}\n")
if a.after_ms:
    time.sleep(a.after_ms / 1000)
print(f"crasher {os.getpid()} exiting with {a.code}", file=sys.stderr, flush=True)
sys.exit(a.code)
