"""`droverctl reload --dry-run` (issue 20): what a reload would change, per app and key, and
which changes need new workers and which apply in place, without changing anything: same
pids, same generation, no reload and no config_rejected event afterwards."""

import json

import drover_harness as h


def apps(ports, **web_extra):
    web = {"command": h.hello(), "workers": 2, "listen": ports[0], "ready": "notify",
           "kill_timeout": "5s", "env": ["MODE=a"]}
    web.update(web_extra)
    return {"web": web,
            "api": {"command": h.hello(), "workers": 1, "listen": ports[1], "ready": "notify"}}


def snapshot(drover):
    st = drover.status()
    return {a["name"]: (a["generation"], a["state"], sorted(w["pid"] for w in a["workers"]))
            for a in st["apps"]}


def event_types(drover):
    r = drover.ctl("--json", "events")
    assert r.returncode == 0, r.stderr
    return [json.loads(x)["event"]["type"] for x in r.stdout.splitlines()
            if x.strip() and "event" in json.loads(x)]


def started(drover, ports):
    drover.start(apps=apps(ports))
    drover.wait_http(ports[0])
    drover.wait_http(ports[1])
    h.wait_until(lambda: all(a["ready"] == a["wanted"] for a in drover.status()["apps"]), 10,
                 what="every worker ready")
    return snapshot(drover)


def test_dry_run_shows_the_changes_and_changes_nothing(drover):
    ports = [f"127.0.0.1:{h.free_port()}" for _ in range(3)]
    before = started(drover, ports)
    types_before = event_types(drover)
    new = apps(ports, workers=3, env=["MODE=b"], kill_timeout="10s",
               listen=[ports[0], ports[2]])
    del new["api"]
    new["worker2"] = {"command": h.hello(), "listen": f"127.0.0.1:{h.free_port()}"}
    drover.write_config(apps=new)

    r = drover.ctl("--json", "reload", "--dry-run")
    assert r.returncode == 0, r
    reply = json.loads(r.stdout.strip().splitlines()[-1])
    assert reply["ok"] is True and reply["dry_run"] is True, reply
    by_app = {a["app"]: a for a in reply["apps"]}
    assert by_app["api"]["action"] == "remove"
    assert by_app["worker2"]["action"] == "add"
    web = by_app["web"]
    assert web["action"] == "roll" and web["rolling"] is True, web
    assert web["generation"] == 1 and web["new_generation"] == 2, web
    changes = {c["key"]: c for c in web["changes"]}
    assert set(changes) == {"workers", "env", "kill_timeout", "listen"}, changes
    assert changes["workers"] == {"key": "workers", "old": "2", "new": "3", "apply": "in_place"}
    assert changes["env"]["old"] == ["MODE=a"] and changes["env"]["new"] == ["MODE=b"]
    assert changes["env"]["apply"] == "rolling"
    assert changes["listen"]["new"] == [ports[0], ports[2]]
    assert changes["listen"]["apply"] == "rolling"
    assert changes["kill_timeout"]["old"] == "5s" and changes["kill_timeout"]["new"] == "10s"
    assert changes["kill_timeout"]["apply"] == "in_place"

    r = drover.ctl("reload", "--dry-run")
    assert r.returncode == 0, r
    text = r.stdout
    assert "dry run: nothing was changed" in text
    assert "web: changes need new workers; rolling replacement of 2 workers, generation 1 -> 2" \
        in text, text
    assert "MODE=a -> MODE=b  [needs new workers]" in text, text
    assert "kill_timeout" in text and "5s -> 10s  [applies in place]" in text, text
    assert "api: no longer in the file" in text and "worker2: new app" in text, text

    # Nothing changed: the same workers, generations, apps; no port bound; no event.
    assert snapshot(drover) == before
    assert event_types(drover) == types_before
    assert h.http_ok(ports[0]) and not h.http_ok(ports[2])


def test_dry_run_of_an_invalid_file_fails_like_a_reload(drover):
    ports = [f"127.0.0.1:{h.free_port()}" for _ in range(2)]
    before = started(drover, ports)
    types_before = event_types(drover)
    path = drover.write_config(apps=apps(ports, workers="many"))
    line = next(i for i, t in enumerate(path.read_text().splitlines(), 1)
                if t == "workers = many")
    r = drover.ctl("reload", "--dry-run")
    assert r.returncode == 1, r
    assert f"{path}:{line}: workers:" in r.stderr, r
    real = drover.ctl("reload")
    assert real.returncode == 1 and f"{path}:{line}: workers:" in real.stderr, real
    assert snapshot(drover) == before
    # The dry run recorded nothing; the real reload its config_rejected.
    assert event_types(drover) == types_before + ["config_rejected"]


def test_dry_run_of_an_unchanged_file_and_of_one_app(drover):
    ports = [f"127.0.0.1:{h.free_port()}" for _ in range(2)]
    before = started(drover, ports)
    r = drover.ctl("--json", "reload", "--dry-run", "api")
    assert r.returncode == 0, r
    reply = json.loads(r.stdout.strip().splitlines()[-1])
    assert [a["app"] for a in reply["apps"]] == ["api"]
    assert reply["apps"][0]["changes"] == [] and reply["apps"][0]["rolling"] is False
    r = drover.ctl("reload", "--dry-run")
    assert "web: no change; rolling replacement of 2 workers, generation 1 -> 2" in r.stdout
    assert snapshot(drover) == before
