"""stop_signal (SPEC section 3): what a worker without a channel gets at drain, at shutdown and
when a reload retires it."""

import signal

import pytest

import drover_harness as h


def app(stop_signal=None):
    a = {"command": h.helper("stop_signal_worker.py"), "workers": 1, "ready": "none"}
    if stop_signal is not None:
        a["stop_signal"] = stop_signal
    return {"plain": a}


def got(dr, pid):
    return [r["msg"] for r in dr.records() if r.get("pid") == pid and
            r.get("msg", "").startswith("got ")]


@pytest.mark.parametrize("value,name", [(None, "SIGTERM"), ("INT", "SIGINT"),
                                        ("SIGQUIT", "SIGQUIT"), ("WINCH", "SIGWINCH")])
def test_a_channel_less_worker_gets_its_stop_signal_at_shutdown(drover, value, name):
    dr = drover.start(apps=app(value))
    pid = dr.wait_workers(1)[0]
    dr.wait_record(lambda r: r.get("pid") == pid and "waiting" in r.get("msg", ""))
    dr.signal(signal.SIGTERM)
    assert dr.wait_exit(10) == 0, dr.output()
    assert got(dr, pid) == [f"got {name}"], dr.output()


def test_a_reload_retires_a_channel_less_worker_with_its_stop_signal(drover):
    dr = drover.start(apps=app("INT"))
    pid = dr.wait_workers(1)[0]
    dr.wait_record(lambda r: r.get("pid") == pid and "waiting" in r.get("msg", ""))
    r = dr.ctl("reload", "plain", timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    dr.wait_record(lambda rec: rec.get("pid") == pid and rec.get("msg", "").startswith("got "))
    assert got(dr, pid) == ["got SIGINT"]


def test_an_unknown_stop_signal_is_a_config_error(drover):
    path = drover.write_config(apps=app("KILL"))
    r = h.run([h.DROVER, "-t", "-c", path])
    assert r.returncode != 0
    assert "stop_signal" in r.stderr and "'KILL' is not a stop signal" in r.stderr, r.stderr
