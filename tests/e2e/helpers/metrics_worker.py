#!/usr/bin/python3
"""A worker that speaks drover's channel protocol directly (no SDK) and sends metrics
snapshots, for the metrics tests (SPEC sections 4 and 6).

It says {"type":"ready"} on DROVER_CHANNEL_FD (after --ready-delay seconds), then sends a full
snapshot every --interval seconds and whenever the master sends {"type":"collect"}. Its numbers
depend only on its slot s (DROVER_WORKER_ID) and --base b, so a test can predict every sum:

  test_requests_total{code="200"}   counter   b * (s + 1)
  test_requests_total{code="500"}   counter   s          (0 when b is 0)
  test_level_{summed,max,min,avg,per_worker}  gauge  s + 1   (agg sum, max, min, avg, worker)
  test_latency_seconds{op="get"}    histogram buckets [0.1, 1], counts k*[s, s+1, s+2],
                                              sum k*s, count k*(s+2), k = 1 (0 when b is 0)
  bench_series_total{id="0".."N-1"} counter   id         (--series N, for the benchmark)

A process that finds its slot's DROVER_STATE_FILE already there is a replacement (restart,
reload) and counts from zero, as a real new process does: b becomes 0. The first one creates it.

--mode picks a misbehaviour instead of good snapshots:
  garbage    sends a line that is not JSON (the master closes the channel), then idles
  huge       sends one line over 1 MiB (the master closes the channel), then idles
  malformed  sends well-formed metrics messages whose families are invalid, every interval
  overlimit  sends snapshots of 10001 series (over the per-worker limit), every interval
  flood      sends valid snapshots of 2000 series as fast as the socket takes them
--ignore-phases never answers a shutdown phase and ignores SIGTERM (a worker that will not
drain). --get-metrics asks the master for the combined page once and prints what came back.
"""
import argparse
import json
import os
import select
import signal
import socket
import sys
import time

p = argparse.ArgumentParser()
p.add_argument("--mode", default="good",
               choices=["good", "garbage", "huge", "malformed", "overlimit", "flood"])
p.add_argument("--interval", type=float, default=0.2)
p.add_argument("--base", type=float, default=10)
p.add_argument("--series", type=int, default=0)
p.add_argument("--ready-delay", type=float, default=0)
p.add_argument("--ignore-phases", action="store_true")
p.add_argument("--get-metrics", action="store_true")
a = p.parse_args()

if a.ignore_phases:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)

slot = int(os.environ.get("DROVER_WORKER_ID", "0"))
state = os.environ.get("DROVER_STATE_FILE")
base = a.base
if state:
    if os.path.exists(state):
        base = 0
    else:
        with open(state, "w") as f:
            f.write("started\n")
k = 1 if base else 0

ch = socket.socket(fileno=int(os.environ["DROVER_CHANNEL_FD"]))


def send(obj):
    ch.sendall(json.dumps(obj, separators=(",", ":")).encode() + b"\n")


# Gauge names by agg; promtool's lint forbids "gauge" in a name and a "_sum" suffix.
GAUGES = {"sum": "summed", "max": "max", "min": "min", "avg": "avg", "worker": "per_worker"}


def families(n_bench):
    s = slot
    fams = [{
        "name": "test_requests_total", "type": "counter", "help": "Requests answered.",
        "samples": [{"labels": {"code": "200"}, "value": base * (s + 1)},
                    {"labels": {"code": "500"}, "value": s if base else 0}],
    }]
    for agg, suffix in GAUGES.items():
        fams.append({"name": f"test_level_{suffix}", "type": "gauge", "agg": agg,
                     "help": f"A gauge merged by {agg}.", "samples": [{"value": s + 1}]})
    fams.append({
        "name": "test_latency_seconds", "type": "histogram", "help": "Request latency.",
        "buckets": [0.1, 1],
        "samples": [{"labels": {"op": "get"}, "counts": [k * s, k * (s + 1), k * (s + 2)],
                     "sum": k * s, "count": k * (s + 2)}],
    })
    if n_bench:
        fams.append({"name": "bench_series_total", "type": "counter", "help": "Many series.",
                     "samples": [{"labels": {"id": str(i)}, "value": i}
                                 for i in range(n_bench)]})
    return fams


def snapshot():
    if a.mode == "malformed":
        return {"type": "metrics", "families": [{"name": "9 not a name", "type": "counter",
                                                 "samples": [{"value": -1}]}]}
    if a.mode == "overlimit":
        return {"type": "metrics", "families": families(10001)}
    return {"type": "metrics", "families": families(a.series)}


def idle_forever():
    while True:
        time.sleep(3600)


if a.ready_delay:
    time.sleep(a.ready_delay)
send({"type": "ready"})

if a.mode in ("garbage", "huge"):
    bad = b"this is not json\n" if a.mode == "garbage" else (
        b'{"type":"metrics","families":[' + b" " * (1536 * 1024) + b"]}\n")
    try:
        ch.sendall(bad)
    except OSError:
        pass  # the master hung up mid-line: that is the point
    idle_forever()
if a.mode == "flood":
    line = json.dumps({"type": "metrics", "families": families(2000)}).encode() + b"\n"
    try:
        while True:
            ch.sendall(line)
    except OSError:
        idle_forever()

asked = False
buf = b""
next_at = 0.0
while True:
    now = time.monotonic()
    if now >= next_at:
        send(snapshot())
        next_at = now + a.interval
        if a.get_metrics and not asked:
            send({"type": "get_metrics", "format": "text"})
            asked = True
    ready, _, _ = select.select([ch], [], [], max(0.0, next_at - time.monotonic()))
    if not ready:
        continue
    data = ch.recv(1 << 20)
    if not data:
        print("channel closed", flush=True)
        if a.ignore_phases:
            idle_forever()
        sys.exit(0)
    buf += data
    while b"\n" in buf:
        line, buf = buf.split(b"\n", 1)
        msg = json.loads(line)
        kind = msg.get("type")
        if kind == "collect":
            send(snapshot())
        elif kind == "metrics_page":
            body = msg.get("body", "")
            print(f"metrics_page format={msg.get('format')} bytes={len(body)} "
                  f"has_requests={'test_requests_total' in body}", flush=True)
        elif kind == "phase" and not a.ignore_phases:
            ph = msg["phase"]
            if ph in ("initiated", "complete"):
                continue
            if ph == "cleanup":
                send(snapshot())  # the final counts, kept by the master after we exit
            send({"type": "phase_done", "phase": ph})
            if ph == "cleanup":
                sys.exit(0)
