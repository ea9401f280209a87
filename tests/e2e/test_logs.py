"""Worker output becomes drover's log records (SPEC 4 "stdout/stderr", SPEC 8)."""

import json
import re

import drover_harness as h


def chat_app(workers=2, tag="chat-xyz"):
    return {"command": h.helper("chatty.py", tag), "workers": workers, "ready": "none"}


def test_worker_lines_become_json_records(drover):
    drover.start(apps={"chat": chat_app()})
    workers = drover.wait_workers(2)

    def done_records():
        found = drover.find(lambda r: str(r.get("msg", "")).startswith("chat-xyz done"))
        return found if len(found) == 2 else None
    h.wait_until(done_records, 10, what="both workers' last line as a record")
    recs = drover.records()
    for rec in recs:
        assert isinstance(rec.get("ts"), str) and re.fullmatch(
            r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", rec["ts"]), rec
        assert rec.get("level") in ("debug", "info", "warn", "error"), rec

    slots = set()
    for pid in workers:
        mine = [r for r in recs if r.get("pid") == pid]
        out = [r for r in mine if r.get("msg", "").startswith(f"chat-xyz stdout pid {pid}")]
        err = [r for r in mine if r.get("msg", "").startswith(f"chat-xyz stderr pid {pid}")]
        obj = [r for r in mine if r.get("user") == "alice"]
        assert len(out) == 1 and len(err) == 1 and len(obj) == 1, f"records of {pid}: {mine}"
        slot = int(out[0]["msg"].rsplit(" ", 1)[1])
        slots.add(slot)
        for r in (out[0], err[0], obj[0]):
            assert r.get("app") == "chat", r
            assert r.get("worker") == slot, r
            assert r.get("pid") == pid, r
        # A line that is a JSON object is merged, not quoted.
        o = obj[0]
        assert o.get("n") == 42 and o.get("tag") == "chat-xyz", o
        assert o.get("msg") == f"chat-xyz structured pid {pid}", o
        assert "{" not in o["msg"], o
        # stderr is told apart from stdout.
        assert err[0] != out[0]
        assert (err[0].get("level"), err[0].get("stream")) != (out[0].get("level"),
                                                              out[0].get("stream")), (err, out)
    assert slots == {0, 1}

    # Every line on stdout is a JSON record: nothing else is mixed in.
    for line in drover.stdout_text().splitlines():
        if line.strip():
            assert isinstance(json.loads(line), dict), line


def test_text_format_is_for_humans(drover):
    drover.start(supervisor={"log_format": "text"}, apps={"chat": chat_app(workers=1)})
    (pid,) = drover.wait_workers(1)

    def line_seen():
        return [l for l in drover.stdout_text().splitlines() if f"chat-xyz done pid {pid}" in l]
    h.wait_until(line_seen, 10, what="the worker's last line in drover's text log")
    lines = [l for l in drover.stdout_text().splitlines() if l.strip()]
    for line in lines:
        try:
            json.loads(line)
        except ValueError:
            continue
        raise AssertionError(f"a JSON line in text format: {line}")
    out = [l for l in lines if f"chat-xyz stdout pid {pid}" in l]
    assert len(out) == 1, lines
    assert "chat" in out[0].split("chat-xyz")[0], f"the app is named before the message: {out[0]}"
    assert str(pid) in out[0].split("chat-xyz")[0], f"the pid is named: {out[0]}"
    assert [l for l in lines if f"chat-xyz structured pid {pid}" in l], lines
