"""Deploy hooks run as the app runs: its user, environment, secrets and sandbox, from a release's venv."""

from __future__ import annotations

import json
import os

import pytest
from ansible_collections.asgi.deploy.plugins.module_utils.hooks import HookFailed, hook_argv, run_hook, unit_properties
from ansible_collections.asgi.deploy.plugins.module_utils.host import read_text
from fakes import make_release, stage_settings

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


class Run:
    def __init__(self, rc, out=""):
        self.rc, self.out, self.argv = rc, out, None

    def __call__(self, argv, **kwargs):
        self.argv = argv
        return type("Result", (), {"returncode": self.rc, "stdout": self.out, "stderr": ""})()


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
    assert argv[0] == "systemd-run" and "--wait" in argv
    assert argv[-3:] == ["/bin/sh", "-c", "python -m demo_app.migrate"]
    assert f"WorkingDirectory=/srv/demo/releases/{REL}" in argv
    assert f"Environment=PATH=/srv/demo/releases/{REL}/venv/bin:/usr/local/bin:/usr/bin:/bin" in argv
    assert "Environment=ASGI_HOOK=before_switch" in argv and "User=demo" in argv


def audit(app):
    return [json.loads(line) for line in read_text(app.audit).splitlines()]


def test_a_hook_that_succeeds_is_audited(app):
    make_release(app, REL)
    stage_settings(app, S1)
    result = run_hook(app, "after_switch", REL, S1, "curl -f localhost", run=Run(0, "ok"), event={"run": "r1"})
    assert (result["rc"], result["result"], result["output"]) == (0, "success", "ok")
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
        run_hook(app, "before_switch", REL, S1, "migrate", run=Run(3, "column missing"))
    assert failed.value.result["rc"] == 3
    assert audit(app)[-1]["result"] == "failed"


@pytest.mark.parametrize("missing", ["release", "settings"])
def test_a_hook_needs_its_release_and_settings_on_the_host(app, missing):
    if missing != "release":
        make_release(app, REL)
    if missing != "settings":
        stage_settings(app, S1)
    with pytest.raises(HookFailed, match=r"is not (built|staged) on this host"):
        run_hook(app, "before_switch", REL, S1, "migrate", run=Run(0))
    assert not os.path.exists(app.audit)
