"""Deploy hooks run as the app runs: its user, environment, secrets and sandbox, from a release's venv."""

from __future__ import annotations

import json
import os

import pytest
from ansible_collections.asgi.deploy.plugins.module_utils.hooks import HookFailed, hook_argv, run_hook
from ansible_collections.asgi.deploy.plugins.module_utils.host import read_text
from ansible_collections.asgi.deploy.plugins.module_utils.process import unit_properties
from ansible_collections.asgi.deploy.tests.unit.plugins.fakes import FakeRun, make_release, stage_settings

REL, S1 = "2.0.0-bbbb2222", "1" * 32
UNIT = """[Unit]
Requires=demo.socket
[Service]
User=demo
Group=demo
WorkingDirectory=/srv/demo/next
ExecStart=/srv/demo/next/venv/bin/gunicorn --config x demo_app.main:app
Environment="DB_URL=postgres://db/demo"
EnvironmentFile=/etc/asgi-deploy/demo/settings/x/secrets.env
LoadCredential=token:/etc/asgi-deploy/demo/settings/x/credentials/token
StateDirectory=demo
ProtectSystem=strict
Restart=no
[Install]
WantedBy=multi-user.target
"""


def Run(rc, output=""):
    """systemd-run as a hook sees it - exits with ``rc`` - and the hook's lines in the journal."""
    finished = "Finished with result: {}\n".format("success" if rc == 0 else "exit-code")
    return FakeRun([(("systemd-run",), (rc, "", finished)), (("journalctl", "--no-pager"), (0, output, ""))])


def test_a_hook_inherits_what_the_app_gets_and_nothing_about_how_it_is_served():
    assert unit_properties(UNIT) == [
        "User=demo",
        "Group=demo",
        'Environment="DB_URL=postgres://db/demo"',
        "EnvironmentFile=/etc/asgi-deploy/demo/settings/x/secrets.env",
        "LoadCredential=token:/etc/asgi-deploy/demo/settings/x/credentials/token",
        "StateDirectory=demo",
        "ProtectSystem=strict",
    ]


def test_the_command_runs_from_the_release_with_its_venv_first_on_the_path(app):
    argv = hook_argv(app, "before_switch", "/srv/demo/releases/" + REL, UNIT, "python -m demo_app.migrate")
    assert argv[0] == "systemd-run" and "--wait" in argv and "--pipe" not in argv  # the output goes to the journal
    assert argv[-3:] == ["/bin/sh", "-c", "python -m demo_app.migrate"]
    assert f"WorkingDirectory=/srv/demo/releases/{REL}" in argv
    assert f"Environment=PATH=/srv/demo/releases/{REL}/venv/bin:/usr/local/bin:/usr/bin:/bin" in argv
    assert "Environment=ASGI_HOOK=before_switch" in argv and "User=demo" in argv


def audit(app):
    return [json.loads(line) for line in read_text(app.audit).splitlines()]


def test_a_hook_that_succeeds_is_audited(app):
    make_release(app, REL)
    stage_settings(app, S1)
    result = run_hook(app, "after_switch", REL, S1, "curl -f localhost", Run(0, "ok"), event={"run": "r1"})
    assert (result["rc"], result["result"], "output" in result) == (0, "success", False)
    [line] = audit(app)
    assert (line["event"], line["hook"], line["release"], line["result"], line["run"]) == (
        "hook",
        "after_switch",
        REL,
        "success",
        "r1",
    )


def test_a_hook_that_fails_says_so_with_its_output_and_is_audited(app):
    make_release(app, REL)
    stage_settings(app, S1)
    with pytest.raises(HookFailed, match=r"(?s)hook before_switch failed \(exit 3\).*column missing") as failed:
        run_hook(
            app, "before_switch", REL, S1, "migrate", Run(3, "Traceback:\n  ...\ncolumn missing"), show_output=True
        )
    assert failed.value.result["rc"] == 3
    assert audit(app)[-1]["result"] == "failed" and audit(app)[-1]["output"].endswith("column missing")


def test_a_hook_not_marked_safe_to_show_keeps_its_output_in_the_journal_only(app):
    make_release(app, REL)
    stage_settings(app, S1)
    with pytest.raises(HookFailed) as failed:
        run_hook(app, "before_switch", REL, S1, "migrate", Run(3, "password=hunter2"))
    assert "hunter2" not in str(failed.value) and "journalctl -u asgi-hook-demo-before-switch.service" in str(
        failed.value
    )
    assert "hunter2" not in read_text(app.audit)
    assert oct(os.stat(app.audit).st_mode & 0o777) == "0o640"


def test_a_hook_that_runs_too_long_is_stopped_at_its_time_limit(app):
    make_release(app, REL)
    stage_settings(app, S1)
    run = FakeRun([(("systemd-run",), (1, "", "Finished with result: timeout\n"))])
    with pytest.raises(HookFailed, match=r"stopped at its time limit \(30s, asgi_hook_timeout\)"):
        run_hook(app, "before_switch", REL, S1, "migrate", run, timeout_s=30)
    [argv] = run.commands("systemd-run")
    assert "RuntimeMaxSec=30" in argv
    assert audit(app)[-1]["result"] == "timeout"


def test_a_hook_of_an_earlier_run_still_running_is_never_run_beside(app):
    make_release(app, REL)
    stage_settings(app, S1)
    busy = "Failed to start transient service unit: Unit asgi-hook-demo-before-switch.service already exists.\n"
    with pytest.raises(HookFailed, match="of an earlier run is still running"):
        run_hook(app, "before_switch", REL, S1, "migrate", FakeRun([(("systemd-run",), (1, "", busy))]))


@pytest.mark.parametrize("missing", ["release", "settings"])
def test_a_hook_needs_its_release_and_settings_on_the_host(app, missing):
    if missing != "release":
        make_release(app, REL)
    if missing != "settings":
        stage_settings(app, S1)
    with pytest.raises(HookFailed, match=r"is not (built|staged) on this host"):
        run_hook(app, "before_switch", REL, S1, "migrate", Run(0))
    assert not os.path.exists(app.audit)
