"""Saved state (SPEC section 5, phase `save`): written atomically, offered to the next start."""

import os
import random
import re
import signal
import subprocess
import time

import drover_harness as h

STATE_SAVER = h.BUILD / "tests" / "e2e" / "helpers" / "state_saver"


def consistent(text):
    """A state file written by state_saver: one N throughout, complete to its END marker."""
    m = re.fullmatch(r"(\d+) ((?:\d+,)+) END (\d+)\n", text)
    if not m or m.group(1) != m.group(3):
        return False
    return set(m.group(2).rstrip(",").split(",")) == {m.group(1)}


def test_killed_during_save_leaves_previous_state_intact(tmp):
    state = tmp / "slot.state"
    env = h.clean_env({"DROVER_STATE_FILE": str(state)})
    rng = random.Random(7)
    for _ in range(15):
        p = subprocess.Popen([str(STATE_SAVER)], env=env, stdout=subprocess.PIPE, text=True,
                             start_new_session=True)
        try:
            assert p.stdout.readline().strip() == "saved 1"
            # Kill at a random point of the save loop (a save takes from well under a
            # millisecond to a few, so these land inside writes, fsyncs and renames). Not a
            # synchronisation: the randomness is the point.
            time.sleep(rng.uniform(0, 0.02))
        finally:
            p.send_signal(signal.SIGKILL)
            p.wait()
        text = state.read_text()
        assert consistent(text), f"torn state file: {text[:80]!r}...{text[-40:]!r}"
    leftovers = [f for f in os.listdir(tmp) if f != "slot.state"]
    # A temp file of a save cut short by SIGKILL may remain; it is never the state file.
    assert all(f.startswith(".slot.state") or "tmp" in f for f in leftovers), leftovers


def test_save_sweeps_its_own_stale_temporaries(tmp):
    """A save killed mid-write leaves `.name.XXXXXX`; the next save of the same file removes
    such leftovers once they are stale, and touches nothing else in the shared directory."""
    old = time.time() - 3600
    stale = tmp / ".slot.state.AbC123"
    fresh = tmp / ".slot.state.XyZ789"          # as if another save of this slot were running
    other = tmp / ".other.state.AbC123"          # another slot's leftover: not ours
    unrelated = tmp / ".slot.state.old"          # not a mkostemp name
    for f in (stale, fresh, other, unrelated):
        f.write_text("partial")
    for f in (stale, other, unrelated):
        os.utime(f, (old, old))
    env = h.clean_env({"DROVER_STATE_FILE": str(tmp / "slot.state")})
    p = subprocess.Popen([str(STATE_SAVER)], env=env, stdout=subprocess.PIPE, text=True,
                         start_new_session=True)
    try:
        assert p.stdout.readline().strip() == "saved 1"
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()
    assert consistent((tmp / "slot.state").read_text())
    assert not stale.exists()
    assert fresh.exists() and other.exists() and unrelated.exists()


def test_hello_http_saves_and_resumes_its_count(drover):
    port = h.free_port()
    addr = f"127.0.0.1:{port}"
    app = {"web": {"command": h.hello(), "workers": 1, "listen": addr, "ready": "notify"}}
    dr = drover.start(apps=app)
    dr.wait_http(addr)
    for _ in range(5):
        assert h.http_get(addr)[0] == 200
    dr.signal(signal.SIGTERM)
    assert dr.wait_exit(10) == 0
    state_file = drover.tmp / "state" / "web.0.state"
    saved = int(re.search(r'"requests":(\d+)', state_file.read_text()).group(1))
    assert saved >= 5  # wait_http's own probes count too
    dr.start(args=["-c", str(dr.config_path)])
    dr.wait_http(addr)
    status, body = h.http_get(addr, "/count")
    assert status == 200 and int(re.search(r"\d+", body).group(0)) > saved, body
