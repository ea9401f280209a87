"""Startup failure (SPEC 2, 5): drover binds every address before any worker starts; an address
it cannot bind makes it exit 3 with a message naming the address and the errno text."""

import socket

import drover_harness as h


def test_taken_port_exits_3(drover):
    taken = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    taken.bind(("127.0.0.1", 0))
    taken.listen(8)
    port = taken.getsockname()[1]
    free = h.free_port()
    outdir = drover.tmp / "dumps"
    outdir.mkdir()
    with taken:
        # The free address comes first: drover must still start no worker at all.
        drover.start(apps={"web": {"command": h.helper("envdump.py", outdir), "workers": 2,
                                   "ready": "none",
                                   "listen": [f"127.0.0.1:{free}", f"127.0.0.1:{port}"]}})
        code = drover.wait_exit(10)
    text = drover.output()
    assert code == 3, f"exit {code}, want 3:\n{text}"
    assert f"127.0.0.1:{port}" in text, text
    assert h.EADDRINUSE_TEXT in text, text
    assert not list(outdir.glob("*.json")), "no worker may start when a bind fails"
    # The address that was bound is released again.
    with socket.socket() as s:
        s.bind(("127.0.0.1", free))


def test_taken_port_quick_start_exits_3(drover):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(8)
        port = taken.getsockname()[1]
        drover.start(args=["-i", "1", "-l", f"127.0.0.1:{port}", "-a", "off",
                           "-s", drover.tmp / "q.sock", "--", h.HELLO])
        code = drover.wait_exit(10)
    text = drover.output()
    assert code == 3, f"exit {code}, want 3:\n{text}"
    assert f"127.0.0.1:{port}" in text and h.EADDRINUSE_TEXT in text, text


def test_live_unix_socket_is_not_stolen(drover):
    path = drover.tmp / "live.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as live:
        live.bind(str(path))
        live.listen(8)
        drover.start(apps={"web": {"command": h.hello(), "workers": 1,
                                   "listen": f"unix:{path}"}})
        code = drover.wait_exit(10)
        text = drover.output()
        assert code == 3, f"exit {code}, want 3:\n{text}"
        assert str(path) in text, text
        # The live socket still answers: drover did not unlink it.
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
            c.connect(str(path))


def test_stale_unix_socket_is_replaced(drover):
    path = drover.tmp / "stale.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(path))
    s.close()  # the file stays, nobody listens: what a crashed server leaves behind
    addr = f"unix:{path}"
    drover.start(apps={"web": {"command": h.hello(), "workers": 1, "listen": addr}})
    drover.wait_http(addr)
