"""Deploys and rollbacks under continuous load on three hosts: zero failed requests.

The phases run once (the first test that needs them), in order; the report goes
to build/reports/deploy-load.json.
"""

import json
import os
import re
import statistics
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import matplotlib.image as mpimg
import pytest
import testinfra

PROJECT = Path(os.environ["MOLECULE_PROJECT_DIRECTORY"])
sys.path.insert(0, str(PROJECT / "bench"))
from loadgen import Load  # noqa: E402 (the one load generator: locust, per request)

PLAYBOOKS = PROJECT / "playbooks"
REPORT = PROJECT / "build/reports/deploy-load.json"
TARGETS = [f"http://127.0.0.1:{port}" for port in (18081, 18082, 18083)]
SOURCES = PROJECT / "build/molecule-deploy"
PHASES = [
    ("steady", "status.yml", {}),
    ("redeploy_v1_no_change", "deploy.yml", {"version": "1.0.0"}),
    ("deploy_v2_handover", "deploy.yml", {"version": "2.0.0", "app_source": str(SOURCES / "app-2.0.0")}),
    ("rollback_v1_handover", "rollback.yml", {"version": "1.0.0"}),
    ("rollback_v2_handover", "rollback.yml", {"version": "2.0.0"}),
    (
        "deploy_v3_restart",
        "deploy.yml",
        {"version": "3.0.0", "app_source": str(SOURCES / "app-3.0.0"), "strategy": "restart"},
    ),
]
_RESULTS = {}
_OUTPUTS = {}


@pytest.fixture(scope="session")
def phases(playbook):
    if _RESULTS:
        return _RESULTS
    report = {}
    with Load(TARGETS, users=4, rate=80) as load:
        for name, book, extra in PHASES:
            began = load.now()
            result = playbook(PLAYBOOKS / book, extra)
            report[name] = {
                **load.window(began, load.now()),
                "playbook": book,
                "playbook_wall_s": round(load.now() - began, 1),
            }
            assert result.returncode == 0, f"{name}: {book} failed:\n{(result.stdout + result.stderr)[-4000:]}"
            _OUTPUTS[name] = result.stdout
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(
        json.dumps(
            {
                "conditions": {
                    "hosts": 3,
                    "gunicorn_workers_per_host": 2,
                    "locust_users": 4,
                    "target": "GET /version round-robin over 127.0.0.1:18081-18083",
                    "machine": f"{os.cpu_count()} cores",
                },
                "phases": report,
            },
            indent=2,
        )
    )
    _RESULTS.update(report)
    return _RESULTS


@pytest.mark.parametrize("name", [p[0] for p in PHASES])
def test_no_request_fails_during_the_phase(phases, name):
    report = phases[name]
    print(name, report)
    assert report["requests"] > 50, report
    assert report["failures"] == 0, report


def test_a_deploy_of_the_live_release_skips_every_host_after_one_probe(phases):
    output = _OUTPUTS["redeploy_v1_no_change"]
    assert "changed=0" in output
    assert "changed=1" not in output
    assert "deploy: no host needed a change (3 checked" in output
    # Nothing past the checks ran: no lock, no build, no settings, no handover.
    assert output.count("skipping: no hosts matched") == 1
    assert "TASK [asgi.deploy.rollout : Roll | Hand over" not in output
    assert "TASK [asgi.deploy.service : Build | Stage the settings set and build the release" not in output


def test_each_host_ends_on_the_last_deployed_release(host, phases):
    live = host.run("readlink /srv/demo/current").stdout.strip()
    assert live.startswith("releases/3.0.0-")
    version = json.loads(host.run("curl -fsS http://127.0.0.1:8000/version").stdout)
    assert version["release_id"] == live.removeprefix("releases/")
    # Read from the file the collection named in ASGI_RELEASE_MANIFEST: the release itself, not a moving link.
    assert version["manifest"] == f"/srv/demo/{live}/release.json"


def test_the_audit_log_has_a_line_per_handover(host, phases):
    events = [json.loads(line) for line in host.file("/srv/demo/deploys.log").content_string.splitlines()]
    # Each handover once; each run's lock taken and released around it.
    lines = [e for e in events if "to" in e]
    assert {e["event"] for e in events} - {"deploy", "rollback"} <= {"lock", "unlock"}
    moves = [(line["event"], line["to"].split("-")[0], line["strategy"], line["result"]) for line in lines]
    assert moves == [
        ("deploy", "1.0.0", "initial", "success"),
        ("deploy", "2.0.0", "handover", "success"),
        ("rollback", "1.0.0", "handover", "success"),
        ("rollback", "2.0.0", "handover", "success"),
        ("deploy", "3.0.0", "restart", "success"),
    ]
    assert all(line["actor"] and line["run"] and line["duration_s"] > 0 for line in lines)
    assert lines[0]["from"] == ""
    assert [line["from"] for line in lines[1:]] == [line["to"] for line in lines[:-1]]


def test_no_lock_is_left_behind_and_only_the_live_slot_serves(host, phases):
    assert not host.file("/srv/demo/deploy.lock").exists
    live = host.file("/etc/systemd/system/demo.service").linked_to.rsplit("/", 1)[1]
    idle = {"demo-blue.service": "demo-green.service", "demo-green.service": "demo-blue.service"}[live]
    assert host.service(live).is_running
    assert host.run("systemctl is-active %s", idle).stdout.strip() in ("inactive", "deactivating")


def test_each_handover_started_the_app_once(host, phases):
    # One start line per Gunicorn master: the first deploy, two handovers, two rollbacks' handovers, one restart.
    starts = host.run("journalctl --no-pager -o cat -t demo --grep 'asgi.deploy start'").stdout.splitlines()
    releases = [json.loads(line.split("asgi.deploy start ", 1)[1])["version"] for line in starts]
    assert releases == ["1.0.0", "2.0.0", "1.0.0", "2.0.0", "3.0.0"], releases


def test_an_unknown_version_is_refused_listing_the_kept_ones_and_nothing_changes(host, playbook, phases):
    before = host.run("readlink /srv/demo/current").stdout
    result = playbook(PLAYBOOKS / "rollback.yml", {"version": "9.9.9"})
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "version 9.9.9 is not kept on deploy-web1; kept versions: 1.0.0, 2.0.0, 3.0.0" in output
    assert "Nothing was changed" in output
    assert host.run("readlink /srv/demo/current").stdout == before
    assert not host.file("/srv/demo/deploy.lock").exists


# What the phases left on the hosts, proven: releases as built (verify.yml), the team's metrics (report.yml).


def on(name):
    return testinfra.get_host(f"podman://{name}")


def kept_releases(name):
    return sorted(on(name).run("ls /srv/demo/releases").stdout.split())


def test_the_debian_12_hosts_built_byte_identical_venvs_for_each_release(phases):
    for release in kept_releases("deploy-web1"):
        digests = {
            name: json.loads(on(name).file(f"/srv/demo/releases/{release}/release.json").content_string)["tree_sha256"]
            for name in ("deploy-web1", "deploy-web3")
        }
        assert len(set(digests.values())) == 1, (release, digests)


def test_verify_finds_a_one_byte_change_to_a_kept_release_and_nothing_once_it_is_undone(phases, playbook, tmp_path):
    as_built = playbook(PLAYBOOKS / "verify.yml", {"asgi_report": str(tmp_path)})
    assert as_built.returncode == 0, as_built.stdout[-3000:]
    for name in ("deploy-web1", "deploy-web2", "deploy-web3"):
        assert f"{name}: 3 release(s) as built" in as_built.stdout
    # One byte of the oldest kept release's app code on web2, as a hand edit or a bad disk would leave it.
    web2 = on("deploy-web2")
    release = kept_releases("deploy-web2")[0]
    (path,) = web2.run(f"find /srv/demo/releases/{release}/venv -path '*demo_app/main.py'").stdout.split()
    flip = "import sys; f = open(sys.argv[1], 'r+b'); f.seek(10); b = f.read(1); f.seek(10); f.write(bytes([b[0] ^ 1]))"
    assert web2.run("python3 -c %s %s", flip, path).rc == 0
    try:
        found = playbook(PLAYBOOKS / "verify.yml", {"asgi_report": str(tmp_path)})
        assert found.returncode != 0
        relative = path.removeprefix(f"/srv/demo/releases/{release}/")
        assert f"deploy-web2: {release}: 1 file(s) modified: {relative}" in found.stdout, found.stdout[-3000:]
        assert "deploy-web1: 3 release(s) as built" in found.stdout
        report = json.loads((tmp_path / "verify-deploy-web2.json").read_text())
        assert any(relative in finding for finding in report["findings"])
    finally:
        assert web2.run("python3 -c %s %s", flip, path).rc == 0  # the same bit back
    again = playbook(PLAYBOOKS / "verify.yml", {"asgi_report": str(tmp_path)}, limit="deploy-web2")
    assert again.returncode == 0, again.stdout[-3000:]


def test_verify_with_rebuild_builds_each_release_again_to_the_same_bytes(phases, playbook, tmp_path):
    rebuilt = playbook(
        PLAYBOOKS / "verify.yml", {"asgi_rebuild": True, "asgi_report": str(tmp_path)}, limit="deploy-web1"
    )
    assert rebuilt.returncode == 0, rebuilt.stdout[-3000:]
    assert re.search(r"deploy-web1: 3 release\(s\) as built and rebuilt to the same bytes", rebuilt.stdout)


def runs_in_the_audit_logs():
    """Every run that moved a host, from the raw audit lines of the three hosts: operation, start, end."""
    runs = {}
    for name in ("deploy-web1", "deploy-web2", "deploy-web3"):
        for raw in on(name).file("/srv/demo/deploys.log").content_string.splitlines():
            event = json.loads(raw)
            if not event.get("run"):
                continue
            run = runs.setdefault(event["run"], {"times": [], "operation": None})
            run["times"].append(event["time"][:19])
            if event["event"] in ("deploy", "rollback") and "to" in event:
                run["operation"] = event["event"]
    return [r for r in runs.values() if r["operation"]]


def test_report_prints_the_metrics_of_the_phases_and_a_browser_shows_its_plots(phases, playbook, tmp_path):
    page = tmp_path / "metrics.html"
    result = playbook(PLAYBOOKS / "report.yml", {"asgi_report": str(page), "asgi_period": "day"})
    assert result.returncode == 0, result.stdout[-3000:]
    runs = runs_in_the_audit_logs()
    deploys = [r for r in runs if r["operation"] == "deploy"]
    rollbacks = [r for r in runs if r["operation"] == "rollback"]
    assert (len(deploys), len(rollbacks)) == (3, 2)  # 1.0.0, 2.0.0, 3.0.0; back to 1.0.0, forward to 2.0.0
    days = len({min(r["times"])[:10] for r in runs})  # the scenario may run across midnight
    assert f"demo: {len(deploys)} deploy run(s) and {len(rollbacks)} rollback(s) over {days} day(s)" in result.stdout
    # The rollback to 1.0.0 undid 2.0.0: one of three deploys was a failed change.
    assert re.search(r"change failure rate +33%", result.stdout), result.stdout[-2000:]

    def seconds(run):
        first, last = (datetime.strptime(t, "%Y-%m-%dT%H:%M:%S") for t in (min(run["times"]), max(run["times"])))
        return (last - first).total_seconds()

    median = statistics.median(seconds(r) for r in deploys)
    assert re.search(rf"deploy duration +median {median / 60:.1f} min", result.stdout), result.stdout[-2000:]
    # The page, in a real browser: its two plots drawn in their colours.
    shot = tmp_path / "metrics.png"
    subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=800,1000",
         f"--screenshot={shot}", page.as_uri()],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    pixels = (mpimg.imread(shot)[:, :, :3] * 255).round().astype(int).reshape(-1, 3).tolist()
    colours = {tuple(p) for p in pixels}
    for name, rgb in (("deploy bars", (0x2A, 0x7A, 0xB0)), ("rollback bars", (0xC0, 0x39, 0x2B)),
                      ("duration line", (0x27, 0xAE, 0x60))):  # fmt: skip
        assert rgb in colours, f"the screenshot shows no {name}"
