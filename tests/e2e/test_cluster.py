"""Cluster mode: N workers share the listening socket(s) drover bound once (SPEC 2, 3, 5)."""

import pytest

import drover_harness as h


def web_app(listen, workers=3, **extra):
    app = {"command": h.hello(), "workers": workers, "listen": listen, "ready": "notify",
           "ready_timeout": "10s"}
    app.update(extra)
    return app


def test_three_workers_share_one_socket_and_all_serve(drover):
    port = h.free_port()
    addr = f"127.0.0.1:{port}"
    drover.start(apps={"web": web_app(addr, workers=3)})
    drover.wait_http(addr)
    workers = set(drover.wait_workers(3))

    pids = h.serving_pids(addr, want=3, timeout=10)
    assert pids == workers, (f"pids that answered {sorted(pids)} should be exactly drover's "
                             f"3 workers {sorted(workers)}")


def test_quick_start(drover):
    port, admin = h.free_port(), h.free_port()
    addr = f"127.0.0.1:{port}"
    sock = drover.tmp / "quick.sock"
    drover.control_socket = str(sock)
    drover.start(args=["-i", "2", "-l", addr, "-a", f"127.0.0.1:{admin}", "-s", sock,
                       "--", h.HELLO, "--greeting", "hi"])
    drover.wait_http(addr)
    workers = set(drover.wait_workers(2))
    assert h.serving_pids(addr, want=2, timeout=10) == workers
    status, body = h.http_get(addr)
    assert status == 200 and "hi" in body


@pytest.mark.skipif(not h.have_ipv6_loopback(), reason="no IPv6 loopback (::1) on this host")
def test_ipv6_listen(drover):
    port = h.free_port("::1")
    addr = f"[::1]:{port}"
    drover.start(apps={"web": web_app(addr, workers=2)})
    drover.wait_http(addr)
    assert h.body_pid(h.http_get(addr)[1]) in drover.wait_workers(2)


def test_unix_listen(drover):
    path = drover.tmp / "web.sock"
    addr = f"unix:{path}"
    drover.start(apps={"web": web_app(addr, workers=2)})
    drover.wait_http(addr)
    assert h.body_pid(h.http_get(addr)[1]) in drover.wait_workers(2)


def test_two_apps_each_on_its_own_port(drover):
    a, b = f"127.0.0.1:{h.free_port()}", f"127.0.0.1:{h.free_port()}"
    drover.start(apps={"one": web_app(a, workers=1), "two": web_app(b, workers=2)})
    drover.wait_http(a)
    drover.wait_http(b)
    workers = drover.wait_workers(3)
    pa = h.body_pid(h.http_get(a)[1])
    pb = h.serving_pids(b, want=2, timeout=10)
    assert pa in workers and pb <= set(workers) and pa not in pb


def quick_start(drover, *args):
    port = h.free_port()
    addr = f"127.0.0.1:{port}"
    sock = drover.tmp / "quick.sock"
    drover.control_socket = str(sock)
    drover.start(args=["-i", "2", "-l", addr, "-a", "off", "-s", sock, *args])
    return addr


def worker_states(drover):
    st = drover.status()
    return sorted(w["state"] for w in st["apps"][0]["workers"]) if st else []


def test_quick_start_serves_an_app_that_never_speaks(drover):
    """Issue 13, item 9: the quick start's default readiness (auto) takes a silent app as
    ready after a short delay instead of killing it at ready_timeout."""
    addr = quick_start(drover, "--", h.PYTHON, h.HELPERS / "sockact_app.py", "--no-notify")
    drover.wait_http(addr)
    h.wait_until(lambda: worker_states(drover) == ["ready", "ready"], 5, what="2 ready workers")
    rec = drover.wait_record(lambda r: r.get("state") == "ready")
    assert "it said nothing" in rec["msg"], rec


def test_quick_start_takes_a_speaking_apps_word(drover):
    addr = quick_start(drover, "--", h.HELLO, "--greeting", "hi")
    drover.wait_http(addr)
    h.wait_until(lambda: worker_states(drover) == ["ready", "ready"], 5, what="2 ready workers")
    readies = drover.find(lambda r: r.get("state") == "ready")
    assert readies and all("via channel" in r["msg"] for r in readies), readies


def test_quick_start_ready_notify_waits_for_the_word(drover):
    addr = quick_start(drover, "--ready", "notify", "--", h.PYTHON, h.HELPERS / "sockact_app.py",
                       "--no-notify")
    drover.wait_http(addr)  # serving from the backlog's point of view, but never ready
    h.wait_until(lambda: worker_states(drover) == ["starting", "starting"], 5, what="workers")
    time_ready = drover.find(lambda r: r.get("state") == "ready")
    assert not time_ready


def test_quick_start_refuses_an_unknown_ready_mode(drover):
    r = h.run([h.DROVER, "--ready", "soon", "--", "/bin/true"])
    assert r.returncode == 2 and "ready: 'soon' is not a ready mode" in r.stderr, r.stderr
