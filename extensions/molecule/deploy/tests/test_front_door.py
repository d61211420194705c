"""The front door in a real browser: the Django site behind nginx on every host (proxy.yml), as "site".

The site's two releases differ in every static file its page uses (a stylesheet and the image it names), so each
has its own hashed names. A page rendered by 1.0.0 is kept, as a browser holding it would, and loaded again during
the handover to 2.0.0 (one host at a time, so both releases serve) and after it, in headless Chromium trusting the
lab's test CA: every asset it asks for must load, and the page must look the same. Then maintenance: the front door
answers 503 with its page and Retry-After while the readiness path still answers, status says so, and a rollback
runs under it.
"""

from __future__ import annotations

import json
import os
import re
import sys
import threading
from pathlib import Path

import httpx
import pytest
import testinfra
from conftest import _wait_for

sys.path.insert(0, str(Path(__file__).resolve().parent))
from browser import Browser, differing_pixels

PROJECT = Path(os.environ["MOLECULE_PROJECT_DIRECTORY"])
DEPLOY, ROLLBACK, STATUS, PROXY, MAINTENANCE = (
    PROJECT / f"playbooks/{name}.yml" for name in ("deploy", "rollback", "status", "proxy", "maintenance")
)
SOURCES = PROJECT / "build/molecule-deploy"
SHOTS = PROJECT / "build/reports/front-door"
HOSTS = ["deploy-web1", "deploy-web2", "deploy-web3"]
PORTS = dict(zip(HOSTS, [18093, 18094, 18095], strict=True))
NAME, CA = "site.lab.test", SOURCES / "tls/ca.pem"
PAGE = "/polls/"
_RUNS: dict[str, object] = {}


def on(name):
    return testinfra.get_host(f"podman://{name}")


def db_address():
    return on("deploy-db1").run("hostname -I").stdout.split()[0]


def site(version, **extra):
    """The extra vars that describe the site behind the front door."""
    source = SOURCES / f"site-{version}"
    return {
        "asgi_app": "site",
        "asgi_entrypoint": "mysite.asgi:application",
        "asgi_lockfile": str(source / "requirements.lock"),
        "asgi_app_source": str(source),
        "asgi_listen_tcp": [],
        "asgi_listen_unix": "/run/site.sock",
        "asgi_proxy": True,
        "asgi_readiness_path": "/healthz",
        "asgi_static_dir": "venv/lib/python3*/site-packages/staticfiles",
        "proxy_server_names": [NAME],
        # The certificate as files on the hosts (what an ACME client keeps renewed).
        "proxy_tls_certificate_file": "/etc/ssl/asgi-lab-cert.pem",
        "proxy_tls_certificate_key_file": "/etc/ssl/asgi-lab-key.pem",
        "proxy_static_url": "/static/",
        "proxy_retry_after": 120,
        "proxy_gate": True,
        "proxy_gate_cafile": "/etc/ssl/asgi-lab-ca.pem",
        "service_environment": {
            "DJANGO_SETTINGS_MODULE": "mysite.settings",
            "DJANGO_ALLOWED_HOSTS": f"localhost,127.0.0.1,{NAME}",
            "DATABASE_URL": f"postgres://polls:polls-lab-password@{db_address()}:5432/site",
        },
        "service_secrets": {"django_secret_key": "lab-site-secret-key-not-for-production"},
        "asgi_build": "python -m django collectstatic --noinput",
        "asgi_before_switch": "python -m django migrate --noinput",
        "asgi_hook_show_output": True,
        "ansible_user": "deploy",
        "ansible_become": True,
        "version": version,
        **extra,
    }


def url(name, path=PAGE):
    return f"https://{NAME}:{PORTS[name]}{path}"


def ok(result):
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    return result


# What a page asks for itself (a browser's own favicon request is none of the page's).
ASSET_KINDS = ("Document", "Stylesheet", "Image", "Script", "Font")


def not_loaded(load):
    """The page's own requests that did not load: every asset answered other than 200, or not answered."""
    answered = [(u, s) for u, s, kind in load["responses"] if kind in ASSET_KINDS and s != 200]
    return answered + [failed for failed in load["failed"] if failed[0] in ASSET_KINDS]


def assets_of(html):
    """The hashed static files a page names (its stylesheet; the image the stylesheet names is its own request)."""
    return sorted(set(re.findall(r'(/static/[^"\']+)', html)))


@pytest.fixture(scope="module")
def old_page(playbook):
    """1.0.0 behind the front door on every host, and its page as a browser got it (HTML, screenshot)."""
    if _RUNS:
        return _RUNS
    ok(playbook(PROXY, site("1.0.0")))
    ok(playbook(DEPLOY, site("1.0.0")))
    SHOTS.mkdir(parents=True, exist_ok=True)
    with Browser(CA) as browser:
        loaded = browser.load(url("deploy-web1"))
        html = browser.html()
        browser.screenshot(SHOTS / "1.0.0-before.png")
    _RUNS.update(loaded=loaded, html=html)
    return _RUNS


def test_the_page_and_every_asset_it_names_load_through_the_front_door(old_page):
    loaded = old_page["loaded"]
    assert loaded["status"] == 200 and not not_loaded(loaded), loaded
    statics = [(u, s) for u, s, _kind in loaded["responses"] if "/static/" in u]
    # The stylesheet and the image it names, both under hashed names, both found.
    assert len(statics) == 2 and all(s == 200 for _u, s in statics), loaded["responses"]
    assert all(re.search(r"\.[0-9a-f]{12}\.(css|svg)$", u) for u, _s in statics), statics


def test_an_old_page_finds_every_asset_during_and_after_a_handover_that_renamed_them_all(old_page, playbook):
    html = old_page["html"]
    loads, stop = [], threading.Event()

    def keep_loading():
        # A browser holding 1.0.0's page, reloading it on every host in turn while the fleet moves to 2.0.0.
        with Browser(CA) as browser:
            while not stop.is_set():
                for name in HOSTS:
                    loads.append((name, browser.load(url(name), html=html)))

    watcher = threading.Thread(target=keep_loading, daemon=True)
    watcher.start()
    try:
        _wait_for(lambda: len(loads) >= len(HOSTS), timeout=60, what="the browser's first loads")
        moved = playbook(DEPLOY, site("2.0.0"))
    finally:
        stop.set()
        watcher.join(timeout=120)
    ok(moved)
    bad = [(name, not_loaded(r)) for name, r in loads if not_loaded(r)]
    assert len(loads) > len(HOSTS) and bad == [], bad[:5]
    with Browser(CA) as browser:
        after = browser.load(url("deploy-web2"), html=html)
        browser.screenshot(SHOTS / "1.0.0-after.png")
        new = browser.load(url("deploy-web2"))
        new_assets = assets_of(browser.html())
        browser.screenshot(SHOTS / "2.0.0.png")
    assert not not_loaded(after), after
    assert new["status"] == 200 and not not_loaded(new), new
    # The old page looks as it did; the new release's page has its own assets and looks different.
    assert differing_pixels(SHOTS / "1.0.0-before.png", SHOTS / "1.0.0-after.png") == 0.0
    assert differing_pixels(SHOTS / "1.0.0-before.png", SHOTS / "2.0.0.png") > 0.05
    assert set(new_assets).isdisjoint(assets_of(html)), (new_assets, assets_of(html))


def test_maintenance_shows_its_page_with_its_status_and_a_rollback_runs_under_it(old_page, playbook):
    ok(playbook(MAINTENANCE, site("2.0.0", maintenance="on")))
    try:
        with Browser(CA) as browser:
            shown = browser.load(url("deploy-web3"))
            text = browser.text()
            browser.screenshot(SHOTS / "maintenance.png")
        assert shown["status"] == 503 and "Down for maintenance" in text, (shown, text)
        context = httpx.create_ssl_context(verify=str(CA))
        for name in HOSTS:
            with httpx.Client(verify=context, timeout=10) as client:
                target = f"https://127.0.0.1:{PORTS[name]}"
                named = {"headers": {"Host": NAME}, "extensions": {"sni_hostname": NAME}}
                page = client.get(target + PAGE, **named)
                assert page.status_code == 503 and page.headers["retry-after"] == "120", (name, page.headers)
                assert client.get(target + "/healthz", **named).status_code == 200, name  # the gate still works
        status = ok(playbook(STATUS, site("2.0.0")))
        assert re.search(r"Maintenance: ON on deploy-web1, deploy-web2, deploy-web3", status.stdout), status.stdout
        ok(playbook(ROLLBACK, site("1.0.0")))  # through the front-door gate, under maintenance
        for name in HOSTS:
            assert on(name).run("readlink /srv/site/current").stdout.strip().startswith("releases/1.0.0-"), name
        events = [json.loads(line) for line in on("deploy-web1").file("/srv/site/deploys.log").content_string
                  .splitlines()]  # fmt: skip
        assert [e["state"] for e in events if e.get("event") == "maintenance"] == ["on"]
    finally:
        ok(playbook(MAINTENANCE, site("1.0.0", maintenance="off")))
    with Browser(CA) as browser:
        assert browser.load(url("deploy-web1"))["status"] == 200
