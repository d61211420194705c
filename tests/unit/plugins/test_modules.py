"""The modules as Ansible runs them: arguments in, JSON out, check mode honoured."""

from __future__ import annotations

import functools
import grp
import json
import os
import sys

import pytest
from ansible.module_utils.testing import patch_module_args
from ansible_collections.asgi.deploy.plugins.module_utils import hooks as hooks_utils
from ansible_collections.asgi.deploy.plugins.module_utils.gate import Gate
from ansible_collections.asgi.deploy.plugins.module_utils.host import App, link_target, read_text
from ansible_collections.asgi.deploy.plugins.modules import handover, hook, lock, release, settings, state
from fakes import FakeSystemd, make_release, stage_settings

OLD, NEW = "1.0.0-aaaa1111", "2.0.0-bbbb2222"


@pytest.fixture
def host(tmp_path, monkeypatch, app):
    """Point every module at the test's directories and systemd model."""
    fake = FakeSystemd(app)
    bound = functools.partial(App, config_dir=app.config.rsplit("/", 1)[0], unit_dir=app.unit_dir, run_dir=app.run_dir)
    for module in (handover, hook, lock, release, settings, state):
        monkeypatch.setattr(module, "App", bound, raising=False)
        monkeypatch.setattr(module, "Systemd", lambda: fake, raising=False)
    return fake


def run(module, capsys, **args):
    with patch_module_args(args), pytest.raises(SystemExit) as exited:
        module.main()
    out = json.loads(capsys.readouterr().out)
    out["rc"] = exited.value.code
    return out


def base(app):
    return {"app": "demo", "base_dir": os.path.dirname(app.root)}


def test_state_reads_the_host_and_says_what_it_needs(app, host, capsys):
    result = run(state, capsys, **base(app), release=NEW, settings="s", python="/nonexistent")
    assert result["rc"] == 1 and "does not run on this host" in result["msg"]
    result = run(state, capsys, **base(app), release=NEW, settings="s", python=sys.executable)
    assert result["rc"] == 0 and result["changed"] is False
    assert result["needs"] == ["first deploy", "settings none -> s"]
    result = run(state, capsys, **base(app), min_free_mb=10**9)
    assert result["rc"] == 1 and "MB free" in result["msg"]


def test_lock_takes_refuses_and_releases(app, host, capsys):
    taken = run(lock, capsys, **base(app), run="r1", actor="ops", python="/nonexistent")
    assert taken["changed"] and taken["host_state"]["lock"]["run"] == "r1"
    held = run(lock, capsys, **base(app), run="r2")
    assert held["rc"] == 1 and "deploy lock held by run r1 by ops" in held["msg"]
    checked = run(lock, capsys, **base(app), run="r2", _ansible_check_mode=True)
    assert checked["rc"] == 1
    released = run(lock, capsys, **base(app), run="r1", state="absent")
    assert released["changed"] and not os.path.exists(app.lock)


def test_settings_stages_a_set_in_one_call_and_check_mode_writes_nothing(app, host, capsys):
    files = {"gunicorn.conf.py": {"content": "workers = 2\n"}}
    group = grp.getgrgid(os.getgid()).gr_name
    checked = run(settings, capsys, **base(app), digest="a" * 32, files=files, group=group, _ansible_check_mode=True)
    assert checked["changed"] and not os.path.exists(app.settings_root)
    staged = run(settings, capsys, **base(app), digest="a" * 32, files=files, group=group, verify=False)
    assert staged["changed"] and staged["path"].endswith("a" * 32)
    again = run(settings, capsys, **base(app), digest="a" * 32, files=files, group=group, verify=False)
    assert again["changed"] is False
    bad = run(
        settings, capsys, **base(app), digest="b" * 32, files={"x.py": {"content": "("}}, group=group, verify=False
    )
    assert bad["rc"] == 1 and "not valid" in bad["msg"]


def test_handover_switches_reports_steps_and_fails_with_step_check_and_journal(app, host, capsys, monkeypatch):
    make_release(app, OLD)
    make_release(app, NEW)
    stage_settings(app, "1" * 32)
    monkeypatch.setattr(handover, "Gate", functools.partial(Gate, get=host.get, sleep=lambda s: None))
    args = {**base(app), "settings": "1" * 32, "readiness_timeout": 1}
    first = run(handover, capsys, **args, release=OLD)
    assert first["rc"] == 0 and first["strategy"] == "initial"
    checked = run(handover, capsys, **args, release=NEW, _ansible_check_mode=True)
    assert checked["changed"] and checked["change"] == "release" and link_target(app.link("current")) == OLD
    host.broken.add(NEW)
    failed = run(handover, capsys, **args, release=NEW)
    assert failed["rc"] == 1 and failed["step"] == "gate next" and failed["check"] == "start"
    assert failed["journal"] == "journal of demo-next.service" and failed["result"] == "reverted"
    host.broken.clear()
    done = run(handover, capsys, **args, release=NEW)
    assert done["rc"] == 0 and [s for s, _ in done["steps"]][-1] == "stop next"
    assert run(handover, capsys, **args, release=NEW)["changed"] is False


def test_release_in_check_mode_reports_a_build_and_refuses_a_small_keep(app, host, capsys):
    checked = run(release, capsys, **base(app), release_id=NEW, user="demo", group="demo", _ansible_check_mode=True)
    assert checked["changed"] and checked["built"]
    small = run(release, capsys, **base(app), release_id=NEW, user="demo", group="demo", keep=1)
    assert small["rc"] == 1 and "at least 2" in small["msg"]


def test_release_never_rebuilds_a_finished_release_and_can_switch_to_it(app, host, capsys, monkeypatch):
    make_release(app, OLD)
    make_release(app, NEW)
    monkeypatch.setattr(release, "ensure_user", lambda *a, **k: False)
    result = run(release, capsys, **base(app), release_id=NEW, user="demo", group="demo", switch=True)
    assert result["rc"] == 0 and result["built"] is False and result["changed"]
    assert link_target(app.link("current")) == NEW
    assert read_text(os.path.join(app.release_dir(NEW), "release.json"))


def test_hook_runs_as_the_app_is_audited_and_fails_with_the_output(app, host, capsys, monkeypatch):
    make_release(app, NEW)
    stage_settings(app, "1" * 32)
    ran = []

    def systemd_run(argv, **kwargs):
        ran.append(argv)
        rc = 0 if argv[-1] == "true" else 4
        return type("Result", (), {"returncode": rc, "stdout": "migrating\n", "stderr": "no such table\n"})()

    monkeypatch.setattr(hooks_utils.subprocess, "run", systemd_run)
    args = {**base(app), "name": "before_switch", "release": NEW, "settings": "1" * 32, "operation": "rollback"}
    checked = run(hook, capsys, **args, command="true", _ansible_check_mode=True)
    assert checked["changed"] and not ran
    done = run(hook, capsys, **args, command="true")
    assert done["rc"] == 0 and done["result"] == "success" and "Environment=ASGI_OPERATION=rollback" in ran[-1]
    failed = run(hook, capsys, **args, command="python -m app.migrate")
    assert failed["rc"] == 1 and failed["result"] == "failed" and "no such table" in failed["msg"]
    assert [json.loads(line)["result"] for line in read_text(app.audit).splitlines()] == ["success", "failed"]
