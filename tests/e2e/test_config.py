"""Config checking and command-line errors (SPEC 2, 3): `-t`, exit status 2, FILE:LINE: key."""

import json
import re

import pytest

import drover_harness as h

GOOD = """\
; every form the SPEC allows, in one file
[supervisor]
control_socket = ./ctl/drover.sock
admin_listen   = off
log_format     = text
log_file       = -
state_dir      = ./state
shutdown_timeout = 5m
drain_timeout  = 30s
save_timeout   = 250ms
close_timeout  = 5s
cleanup_timeout = 5s

[app:web]
command   = /bin/sleep 1000      ; the command is not run by -t
workers   = auto
listen    = 127.0.0.1:18080
listen    = [::1]:18080
listen    = unix:./web.sock
cwd       = .
env       = KEY=VALUE
env       = OTHER=two words
ready     = notify
ready_timeout = 10s
ready_delay = 1s
max_memory = 256M
memory_check_interval = 1s
restart   = on-failure
restart_delay = 100ms
restart_delay_max = 30s
min_uptime = 5s
reload_batch = 1
kill_timeout = 30s
metrics_per_worker = yes

[app:batch]
command = /bin/true
workers = 2
ready = none
restart = never
max_memory = 1G
metrics_per_worker = off
"""


def test_check_good_config(tmp):
    (tmp / "good.ini").write_text(GOOD)
    r = h.run([h.DROVER, "-t", "-c", "good.ini"], cwd=tmp)
    assert r.returncode == 0, r
    assert "good.ini: ok" in r.stdout + r.stderr, r
    assert not (tmp / "web.sock").exists(), "-t must not bind anything"


BASE = """\
[supervisor]
admin_listen = off
log_format = json

[app:web]
command = /bin/sleep 1000
workers = 2
"""

# (name, text appended to BASE or replacing it, line of the error, what the message names)
BAD = [
    ("unknown_key", BASE + "colour = blue\n", 8, "colour"),
    # inih reports a section with its first key, so either line names the section
    ("unknown_section", BASE + "\n[database]\nhost = x\n", (9, 10), "database"),
    ("bad_duration", BASE + "restart_delay = 10 parsecs\n", 8, "restart_delay"),
    ("bad_duration_unit", BASE + "min_uptime = 5h0x\n", 8, "min_uptime"),
    ("bad_size", BASE + "max_memory = lots\n", 8, "max_memory"),
    ("bad_bool", BASE + "metrics_per_worker = perhaps\n", 8, "metrics_per_worker"),
    ("bad_enum", BASE + "ready = whenever\n", 8, "ready"),
    ("bad_workers", BASE.replace("workers = 2", "workers = -3"), 7, "workers"),
    ("bad_listen", BASE + "listen = nowhere\n", 8, "listen"),
    ("bad_log_format", BASE.replace("log_format = json", "log_format = xml"), 3, "log_format"),
    ("unknown_supervisor_key", BASE.replace("admin_listen = off", "admin_listen = off\nfoo = 1"),
     3, "foo"),
    # where [app:web] stands, or its first key
    ("missing_command", BASE.replace("command = /bin/sleep 1000\n", ""), (5, 6), "command"),
]


def check_error(r, name, line, word):
    text = r.stdout + r.stderr
    assert r.returncode == 2, f"exit {r.returncode}, want 2: {text!r}"
    m = re.search(rf"bad\.ini:(\d+):[^\n]*", text)
    assert m, f"no 'bad.ini:LINE:' in {text!r}"
    lines = line if isinstance(line, tuple) else (line,)
    assert int(m.group(1)) in lines, f"{name}: error on line {m.group(1)}, want {line}: {m.group(0)}"
    assert word in m.group(0), f"{name}: the message does not name {word!r}: {m.group(0)}"


@pytest.mark.parametrize("name,text,line,word", BAD, ids=[b[0] for b in BAD])
def test_check_bad_config(tmp, name, text, line, word):
    (tmp / "bad.ini").write_text(text)
    r = h.run([h.DROVER, "-t", "-c", "bad.ini"], cwd=tmp)
    check_error(r, name, line, word)


# An app may listen on at most 60 addresses: a worker gets fds 0-2, then one per address from
# fd 3 on, then its channel, 64 fds in all (CONFIG_LISTEN_MAX in supervisor/config.h).
LISTEN_MAX = 60


def listen_lines(n, first_port=20000):
    return "".join(f"listen = 127.0.0.1:{first_port + i}\n" for i in range(n))


def test_too_many_listen_lines(tmp):
    # BASE ends on line 7: the listen lines start on line 8, the 61st stands on line 68.
    (tmp / "bad.ini").write_text(BASE + listen_lines(65))
    r = h.run([h.DROVER, "-t", "-c", "bad.ini"], cwd=tmp)
    check_error(r, "too_many_listen", 8 + LISTEN_MAX, "listen")
    assert f"at most {LISTEN_MAX}" in r.stdout + r.stderr, r


def test_most_listen_lines_run(drover):
    """The most listen lines a config may have all reach the worker, in order."""
    outdir = drover.tmp / "dumps"
    outdir.mkdir()
    socks = [drover.tmp / f"l{i}.sock" for i in range(LISTEN_MAX)]
    drover.start(apps={"many": {"command": h.helper("envdump.py", outdir), "ready": "none",
                                "listen": [f"unix:{p}" for p in socks]}})
    found = h.wait_until(lambda: sorted(outdir.glob("*.json")), 10, interval=0.05,
                         what="the worker's environment dump")
    d = json.loads(found[0].read_text())
    env = d["env"]
    assert env.get("LISTEN_FDS") == str(LISTEN_MAX), env
    assert env.get("DROVER_CHANNEL_FD") == str(3 + LISTEN_MAX), env
    assert {int(k) for k in d["fds"]} == set(range(3 + LISTEN_MAX + 1)), d["fds"]
    for i, p in enumerate(socks):
        assert d["sockets"][str(3 + i)]["sockname"] == str(p), (i, d["sockets"])


# A worker written inline, on one long line, as people write `python3 -c` one-liners: it serves
# on the socket drover passes as fd 3 and answers with the text at the very end of its line.
# No blank before a ';' in it: that would start an inline comment.
LONG_BODY = ("drover read this whole command line, well past the two hundred bytes that "
             "the system inih reads at once, and ran it")
LONG_COMMAND = (
    f'{h.PYTHON} -c "import http.server as h, socket; '
    "R = type('R', (h.BaseHTTPRequestHandler,), {'do_GET': lambda s: (s.send_response(200), "
    "s.send_header('Content-Type', 'text/plain'), s.end_headers(), s.wfile.write(B)), "
    "'log_message': lambda s, *a: None}); "
    "srv = h.HTTPServer(('127.0.0.1', 0), R, bind_and_activate=False); srv.socket.close(); "
    "srv.socket = socket.socket(fileno=3); print('serving', flush=True); "
    f"B = b'{LONG_BODY}'; srv.serve_forever()\""
)


def test_long_command_line_runs(drover):
    """SPEC 3: a value may be as long as a person writes it (issue 13: 241 characters were
    refused, since inih reads 200 bytes of a line at once)."""
    port = h.free_port()
    path = drover.write_config(apps={"py": {"command": LONG_COMMAND, "workers": 2,
                                            "ready": "none", "listen": f"127.0.0.1:{port}"}})
    line = next(l for l in path.read_text().splitlines() if l.startswith("command"))
    assert len(line) > 241, len(line)
    r = h.run([h.DROVER, "-t", "-c", path], cwd=drover.tmp)
    assert r.returncode == 0 and f"{path}: ok" in r.stdout, r
    drover.start()
    addr = f"127.0.0.1:{port}"
    drover.wait_http(addr)
    status, body = h.http_get(addr)
    assert status == 200 and body == LONG_BODY, (status, body)
    drover.wait_workers(2)
    drover.wait_record(lambda rec: rec.get("app") == "py" and rec.get("msg") == "serving",
                       what="the worker's own output line")


def test_run_with_bad_config_exits_2(tmp):
    (tmp / "bad.ini").write_text(BASE + "colour = blue\n")
    r = h.run([h.DROVER, "-c", "bad.ini"], cwd=tmp)
    check_error(r, "run", 8, "colour")


def test_missing_config_file(tmp):
    r = h.run([h.DROVER, "-t", "-c", "nonexistent.ini"], cwd=tmp)
    assert r.returncode == 2, r
    assert "nonexistent.ini" in r.stdout + r.stderr, r


@pytest.mark.parametrize("args", [
    ["--no-such-option"],
    ["-c"],
    ["-i", "two", "-l", "127.0.0.1:1", "--", "/bin/true"],
    ["-i", "2", "-l", "nowhere", "--", "/bin/true"],
    ["-i", "2", "-l", "127.0.0.1:1"],
    ["-c", "x.ini", "extra-argument"],
], ids=["unknown_option", "missing_value", "bad_count", "bad_listen", "no_command",
        "stray_argument"])
def test_bad_arguments_exit_2(tmp, args):
    (tmp / "x.ini").write_text(BASE)
    r = h.run([h.DROVER] + args, cwd=tmp)
    assert r.returncode == 2, r
    assert (r.stdout + r.stderr).strip(), "a usage error says what is wrong"


def test_version(tmp):
    r = h.run([h.DROVER, "--version"], cwd=tmp)
    assert r.returncode == 0, r
    assert re.search(r"\d+\.\d+\.\d+", r.stdout), r
