"""droverctl top (SPEC 2): the live view in a real terminal, and `top --once`.

The terminal is tmux's: a private server (its own socket file in the test's temp dir, so only
that server is ever killed), a detached session of a given size running `droverctl top` from a
plain sh script. The script records the terminal's modes (`stty -g`) before and after, and
droverctl's exit status, then prints a marker and waits, so the pane can be read once top is
gone: what a person sees is read with `capture-pane`, keys arrive with `send-keys`.
"""

import os
import re
import shlex
import signal
import subprocess

import pytest

import drover_harness as h

TMUX = "/usr/bin/tmux"
DONE = "TOP-EXITED"


def web_app(workers=3):
    return {"command": h.hello(), "workers": workers, "listen": f"127.0.0.1:{h.free_port()}"}


class Tmux:
    def __init__(self, tmp):
        self.tmp = tmp
        self.sock = str(tmp / "tmux.sock")
        self.started = False

    def __call__(self, *args):
        r = subprocess.run([TMUX, "-S", self.sock, "-f", "/dev/null", *args],
                           capture_output=True, text=True, timeout=h.scaled(10))
        if r.returncode != 0:
            raise AssertionError(f"tmux {' '.join(args)}: {r.stderr}")
        return r.stdout

    def start_top(self, drover, width, height, *args):
        """Runs `droverctl top ARGS` in a new session of width x height."""
        ctl = [str(h.DROVERCTL), "-s", drover.control_socket, "top", *args]
        t = shlex.quote(str(self.tmp))
        # sh and droverctl share a process group (no job control), so Ctrl-C reaches both: the
        # trap keeps sh alive to record what top left behind, as an interactive shell would be.
        # A trapped signal is reset to its default for the commands sh runs.
        script = (f"trap : INT; cd {t} && stty -g >stty.before; {shlex.join(ctl)}; echo $? >top.rc; "
                  f"stty -g >stty.after; echo {DONE}; exec sleep 600")
        env = {k: v for k, v in os.environ.items() if k not in ("TMUX", "DROVER_SOCKET",
                                                                 "NO_COLOR")}
        env["TERM"] = "xterm"
        r = subprocess.run([TMUX, "-S", self.sock, "-f", "/dev/null", "new-session", "-d",
                            "-s", "top", "-x", str(width), "-y", str(height), "sh", "-c", script],
                           capture_output=True, text=True, env=env, timeout=h.scaled(10))
        assert r.returncode == 0, r.stderr
        self.started = True

    def start_shell(self, width, height):
        """An interactive bash (job control: Ctrl-Z, fg) in a new session."""
        env = {k: v for k, v in os.environ.items() if k not in ("TMUX", "DROVER_SOCKET")}
        env["TERM"] = "xterm"
        r = subprocess.run([TMUX, "-S", self.sock, "-f", "/dev/null", "new-session", "-d",
                            "-s", "top", "-x", str(width), "-y", str(height),
                            "bash --norc --noprofile -i"],
                           capture_output=True, text=True, env=env, timeout=h.scaled(10))
        assert r.returncode == 0, r.stderr
        self.started = True

    def screen(self):
        return self("capture-pane", "-p", "-t", "top")

    def alternate_on(self):
        return self("display", "-p", "-t", "top", "#{alternate_on}").strip() == "1"

    def size(self):
        w, hgt = self("display", "-p", "-t", "top", "#{pane_width} #{pane_height}").split()
        return int(w), int(hgt)

    def top_pid(self):
        """droverctl's pid: the child of the pane's sh."""
        sh = int(self("display", "-p", "-t", "top", "#{pane_pid}").strip())
        kids = h.children_of(sh)
        return kids[0] if kids else None

    def wait_screen(self, pred, what, timeout=10):
        try:
            return h.wait_until(lambda: pred(self.screen()), timeout, interval=0.1, what=what)
        except h.Timeout as e:
            raise AssertionError(f"{e}\n--- screen ---\n{self.screen()}") from None

    def kill(self):
        if self.started:
            subprocess.run([TMUX, "-S", self.sock, "kill-server"], capture_output=True,
                           timeout=h.scaled(10))


@pytest.fixture
def tmux(tmp):
    t = Tmux(tmp)
    yield t
    t.kill()


def worker_pids(drover, app="web"):
    st = drover.status()
    if not st:
        return None
    for a in st["apps"]:
        if a["name"] == app:
            pids = [w["pid"] for w in a["workers"] if w["state"] == "ready" and w["pid"] > 0]
            return sorted(pids) if len(pids) == len(a["workers"]) else None
    return None


def wait_pids(drover, n, app="web"):
    return h.wait_until(lambda: (lambda p: p if p and len(p) == n else None)(
        worker_pids(drover, app)), 15, what=f"{n} ready workers of {app}")


def rows_of(screen):
    """The table rows on the screen: {pid: the row's cells}."""
    rows = {}
    for line in screen.splitlines():
        cells = line.split()
        if len(cells) >= 9 and cells[0] in ("web", "api") and cells[2].isdigit():
            rows[int(cells[2])] = cells
    return rows


def misfit(tmux, screen):
    """How the frame does not fit the pane, or None: every line within the width, the frame
    exactly the height, the key line on its bottom row."""
    width, height = tmux.size()
    lines = screen.split("\n")
    if lines and lines[-1] == "":
        lines = lines[:-1]
    if len(lines) != height:
        return f"{len(lines)} lines on a {height}-row screen"
    if any(len(line) > width for line in lines):
        return f"a line wider than {width}"
    if not lines[-1].startswith("q quit"):
        return "the key line is not on the last row"
    return None


def assert_fits(tmux, screen):
    why = misfit(tmux, screen)
    assert why is None, f"{why}:\n{screen}"


def assert_restored(tmux, tmp):
    """top is gone with exit 0, the normal screen is back, the terminal's modes are as before."""
    tmux.wait_screen(lambda s: DONE in s, "the script to go on after top")
    assert not tmux.alternate_on(), "the alternate screen is still on"
    assert (tmp / "top.rc").read_text().strip() == "0"
    before = (tmp / "stty.before").read_text()
    after = (tmp / "stty.after").read_text()
    assert before == after, f"terminal modes changed: {before!r} -> {after!r}"


def test_live_view_follows_workers_and_fits_the_terminal(drover, tmux, tmp):
    drover.start(apps={"web": web_app(3), "api": web_app(2)})
    pids = wait_pids(drover, 3)
    api = wait_pids(drover, 2, "api")
    tmux.start_top(drover, 120, 30)

    # The frame: every worker's pid from the status reply, in a row with its state, on the
    # alternate screen, filling the terminal.
    screen = tmux.wait_screen(lambda s: s if set(pids + api) <= set(rows_of(s)) else None,
                              "every worker's pid on the screen")
    assert tmux.alternate_on()
    for pid in pids:
        row = rows_of(screen)[pid]
        assert row[0] == "web" and row[3] == "ready" and row[4] == "1", row
    assert re.search(rf"drover pid {drover.pid}, up \d+\w*: 2 apps, 5 workers, 5 ready", screen)
    assert "EVENTS" in screen and "worker_ready" in screen
    assert_fits(tmux, screen)

    # A worker killed from outside: its exit event appears, and its replacement's pid.
    victim = pids[0]
    os.kill(victim, signal.SIGKILL)
    new = h.wait_until(lambda: (lambda p: p if p and victim not in p else None)(
        worker_pids(drover)), 15, what="the killed worker replaced")
    (fresh,) = set(new) - set(pids)
    screen = tmux.wait_screen(
        lambda s: s if fresh in rows_of(s) and victim not in rows_of(s) and
        re.search(r"worker_exit\s+web/\d", s) else None,
        f"the exit event and the new pid {fresh}")
    row = rows_of(screen)[fresh]
    assert row[6] == "1" and row[9].startswith("SIGKILL"), row  # restarts, last exit

    # Smaller: the frame is cut to fit, its key line still on the last row; larger again: the
    # whole table is back.
    tmux("resize-window", "-t", "top", "-x", "60", "-y", "12")
    screen = tmux.wait_screen(lambda s: s if not misfit(tmux, s) and "more row" in s else None,
                              "the frame cut to 60x12")
    assert_fits(tmux, screen)
    # Tinier than any layout: still no line past the edge, the key line still last.
    tmux("resize-window", "-t", "top", "-x", "30", "-y", "5")
    screen = tmux.wait_screen(lambda s: s if tmux.size() == (30, 5) and not misfit(tmux, s)
                              else None, "the frame cut to 30x5")
    assert_fits(tmux, screen)
    tmux("resize-window", "-t", "top", "-x", "140", "-y", "40")
    screen = tmux.wait_screen(lambda s: s if set(new + api) <= set(rows_of(s)) and
                              "more row" not in s and not misfit(tmux, s) else None,
                              "the whole frame at 140x40")
    assert_fits(tmux, screen)

    tmux("send-keys", "-t", "top", "q")
    assert_restored(tmux, tmp)


@pytest.mark.parametrize("how", ["C-c", "SIGTERM", "SIGHUP"])
def test_every_way_out_restores_the_terminal(drover, tmux, tmp, how):
    drover.start(apps={"web": web_app(1)})
    pids = wait_pids(drover, 1)
    tmux.start_top(drover, 100, 20)
    tmux.wait_screen(lambda s: pids[0] in rows_of(s), "the worker on the screen")
    assert tmux.alternate_on()
    if how.startswith("SIG"):
        pid = tmux.top_pid()
        assert pid, "droverctl is not running in the pane"
        os.kill(pid, getattr(signal, how))
    else:
        tmux("send-keys", "-t", "top", how)
    assert_restored(tmux, tmp)


def test_ctrl_z_gives_the_terminal_back_and_fg_takes_it_again(drover, tmux, tmp):
    drover.start(apps={"web": web_app(1)})
    pids = wait_pids(drover, 1)
    tmux.start_shell(100, 20)
    tmux.wait_screen(lambda s: re.search(r"[$#] *$", s.strip()), "the shell's prompt")
    ctl = shlex.join([str(h.DROVERCTL), "-s", drover.control_socket, "top"])
    tmux("send-keys", "-t", "top", ctl, "Enter")
    tmux.wait_screen(lambda s: pids[0] in rows_of(s), "the worker on the screen")
    assert tmux.alternate_on()
    tmux("send-keys", "-t", "top", "C-z")
    tmux.wait_screen(lambda s: "Stopped" in s, "the job stopped")
    assert not tmux.alternate_on(), "a stopped top must not hold the alternate screen"
    tmux("send-keys", "-t", "top", "fg", "Enter")
    tmux.wait_screen(lambda s: pids[0] in rows_of(s) and "q quit" in s, "top drawn again")
    assert tmux.alternate_on()
    tmux("send-keys", "-t", "top", "q")
    h.wait_until(lambda: not tmux.alternate_on(), 10, what="the normal screen back")
    # After fg, $? is the resumed job's exit status.
    tmux("send-keys", "-t", "top", "echo rc=$?", "Enter")
    tmux.wait_screen(lambda s: "rc=0" in s, "top's exit status 0")


def test_drover_going_away_is_shown_and_its_return_picked_up(drover, tmux, tmp):
    drover.start(apps={"web": web_app(2)})
    pids = wait_pids(drover, 2)
    tmux.start_top(drover, 120, 24)
    tmux.wait_screen(lambda s: set(pids) <= set(rows_of(s)), "the workers on the screen")

    drover.signal(signal.SIGTERM)
    assert drover.wait_exit(15) == 0
    screen = tmux.wait_screen(lambda s: s if "drover is not answering" in s else None,
                              "drover's absence in the top line")
    assert tmux.alternate_on(), "top keeps running while drover is away"
    assert set(pids) <= set(rows_of(screen)), "the last table stays on the screen"

    # A new drover at the same socket: its workers replace the old rows.
    drover.start()
    again = wait_pids(drover, 2)
    tmux.wait_screen(lambda s: set(again) <= set(rows_of(s)) and
                     "not answering" not in s and f"drover pid {drover.pid}" in s,
                     "the new drover's workers")
    tmux("send-keys", "-t", "top", "q")
    assert_restored(tmux, tmp)


def test_once_prints_one_plain_frame(drover, tmp):
    drover.start(apps={"web": web_app(2)})
    pids = wait_pids(drover, 2)
    r = drover.ctl("top", "--once")
    assert r.returncode == 0, r.stderr
    assert "\x1b" not in r.stdout, "no escapes in --once output to a pipe"
    assert set(pids) <= set(rows_of(r.stdout)), r.stdout
    lines = r.stdout.splitlines()
    assert lines[0].split()[1:4] == ["drover", "pid", f"{drover.pid},"], lines[0]
    assert lines[2].split()[:4] == ["APP", "SLOT", "PID", "STATE"], r.stdout
    events = lines[lines.index("EVENTS") + 1:]
    assert 1 <= len(events) <= 10 and all(re.match(r"\d\d:\d\d:\d\d\.\d+Z #\d+ \w+", e)
                                           for e in events), r.stdout
    assert "worker_ready" in r.stdout


def test_top_errors(drover, tmp):
    # The live view needs a terminal; no drover at the socket is exit 3 at once; usage is 2.
    drover.start(apps={"web": web_app(1)})
    wait_pids(drover, 1)
    r = drover.ctl("top")
    assert r.returncode == 2 and "needs a terminal" in r.stderr, r
    for args in (["top", "--bogus"], ["top", "web"], ["--json", "top"],
                 ["top", "--interval", "0"], ["top", "--interval"]):
        r = drover.ctl(*args)
        assert r.returncode == 2, (args, r)
    r = h.run([h.DROVERCTL, "-s", str(tmp / "nobody.sock"), "top", "--once"], cwd=tmp)
    assert r.returncode == 3 and "no drover at" in r.stderr, r
