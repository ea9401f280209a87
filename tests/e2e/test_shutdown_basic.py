"""Shutdown basics (SPEC 2 signals, SPEC 5): TERM or INT with idle workers ends cleanly and
quickly, leaves no worker behind and removes drover's socket files; a worker that ignores
SIGTERM is killed when shutdown_timeout runs out and drover exits 1."""

import signal
import time

import pytest

import drover_harness as h


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_signal_with_idle_workers(drover, sig):
    addr = f"127.0.0.1:{h.free_port()}"
    path = drover.tmp / "web.sock"
    drover.start(apps={"web": {"command": h.hello(), "workers": 4, "ready": "notify",
                               "listen": [addr, f"unix:{path}"]}})
    drover.wait_http(addr)
    drover.wait_http(f"unix:{path}")
    pids = drover.wait_workers(4)
    idents = [h.Identity(p) for p in pids]
    assert path.exists()
    h.wait_until(lambda: h.Path(drover.control_socket).exists(), 5, what="the control socket")

    start = time.monotonic()
    drover.signal(sig)
    code = drover.wait_exit(10)
    took = time.monotonic() - start
    assert code == 0, f"exit {code}, want 0:\n{drover.output()}"
    assert took < h.scaled(5), f"idle shutdown took {took:.1f}s"
    left = [i.pid for i in idents if i.alive()]
    assert not left, f"workers still alive after drover exited: {left}"
    assert not path.exists(), "the unix listen socket file is removed"
    assert not h.Path(drover.control_socket).exists(), "the control socket file is removed"
    # Nothing listens on the TCP port any more.
    with pytest.raises(OSError):
        h.connect(addr, timeout=1).close()


def test_worker_ignoring_term_is_killed_at_shutdown_timeout(drover):
    addr = f"127.0.0.1:{h.free_port()}"
    drover.start(supervisor={"shutdown_timeout": "2s", "drain_timeout": "1s",
                             "save_timeout": "500ms", "close_timeout": "500ms",
                             "cleanup_timeout": "500ms"},
                 apps={"stubborn": {"command": h.helper("ignore_term.py"), "workers": 2,
                                    "ready": "notify", "listen": addr}})
    drover.wait_http(addr)
    idents = [h.Identity(p) for p in drover.wait_workers(2)]
    start = time.monotonic()
    drover.signal(signal.SIGTERM)
    code = drover.wait_exit(10)
    took = time.monotonic() - start
    assert code == 1, f"a forced shutdown exits 1, got {code}:\n{drover.output()}"
    assert 1.5 <= took < h.scaled(2) + 2, f"shutdown took {took:.1f}s with shutdown_timeout 2s"
    left = [i.pid for i in idents if i.alive()]
    assert not left, f"workers still alive after drover exited: {left}"
