"""The modules as Ansible runs them: arguments in, JSON out, check mode honoured."""

from __future__ import annotations

import functools
import grp
import json
import os
import sys

import pytest
from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.testing import patch_module_args
from ansible_collections.asgi.deploy.plugins.module_utils import locking
from ansible_collections.asgi.deploy.plugins.module_utils import settings as settings_utils
from ansible_collections.asgi.deploy.plugins.module_utils.gate import Gate
from ansible_collections.asgi.deploy.plugins.module_utils.host import (
    App,
    link_target,
    read_made,
    read_text,
    record_made,
)
from ansible_collections.asgi.deploy.plugins.modules import handover, hook, lock, release, remove, settings, state
from ansible_collections.asgi.deploy.tests.unit.plugins.fakes import FakeRun, FakeSystemd, make_release, stage_settings

OLD, NEW = "1.0.0-aaaa1111", "2.0.0-bbbb2222"


@pytest.fixture
def commands(monkeypatch):
    """Every program a module runs (AnsibleModule.run_command), answered by a fake."""
    fake = FakeRun()
    monkeypatch.setattr(AnsibleModule, "run_command", lambda self, argv, **kwargs: fake(argv, **kwargs))
    return fake


@pytest.fixture
def host(tmp_path, monkeypatch, app, commands):
    """Point every module at the test's directories and systemd model; the handover runs in-process."""
    fake = FakeSystemd(app)
    bound = functools.partial(App, config_dir=app.config.rsplit("/", 1)[0], unit_dir=app.unit_dir, run_dir=app.run_dir)
    for module in (handover, hook, lock, release, settings, state):
        monkeypatch.setattr(module, "App", bound, raising=False)
        monkeypatch.setattr(module, "Systemd", lambda run: fake, raising=False)
    monkeypatch.setattr(handover, "detached", lambda work, **_where: work())
    return fake


def run(module, capsys, **args):
    with patch_module_args(args), pytest.raises(SystemExit) as exited:
        module.main()
    out = json.loads(capsys.readouterr().out)
    out["rc"] = exited.value.code
    return out


def base(app):
    return {"app": "demo", "base_dir": os.path.dirname(app.root)}


def locked(app, run_id="r1"):
    locking.take(app, run_id, actor="ops")


def test_state_reads_the_host_and_assesses_it(app, host, capsys):
    result = run(state, capsys, **base(app), release=NEW, settings="s", python="/nonexistent")
    assert result["rc"] == 1 and "does not run on this host" in result["msg"]
    result = run(state, capsys, **base(app), release=NEW, settings="s", python=sys.executable)
    assert result["rc"] == 0 and result["changed"] is False
    assert result["assessment"]["reasons"] == ["first deploy"] and result["assessment"]["needed"]
    assert result["space"]["fits"]
    result = run(state, capsys, **base(app), release=NEW, settings="s", python=sys.executable, min_free_mb=10**9)
    assert result["rc"] == 1 and "does not fit" in result["msg"] and "release_keep" in result["msg"]
    keyed = run(
        state,
        capsys,
        **base(app),
        release=NEW,
        settings_public="p",
        secrets={"k": "s3cr3t-value"},
        python=sys.executable,
    )
    assert keyed["settings_id"] == "" and keyed["assessment"]["needed"]
    assert "s3cr3t-value" not in json.dumps(keyed)  # secrets are never shown


def test_lock_takes_refuses_takes_over_a_named_run_and_releases(app, host, capsys):
    taken = run(lock, capsys, **base(app), run="r1", actor="ops", python="/nonexistent", settings_public="p")
    assert taken["changed"] and taken["host_state"]["lock"]["run"] == "r1" and len(taken["settings_id"]) == 32
    held = run(lock, capsys, **base(app), run="r2")
    assert held["rc"] == 1 and "deploy lock held by run r1 by ops" in held["msg"]
    checked = run(lock, capsys, **base(app), run="r2", _ansible_check_mode=True)
    assert checked["rc"] == 1
    over = run(lock, capsys, **base(app), run="r2", take_over="r1", python="/nonexistent")
    assert over["changed"] and over["forced"] and over["holder"]["run"] == "r1"
    released = run(lock, capsys, **base(app), run="r2", state="absent")
    assert released["changed"] and not os.path.exists(app.lock)


def needed(app, capsys, **more):
    args = {**base(app), "state": "needed", "run": "r1", "release": NEW, "python": sys.executable, **more}
    return run(lock, capsys, **args)


def test_lock_where_needed_reads_assesses_and_locks_only_a_host_that_needs_a_change(app, host, capsys):
    make_release(app, OLD)
    stage_settings(app, "1" * 32)
    first = needed(app, capsys, settings_public="p")
    assert first["rc"] == 0 and first["locked"] and first["changed"] and first["held_by"] is None
    assert first["host_state"]["assessment"]["reasons"] == ["first deploy"] and len(first["settings_id"]) == 32
    assert locking.read_lock(app)["run"] == "r1"
    # Another live run's lock is a result, not a failure: the controller decides which run goes on.
    other = needed(app, capsys, run="r2")
    assert other["rc"] == 0 and not other["locked"] and other["held_by"]["run"] == "r1"
    # The same run's lock, named by the user (force_unlock), is taken over, naming it.
    named = needed(app, capsys, run="r2", force="r1", reason="force_unlock")
    assert named["locked"] and named["forced"] and named["holder"]["run"] == "r1"
    locking.unlock(app, "r2")


def test_lock_where_needed_waits_for_a_later_run_to_let_go_and_never_for_an_earlier_one(app, host, capsys, monkeypatch):
    make_release(app, OLD)
    stage_settings(app, "1" * 32)
    locking.take(app, "later", started=2000.0)
    slept = []

    def later_lets_go(seconds):
        slept.append(seconds)
        locking.unlock(app, "later")

    monkeypatch.setattr(locking.time, "sleep", later_lets_go)
    earlier = needed(app, capsys, run="earlier", started=1000.0, settings_public="p")
    assert earlier["locked"] and earlier["held_by"] is None and slept == [1.0]
    assert locking.read_lock(app)["run"] == "earlier"
    # The later run is told at once who holds the host (it yields): it never waits for the earlier one.
    later = needed(app, capsys, run="later", started=2000.0)
    assert not later["locked"] and later["held_by"]["run"] == "earlier" and slept == [1.0]
    locking.unlock(app, "earlier")


def live_on_new(app, host, capsys, monkeypatch):
    """A host that runs NEW (OLD kept), handed over by a run that has finished and let go of its lock."""
    monkeypatch.setattr(handover, "Gate", functools.partial(Gate, get=host.get, sleep=lambda s: None))
    make_release(app, OLD)
    make_release(app, NEW)
    stage_settings(app, "1" * 32)
    locked(app, "r0")
    assert run(handover, capsys, **base(app), settings="1" * 32, run="r0", release=NEW, unlock=True)["rc"] == 0


def test_lock_where_needed_leaves_a_host_that_needs_nothing_unlocked_and_clears_a_dead_runs_lock(
    app, host, capsys, monkeypatch
):
    live_on_new(app, host, capsys, monkeypatch)
    quiet = needed(app, capsys)
    assert quiet["rc"] == 0 and not quiet["locked"] and not quiet["changed"] and not os.path.exists(app.lock)
    # A lock of this controller whose process is gone (its PID not among the live ones) on a host that needs nothing.
    locking.take(app, "dead1", actor="ops", controller_id="me", pid=4242)
    cleared = needed(app, capsys, alive={"controller_id": "me", "pids": [1], "certain": True})
    assert cleared["changed"] and cleared["forced"] and not os.path.exists(app.lock)
    assert [e["event"] for e in map(json.loads, read_text(app.audit).splitlines())][-1] == "force_unlock"
    # ...but not when the controller could not see every process.
    locking.take(app, "dead2", actor="ops", controller_id="me", pid=4242)
    kept = needed(app, capsys, alive={"controller_id": "me", "pids": [1], "certain": False})
    assert not kept["changed"] and locking.read_lock(app)["run"] == "dead2"


def test_a_rollback_locks_every_host_it_reads_since_the_fleets_histories_choose_its_target(
    app, host, capsys, monkeypatch
):
    live_on_new(app, host, capsys, monkeypatch)
    # A deploy of the live release needs nothing here; a rollback (no release yet) locks and reads under the lock.
    assert not needed(app, capsys)["locked"]
    back = needed(app, capsys, release="", operation="rollback")
    assert back["locked"] and back["host_state"]["live"] == NEW and "space" not in back["host_state"]
    assert locking.read_lock(app)["run"] == "r1" and locking.read_lock(app)["operation"] == "rollback"
    held = needed(app, capsys, run="r2", release="", operation="rollback")
    assert not held["locked"] and held["held_by"]["run"] == "r1"


def test_lock_waits_for_a_hook_an_earlier_run_left_running_and_stops_only_the_forced_runs(app, host, capsys):
    mine, theirs = "asgi-hook-demo-before-switch.service", "asgi-hook-demo-exec.service"
    host.transient += [mine, theirs]
    host.descriptions.update({mine: "asgi.deploy hook before_switch of demo (run r0)",
                              theirs: "asgi.deploy hook exec of demo (run r7)"})  # fmt: skip
    busy = run(lock, capsys, **base(app), run="r1", python="/nonexistent", hook_wait=0)
    assert busy["rc"] == 1 and "hooks of an earlier run are still running" in busy["msg"]
    locking.unlock(app, "r1")
    locking.take(app, "r0", actor="ops")
    # The user forced r0's lock: r0's hook is stopped, audited; r7's (another run's) is still waited for.
    waited = run(lock, capsys, **base(app), run="r1", python="/nonexistent", take_over="r0", reason="force_unlock",
                 stop_hooks=True, hook_wait=0)  # fmt: skip
    assert waited["rc"] == 1 and theirs in waited["msg"] and host.transient == [theirs]
    stopped = [e for e in map(json.loads, read_text(app.audit).splitlines()) if e["event"] == "hook_stopped"]
    assert [(e["unit"], e["of_run"], e["run"]) for e in stopped] == [(mine, "r0", "r1")]


def test_settings_stages_a_set_for_the_run_holding_the_lock_only(app, host, capsys, monkeypatch):
    monkeypatch.setattr(settings_utils, "ensure_user", lambda *a, **k: False)
    files = {"gunicorn.conf.py": {"content": "workers = 2\n"}}
    group = grp.getgrgid(os.getgid()).gr_name
    args = {**base(app), "digest": "a" * 32, "files": files, "user": "demo", "group": group, "run": "r1"}
    checked = run(settings, capsys, **args, _ansible_check_mode=True)
    assert checked["changed"] and not os.path.exists(app.settings_root)
    refused = run(settings, capsys, **args, verify=False)
    assert refused["rc"] == 1 and "does not hold the deploy lock" in refused["msg"]
    locked(app)
    staged = run(settings, capsys, **args, verify=False)
    assert staged["changed"] and staged["path"].endswith("a" * 32)
    assert run(settings, capsys, **args, verify=False)["changed"] is False
    bad = run(settings, capsys, **{**args, "digest": "b" * 32, "files": {"x.py": {"content": "("}}}, verify=False)
    assert bad["rc"] == 1 and "not valid" in bad["msg"]


def test_handover_switches_reports_steps_and_fails_with_step_check_and_journal(app, host, capsys, monkeypatch):
    make_release(app, OLD)
    make_release(app, NEW)
    stage_settings(app, "1" * 32)
    monkeypatch.setattr(handover, "Gate", functools.partial(Gate, get=host.get, sleep=lambda s: None))
    args = {**base(app), "settings": "1" * 32, "readiness_timeout": 1, "run": "r1"}
    refused = run(handover, capsys, **args, release=OLD)
    assert refused["rc"] == 1 and refused["check"] == "lock"
    locked(app)
    first = run(handover, capsys, **args, release=OLD)
    assert first["rc"] == 0 and first["strategy"] == "initial"
    checked = run(handover, capsys, **args, release=NEW, _ansible_check_mode=True)
    assert checked["changed"] and checked["change"] == "release" and link_target(app.link("current")) == OLD
    assert checked["reasons"] == [f"release {OLD} -> {NEW}"]
    host.broken.add(NEW)
    failed = run(handover, capsys, **args, release=NEW)
    assert failed["rc"] == 1 and failed["step"] == "gate" and failed["check"] == "start"
    assert failed["journal"] == ["journal of demo-green.service"] and failed["result"] == "reverted"
    host.broken.clear()
    done = run(handover, capsys, **args, release=NEW, unlock=True)
    assert done["rc"] == 0 and [pair[0] for pair in done["steps"]][-1] == "drain" and done["unlocked"]
    locked(app, "r2")
    assert run(handover, capsys, **{**args, "run": "r2"}, release=NEW)["changed"] is False


def test_release_in_check_mode_reports_a_build_and_refuses_a_small_keep_or_the_service_user_as_owner(app, host, capsys):
    args = {**base(app), "release_id": NEW, "user": "demo", "group": "demo", "run": "r1", "uv_version": "0.9.0"}
    checked = run(release, capsys, **args, _ansible_check_mode=True)
    assert checked["changed"] and checked["built"]
    small = run(release, capsys, **args, keep=1)
    assert small["rc"] == 1 and "at least 2" in small["msg"]
    owned = run(release, capsys, **args, owner="demo")
    assert owned["rc"] == 1 and "must not be the service user" in owned["msg"]


def test_release_never_rebuilds_a_finished_release_and_can_switch_to_it(app, host, capsys, monkeypatch):
    make_release(app, OLD)
    make_release(app, NEW)
    monkeypatch.setattr(release, "ensure_user", lambda *a, **k: False)
    args = {**base(app), "release_id": NEW, "user": "demo", "group": "demo", "run": "r1", "uv_version": "0.9.0"}
    assert run(release, capsys, **args)["rc"] == 1  # not locked
    locked(app)
    result = run(release, capsys, **args, switch=True)
    assert result["rc"] == 0 and result["built"] is False and result["changed"]
    assert link_target(app.link("current")) == NEW
    assert read_text(os.path.join(app.release_dir(NEW), "release.json"))


def test_release_stages_the_settings_set_in_the_same_call_and_fails_on_a_bad_one(app, host, capsys, monkeypatch):
    make_release(app, NEW)
    monkeypatch.setattr(release, "ensure_user", lambda *a, **k: False)
    monkeypatch.setattr(settings_utils, "ensure_user", lambda *a, **k: False)
    group = grp.getgrgid(os.getgid()).gr_name
    files = {"gunicorn.conf.py": {"content": "workers = 2\n"}}
    args = {**base(app), "release_id": NEW, "user": "demo", "group": group, "run": "r1", "uv_version": "0.9.0",
            "settings": "c" * 32, "settings_files": files}  # fmt: skip
    checked = run(release, capsys, **args, _ansible_check_mode=True)
    assert checked["changed"] and checked["settings_staged"] and not os.path.exists(app.settings_dir("c" * 32))
    locked(app)
    done = run(release, capsys, **args)
    assert done["rc"] == 0 and done["settings_staged"] and done["built"] is False
    assert read_text(os.path.join(app.settings_dir("c" * 32), "gunicorn.conf.py")) == "workers = 2\n"
    bad = run(release, capsys, **{**args, "settings": "d" * 32, "settings_files": {"x.py": {"content": "("}}})
    assert bad["rc"] == 1 and bad["step"] == "settings" and "not valid" in bad["msg"]


def test_hook_runs_as_the_app_is_audited_and_fails_with_the_output_when_safe_to_show(app, host, capsys, commands):
    make_release(app, NEW)
    stage_settings(app, "1" * 32)
    commands.on(
        lambda argv: argv[0] == "systemd-run" and argv[-1] != "true", (4, "", "Finished with result: exit-code")
    )
    commands.on(("journalctl", "--no-pager"), (0, "migrating\nno such table\n", ""))
    args = {
        **base(app),
        "name": "before_switch",
        "release": NEW,
        "settings": "1" * 32,
        "operation": "rollback",
        "run": "r1",
    }
    checked = run(hook, capsys, **args, command="true", _ansible_check_mode=True)
    assert checked["changed"] and not commands.commands("systemd-run")
    locked(app)
    done = run(hook, capsys, **args, command="true")
    assert done["rc"] == 0 and done["result"] == "success"
    assert "Environment=ASGI_OPERATION=rollback" in commands.commands("systemd-run")[-1]
    failed = run(hook, capsys, **args, command="python -m app.migrate", show_output=True)
    assert failed["rc"] == 1 and failed["result"] == "failed" and "no such table" in failed["msg"]
    events = [json.loads(line) for line in read_text(app.audit).splitlines() if '"hook"' in line]
    assert [e["result"] for e in events] == ["success", "failed"]


def test_a_release_is_imported_as_a_transient_user_until_the_service_user_exists():
    assert "DynamicUser=yes" in release.plain_unit("no-such-user-4f2a", "no-such-group-4f2a")
    assert "User=root" in release.plain_unit("root", "root") and "DynamicUser" not in release.plain_unit("root", "root")


def test_remove_deletes_what_the_collection_made_and_keeps_the_rest_saying_why(
    app, host, capsys, commands, tmp_path, monkeypatch
):
    bound = functools.partial(App, config_dir=app.config.rsplit("/", 1)[0], unit_dir=app.unit_dir, run_dir=app.run_dir)
    monkeypatch.setattr(remove, "App", bound)
    monkeypatch.setattr(remove, "Systemd", lambda run: host)
    # demo: its directories and its user (made here); a state directory the unit had systemd make, another not its.
    state, stranger = tmp_path / "var/lib/demo", tmp_path / "var/log/demo"
    state.mkdir(parents=True)
    stranger.mkdir(parents=True)
    os.makedirs(app.root)
    record_made(app, dirs=[app.root, app.config, str(state)], users=["shared"], groups=["shared"], runs_as=["shared"])
    other = bound("other", os.path.dirname(app.root))
    record_made(other, dirs=[other.root], runs_as=["shared"])
    monkeypatch.setattr(remove, "STATE_ROOTS", (str(tmp_path / "var/lib") + "/", str(tmp_path / "var/log") + "/"))
    args = {**base(app), "user": "shared", "group": "shared", "run": "r1", "purge": True}
    locked(app)
    result = run(remove, capsys, **args)
    assert result["rc"] == 0, result
    assert app.root in result["removed"] and not os.path.exists(app.root)
    # Not the user's (the owner here is not "shared"): kept, saying so; the user is other's too: handed to it.
    assert any(str(state) in k and "not shared's" in k for k in result["kept"]) and state.exists()
    assert any("user shared (still used by other" in k for k in result["kept"])
    assert not [argv for argv in commands.calls if argv[0] in ("userdel", "groupdel")]
    assert read_made(other)["users"] == ["shared"] and read_made(other)["groups"] == ["shared"]
    assert stranger.exists()  # never recorded: never touched


def test_a_damaged_settings_key_is_named_and_only_a_converging_run_replaces_it(app, host, capsys):
    make_release(app, OLD)
    os.makedirs(app.config, exist_ok=True)
    with open(app.settings_key, "w") as stream:
        stream.write("")  # emptied (a full disk, a hand edit)
    refused = needed(app, capsys, settings_public="p")
    assert refused["rc"] == 1 and "the settings key is damaged" in refused["msg"]
    assert "is empty" in refused["msg"] and "-e asgi_converge=true" in refused["msg"]
    assert refused["host_state"]["settings_key"].endswith("is empty")
    repaired = needed(app, capsys, settings_public="p", converge=True)
    assert repaired["rc"] == 0 and len(repaired["settings_id"]) == 32 and repaired["locked"]
    events = [json.loads(line) for line in read_text(app.audit).splitlines()]
    assert {"event": "repair", "what": "settings key"}.items() <= events[0].items()
    assert len(read_text(app.settings_key).strip()) == 64


def test_lock_where_needed_in_check_mode_says_it_would_lock_and_changes_nothing(app, host, capsys):
    make_release(app, OLD)
    checked = needed(app, capsys, settings_public="p", _ansible_check_mode=True)
    assert checked["rc"] == 0 and checked["locked"] and checked["changed"] and checked["held_by"] is None
    assert checked["settings_id"] and not os.path.exists(app.lock) and not os.path.exists(app.settings_key)
