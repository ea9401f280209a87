"""surge_nice (SPEC section 3): a surge worker (one that replaces a worker still serving:
reload, restart, memory, lifetime, recycle) boots at a lower CPU priority and gets its
priority back once ready, so its boot leaves the CPU to the workers carrying the load.

Read from /proc: the nice value of each of the worker's threads (/proc/PID/task/TID/stat) and
its autogroup's (/proc/PID/autogroup: the scheduler weighs sessions, and each worker leads its
own, when autogroup is on)."""

import os
import signal
import subprocess

import pytest

import drover_harness as h

AUTOGROUP = os.path.exists("/proc/self/autogroup")
# Lowering a thread's nice value is always allowed; raising it back needs CAP_SYS_NICE (or
# RLIMIT_NICE), so drover lowers it only where it can undo it. These tests run as root.
THREADS = os.geteuid() == 0


def thread_nices(pid):
    out = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/stat") as f:
            data = f.read()
        out.append(int(data[data.rindex(")") + 2:].split()[16]))  # field 19, nice
    return sorted(out)


def autogroup_nice(pid):
    with open(f"/proc/{pid}/autogroup") as f:
        return int(f.read().split()[-1])  # "/autogroup-123 nice 15"


def nices(pid):
    return (thread_nices(pid) if THREADS else None, autogroup_nice(pid) if AUTOGROUP else None)


def niced(n, threads=2):
    return ([n] * threads if THREADS else None, n if AUTOGROUP else None)


def app(tmp, **extra):
    a = {"command": h.helper("nice_worker.py", f"{tmp}/go"), "workers": 1, "ready": "notify",
         "ready_timeout": "20s", "surge_nice": "15"}
    a.update(extra)
    return {"web": a}


def started(dr, not_pids=()):
    """The pid of a worker that printed its first line, other than not_pids."""
    rec = dr.wait_record(lambda r: r.get("pid") not in not_pids and
                         r.get("msg", "").startswith("starting pid"), timeout=h.scaled(10))
    pid = rec["pid"]
    # its thread is up: both tasks are there to be read
    h.wait_until(lambda: len(os.listdir(f"/proc/{pid}/task")) >= 2, h.scaled(5))
    return pid


@pytest.mark.skipif(not (AUTOGROUP or THREADS), reason="neither autogroup nor CAP_SYS_NICE")
def test_a_reload_boots_the_new_worker_nice_and_restores_it_when_ready(drover, tmp_path):
    open(f"{tmp_path}/go-1", "w").close()
    dr = drover.start(apps=app(tmp_path))
    old = started(dr)
    dr.wait_record(lambda r: r.get("pid") == old and r.get("state") == "ready")
    assert nices(old) == niced(0), "a first worker boots at the normal priority"

    reload = subprocess.Popen([str(h.DROVERCTL), "-s", dr.control_socket, "reload", "web"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        new = started(dr, {old})
        assert nices(new) == niced(15), "the surge worker boots at surge_nice"
        assert nices(old) == niced(0), "the serving worker keeps its priority"
        open(f"{tmp_path}/go-2", "w").close()
        out, _ = reload.communicate(timeout=h.scaled(20))
    finally:
        if reload.poll() is None:
            reload.kill()
            reload.wait()
    assert reload.returncode == 0, out
    assert nices(new) == niced(0), "ready: every thread and its autogroup are back at 0"


@pytest.mark.skipif(not (AUTOGROUP or THREADS), reason="neither autogroup nor CAP_SYS_NICE")
def test_a_crash_replacement_is_no_surge_and_boots_at_full_priority(drover, tmp_path):
    open(f"{tmp_path}/go-1", "w").close()
    dr = drover.start(apps=app(tmp_path, min_uptime="0"))
    old = started(dr)
    dr.wait_record(lambda r: r.get("pid") == old and r.get("state") == "ready")
    os.kill(old, signal.SIGKILL)
    assert nices(started(dr, {old})) == niced(0), "nothing serves meanwhile: no reason to be nice"


@pytest.mark.skipif(not (AUTOGROUP or THREADS), reason="neither autogroup nor CAP_SYS_NICE")
def test_a_surge_worker_slow_to_boot_gets_its_priority_back_at_half_its_ready_timeout(
        drover, tmp_path):
    open(f"{tmp_path}/go-1", "w").close()
    # Half of ready_timeout is 3 s: time enough, even on a loaded machine, for the nice boot to
    # print its first line and be seen nice before drover gives it its priority back.
    dr = drover.start(apps=app(tmp_path, ready_timeout="6s", memory_check_interval="100ms"))
    old = started(dr)
    dr.wait_record(lambda r: r.get("pid") == old and r.get("state") == "ready")
    reload = subprocess.Popen([str(h.DROVERCTL), "-s", dr.control_socket, "reload", "web"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        new = started(dr, {old})
        assert nices(new) == niced(15)
        # Not ready: after about 3 s (half of ready_timeout) it boots on at full priority.
        h.wait_until(lambda: nices(new) == niced(0), 8, what="priority restored")
        assert not dr.find(lambda r: r.get("pid") == new and r.get("state") == "ready")
        open(f"{tmp_path}/go-2", "w").close()
        out, _ = reload.communicate(timeout=h.scaled(20))
    finally:
        if reload.poll() is None:
            reload.kill()
            reload.wait()
    assert reload.returncode == 0, out


def test_surge_nice_out_of_range_is_a_config_error(drover):
    path = drover.write_config(apps={"web": {"command": h.hello(), "surge_nice": "20"}})
    r = h.run([h.DROVER, "-t", "-c", path])
    assert r.returncode == 2, r.stdout + r.stderr
    assert "surge_nice" in r.stderr and "0 (off) to 19" in r.stderr, r.stderr
