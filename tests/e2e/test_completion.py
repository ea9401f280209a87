"""Bash completion for droverctl (supervisor/droverctl.bash): commands, options, and the app
names of the running drover, asked at the socket the command line names.

Each case runs a fresh `bash --norc`, sources the completion file, sets COMP_WORDS and
COMP_CWORD as bash's completion machinery would, calls _droverctl and prints COMPREPLY.
"""

import subprocess
import time

import pytest

import drover_harness as h

COMPLETION = h.REPO / "supervisor" / "droverctl.bash"


def complete(words, env=None, cwd=None):
    """The completions of the last word of words (a list; "" = a new, empty word)."""
    script = ('source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); '
              '_droverctl; printf "%s\\n" "${COMPREPLY[@]}"')
    path = f"{h.DROVERCTL.parent}:/usr/bin:/bin"
    full_env = {"PATH": path, "HOME": "/nonexistent"}
    full_env.update(env or {})
    r = subprocess.run(["/bin/bash", "--norc", "--noprofile", "-c", script, "bash",
                        str(COMPLETION), *words], capture_output=True, text=True, env=full_env,
                       cwd=cwd, timeout=h.scaled(10))
    assert r.returncode == 0 and r.stderr == "", r
    return sorted(line for line in r.stdout.splitlines() if line)


def apps():
    return {"web": {"command": h.hello(), "workers": 1, "listen": f"127.0.0.1:{h.free_port()}"},
            "api-2": {"command": h.hello(), "workers": 1,
                      "listen": f"127.0.0.1:{h.free_port()}"}}


def test_commands_and_options_without_drover(tmp):
    sock = str(tmp / "nobody.sock")
    assert complete(["droverctl", ""]) == sorted(
        "status top reload restart scale stop start logs events metrics upgrade".split())
    assert complete(["droverctl", "st"]) == ["start", "status", "stop"]
    assert complete(["droverctl", "--"]) == ["--help", "--json", "--socket", "--timeout",
                                             "--version"]
    assert complete(["droverctl", "-s", sock, "logs", "-"]) == ["--follow", "--json", "--lines",
                                                                "-f", "-n"]
    assert complete(["droverctl", "events", "--s"]) == ["--since"]
    assert complete(["droverctl", "top", "-"]) == ["--interval", "--once"]
    # No drover at the socket: no app names, no noise, and no wait.
    started = time.monotonic()
    assert complete(["droverctl", "-s", sock, "status", ""]) == []
    assert time.monotonic() - started < h.scaled(5)
    # A socket path completes as a file name.
    (tmp / "drover.sock.example").write_text("")
    assert complete(["droverctl", "-s", str(tmp / "drover.so")]) == [
        str(tmp / "drover.sock.example")]


def test_app_names_from_the_running_drover(drover, tmp):
    drover.start(apps=apps())
    h.wait_until(lambda: drover.status() and len(drover.status()["apps"]) == 2, 10,
                 what="drover answering")
    sock = drover.control_socket
    for cmd in ("status", "reload", "restart", "scale", "stop", "start", "logs"):
        assert complete(["droverctl", "-s", sock, cmd, ""]) == ["api-2", "web"], cmd
    assert complete(["droverctl", "--socket", sock, "--json", "restart", "w"]) == ["web"]
    # --socket=PATH arrives split at the '=', as bash's COMP_WORDBREAKS splits it.
    assert complete(["droverctl", "--socket", "=", sock, "stop", "a"]) == ["api-2"]
    assert complete(["droverctl", "-s", sock, "scale", "web", ""]) == ["+1", "-1", "auto"]
    # Only the first argument is an app; events, metrics and top take none.
    assert complete(["droverctl", "-s", sock, "restart", "web", ""]) == []
    assert complete(["droverctl", "-s", sock, "events", ""]) == []
    # Without -s: droverctl's own default, here $DROVER_SOCKET.
    assert complete(["droverctl", "status", ""], env={"DROVER_SOCKET": sock}) == ["api-2", "web"]
    # Another socket on the line is another drover: none there.
    assert complete(["droverctl", "-s", str(tmp / "other.sock"), "status", ""],
                    env={"DROVER_SOCKET": sock}) == []


@pytest.mark.parametrize("prog", ["relative", "absolute"])
def test_the_droverctl_typed_is_the_one_asked(drover, tmp, prog):
    # COMP_WORDS[0] is the program as typed: a build's droverctl, not one on PATH.
    drover.start(apps=apps())
    h.wait_until(lambda: drover.status(), 10, what="drover answering")
    exe = str(h.DROVERCTL) if prog == "absolute" else "./droverctl"
    cwd = h.DROVERCTL.parent if prog == "relative" else tmp
    r = complete([exe, "-s", drover.control_socket, "start", ""], env={"PATH": "/usr/bin:/bin"},
                 cwd=cwd)
    assert r == ["api-2", "web"]
