"""An ASGI service under uvicorn with prometheus_client metrics, /health, a graceful drain and
saved state, with drover_worker. No framework: uvicorn from Debian is all it needs.

Under drover (see drover.ini): `python3 -m uvicorn --fd 3 app:app`; alone:
`PYTHONPATH=../../python python3 -m uvicorn app:app --port 8000` (every drover call a no-op).
"""

import asyncio
import json
import os
import time

import prometheus_client as prom

import drover_worker as drover

REQUESTS = prom.Counter("app_http_requests", "HTTP requests served", ["path", "code"])
LATENCY = prom.Histogram("app_http_request_duration_seconds", "HTTP request latency", ["path"],
                         buckets=(0.005, 0.025, 0.1, 0.5, 2.5))
INFLIGHT = prom.Gauge("app_http_inflight", "requests in progress")

state = drover.load_state() or {"hits": 0}
inflight = 0


@drover.on_phase("drain")
def drain(ctx):
    # Requests in flight finish; new ones are answered with Connection: close (below).
    deadline = time.monotonic() + max(ctx["timeout_ms"], 1000) / 1000 - 0.25
    while inflight and time.monotonic() < deadline:
        time.sleep(0.01)
    print(json.dumps({"msg": "drained", "phase": "drain"}), flush=True)


@drover.on_phase("save")
def save(ctx):
    drover.save_state(state)
    print(json.dumps({"msg": "state saved", "phase": "save", "hits": state["hits"]}), flush=True)


drover.use_registry(prom.REGISTRY)


async def respond(send, status, body, ctype=b"application/json"):
    headers = [(b"content-type", ctype)]
    if drover.stopping():
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def app(scope, receive, send):
    global inflight
    if scope["type"] == "lifespan":
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                drover.use_asyncio()
                drover.ready()
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    path = scope["path"]
    inflight += 1
    INFLIGHT.inc()
    t0 = time.monotonic()
    status = 200
    try:
        if path == "/":
            state["hits"] += 1
            body = {"pid": os.getpid(), "hits": state["hits"], "slot": drover.worker().worker_id}
        elif path == "/sleep":
            ms = int((dict(p.split("=", 1) for p in scope["query_string"].decode().split("&")
                           if "=" in p)).get("ms", "0"))
            await asyncio.sleep(min(ms, 60000) / 1000)
            body = {"pid": os.getpid(), "slept": ms}
        elif path == "/health":
            status = 503 if drover.stopping() else 200
            body = {"ok": status == 200, "pid": os.getpid()}
        elif path == "/metrics":
            await respond(send, 200, prom.generate_latest(), prom.CONTENT_TYPE_LATEST.encode())
            return
        else:
            status, body = 404, {"error": "not found"}
        await respond(send, status, json.dumps(body).encode())
    finally:
        inflight -= 1
        INFLIGHT.dec()
        LATENCY.labels(path).observe(time.monotonic() - t0)
        REQUESTS.labels(path, str(status)).inc()
