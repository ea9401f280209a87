"""Signals to the master (SPEC 2): TTIN/TTOU scale every app by one, USR1 reopens log_file."""

import json
import signal

import drover_harness as h


def web_app(workers=2):
    return {"command": h.helper("sockact_app.py"), "workers": workers,
            "listen": f"127.0.0.1:{h.free_port()}", "ready": "notify", "ready_timeout": "10s"}


def chat_app(workers=1):
    return {"command": h.helper("chatty.py", "sig"), "workers": workers, "ready": "none"}


def wanted(drover):
    st = drover.status()
    return {a["name"]: (a["wanted"], a["ready"]) for a in st["apps"]} if st else None


def test_ttin_adds_and_ttou_removes_a_worker_per_app(drover):
    drover.start(apps={"web": web_app(2), "chat": chat_app(1)})
    h.wait_until(lambda: wanted(drover) == {"web": (2, 2), "chat": (1, 1)}, 15,
                 what="web 2/2 and chat 1/1 ready")
    before = set(drover.wait_workers(3))

    drover.signal(signal.SIGTTIN)
    h.wait_until(lambda: wanted(drover) == {"web": (3, 3), "chat": (2, 2)}, 15,
                 what="one more ready worker per app after SIGTTIN")
    after = set(drover.wait_workers(5))
    assert before < after, "SIGTTIN only adds workers"

    drover.signal(signal.SIGTTOU)
    h.wait_until(lambda: wanted(drover) == {"web": (2, 2), "chat": (1, 1)}, 15,
                 what="one worker fewer per app after SIGTTOU")
    now = set(drover.wait_workers(3))
    assert now <= after
    # The highest slots went: the surviving workers are slots 0..n-1.
    st = drover.status()
    for a in st["apps"]:
        assert sorted(w["slot"] for w in a["workers"]) == list(range(a["wanted"])), a

    # At one worker, SIGTTOU leaves the app alone (and says so).
    drover.signal(signal.SIGTTOU)
    h.wait_until(lambda: wanted(drover) == {"web": (1, 1), "chat": (1, 1)}, 15,
                 what="web at 1, chat left at 1")
    drover.wait_record(lambda r: r.get("app") == "chat" and "SIGTTOU" in r.get("msg", ""),
                       what="the record of a SIGTTOU that could not scale chat down")
    assert len(drover.wait_workers(2)) == 2


def test_usr1_reopens_the_log_file(drover):
    log = drover.tmp / "drover.log"
    drover.start(supervisor={"log_file": str(log)}, apps={"chat": chat_app(1)})
    h.wait_until(lambda: wanted(drover) == {"chat": (1, 1)}, 15, what="chat ready")

    def records(path):
        try:
            text = path.read_text()
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    h.wait_until(lambda: any("sig done" in r.get("msg", "") for r in records(log)), 10,
                 what="the worker's output in the log file")

    rotated = drover.tmp / "drover.log.1"
    log.rename(rotated)  # what logrotate does before it signals
    drover.signal(signal.SIGUSR1)
    h.wait_until(lambda: any(r.get("msg") == "log file reopened" for r in records(log)), 10,
                 what="a new log file at the old path")

    # New records go to the new file only: scale up and find the new worker's lines there.
    old_size = rotated.stat().st_size
    r = drover.ctl("scale", "chat", "2")
    assert r.returncode == 0, r.stderr
    pid = max(drover.wait_workers(2))
    h.wait_until(lambda: any(r.get("pid") == pid and "sig done" in r.get("msg", "")
                             for r in records(log)), 10, what="the new worker's lines")
    assert rotated.stat().st_size == old_size, "nothing more went to the rotated file"
    assert not any(r.get("pid") == pid for r in records(rotated))
    assert drover.output().strip() == "", "stdout stays quiet when log_file is set"
