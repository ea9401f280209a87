"""The status page on the admin port (`/`, issue 20), in a real headless browser (Debian's
chromium): it renders, the workers it shows are those of the status reply (pid and state per
slot), its charts have points once the master has a few samples, and it holds no script or asset
from elsewhere (no external src/href, and a Content-Security-Policy allowing only itself).

chromium talks only to 127.0.0.1: every host name resolves to nothing, and the background
services that would phone home are off."""

import html.parser
import json
import os
import re
import shutil
import tempfile
import urllib.request

import pytest

import drover_harness as h

CHROMIUM = shutil.which("chromium")
pytestmark = pytest.mark.skipif(CHROMIUM is None and not os.environ.get("CI"),
                                reason="chromium is not installed (scripts/setup installs it)")


def chromium(url, *extra, timeout=60):
    profile = tempfile.mkdtemp(prefix="drover-chromium-")
    try:
        r = h.run([CHROMIUM or "chromium", "--headless", "--no-sandbox", "--disable-gpu",
                   "--disable-quic", "--no-first-run", "--disable-background-networking",
                   "--disable-component-update", "--disable-sync", "--disable-extensions",
                   "--disable-default-apps", "--no-proxy-server", "--disable-dev-shm-usage",
                   "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                   f"--user-data-dir={profile}", *extra, url], timeout=timeout)
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout


def dump_dom(url):
    """The DOM after the page's script ran (and fetched its data) for 5 s of virtual time."""
    return chromium(url, "--virtual-time-budget=5000", "--dump-dom")


class Dom(html.parser.HTMLParser):
    """Worker rows, app sections and chart point counts from the dumped DOM."""

    def __init__(self):
        super().__init__()
        self.workers, self.apps, self.charts, self.tags = [], [], {}, []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append((tag, a))
        if tag == "tr" and a.get("class") == "worker":
            self.workers.append(a)
        if tag == "section" and "data-app" in a:
            self.apps.append(a)
        if tag == "svg" and a.get("id", "").startswith("chart-"):
            self.charts[a["id"]] = int(a.get("data-points", "0"))


def get(admin, path):
    with urllib.request.urlopen(f"http://{admin}{path}", timeout=5) as r:
        return r.status, dict((k.lower(), v) for k, v in r.getheaders()), r.read().decode()


def start(drover):
    admin = f"127.0.0.1:{h.free_port()}"
    web, api = f"127.0.0.1:{h.free_port()}", f"127.0.0.1:{h.free_port()}"
    drover.start(supervisor={"admin_listen": admin}, apps={
        "web": {"command": h.hello(), "workers": 2, "listen": web, "ready": "notify"},
        "api": {"command": h.hello(), "workers": 1, "listen": api, "ready": "notify",
                "depends_on": "web"},
    })
    drover.wait_http(web)
    drover.wait_http(api)
    drover.wait_http(admin, "/health/ready")
    return admin, web


def samples(admin):
    return json.loads(get(admin, "/status/samples.json")[2])["samples"]


def test_page_is_self_contained_with_a_strict_policy(drover):
    admin, _ = start(drover)
    status, headers, body = get(admin, "/")
    assert status == 200 and headers["content-type"].startswith("text/html")
    csp = headers["content-security-policy"]
    assert "default-src 'none'" in csp and "connect-src 'self'" in csp, csp
    assert "http" not in csp and "*" not in csp, csp
    # No asset from anywhere: no src/href attribute at all, no URL but the SVG namespace name.
    assert not re.search(r"""\b(src|href)\s*=""", body, re.I), "the page loads an asset"
    urls = set(re.findall(r"""(?:https?:)?//[A-Za-z0-9.-]+\.[A-Za-z]{2,}[^\s"'<>)]*""", body))
    assert urls <= {"http://www.w3.org/2000/svg"}, urls
    assert "<script src" not in body and "@import" not in body and "url(" not in body
    # The data the page reads: the first sample a second after the start.
    doc = h.wait_until(lambda: samples(admin), 10, interval=0.2, what="a first sample")
    assert {"ts", "requests_per_s", "restarts_delta", "rss_bytes"} <= set(doc[0])


def test_the_browser_shows_what_status_says_and_charts_fill(drover):
    admin, web = start(drover)

    def enough():
        for _ in range(20):
            h.http_ok(web)  # traffic for the request rate
        s = samples(admin)
        return s if len(s) >= 3 else None
    s = h.wait_until(enough, 30, interval=0.5, what="three samples (one per 5 s)")
    assert any(x["requests_per_s"] > 0 for x in s), s
    assert all(x["rss_bytes"] > 0 for x in s[1:]), s

    dom = Dom()
    dom.feed(dump_dom(f"http://{admin}/"))
    assert dom.workers, "the page shows no worker: its script did not run or could not fetch"
    status = drover.status()
    want = {(a["name"], w["slot"]): (w["pid"], w["state"]) for a in status["apps"]
            for w in a["workers"]}
    got = {(w["data-app"], int(w["data-slot"])): (int(w["data-pid"]), w["data-state"])
           for w in dom.workers}
    assert got == want
    assert {a["data-app"]: a["data-state"] for a in dom.apps} == \
        {a["name"]: a["state"] for a in status["apps"]}
    assert all(n >= 3 for n in dom.charts.values()) and len(dom.charts) == 3, dom.charts
    # Every element the script made is from this page: nothing points elsewhere.
    assert not [a for _, a in dom.tags if "src" in a or "href" in a], dom.tags


def test_screenshot_renders(drover, tmp):
    admin, _ = start(drover)
    shot = tmp / "status.png"
    chromium(f"http://{admin}/", "--virtual-time-budget=3000", "--window-size=1200,700",
             f"--screenshot={shot}")
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10000, len(data)
