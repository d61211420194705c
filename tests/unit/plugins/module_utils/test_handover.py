"""The handover state machine, on a model of systemd: every strategy, every failure, every revert."""

from __future__ import annotations

import json
import os

import pytest
from ansible_collections.asgi.deploy.plugins.module_utils import handover as machine_steps
from ansible_collections.asgi.deploy.plugins.module_utils.gate import Gate
from ansible_collections.asgi.deploy.plugins.module_utils.handover import Handover, HandoverFailed
from ansible_collections.asgi.deploy.plugins.module_utils.host import link_target, read_text, swap_link
from ansible_collections.asgi.deploy.plugins.module_utils.systemd import SystemdError
from ansible_collections.asgi.deploy.tests.unit.plugins.fakes import (
    FakeRun,
    legacy_host,
    make_release,
    stage_settings,
)

OLD, NEW = "1.0.0-aaaa1111", "2.0.0-bbbb2222"
S1, S2 = "1" * 32, "2" * 32


def machine(app, systemd, clock, release=NEW, settings=S1, run_command=None, **kwargs):
    gate = Gate(systemd, "/readyz", 5, clock=clock, sleep=clock.sleep, get=systemd.get)
    run_command = run_command or FakeRun()
    return Handover(
        app, systemd, gate, release, settings, run_command, run="run1", actor="ops@laptop", host="web1", clock=clock,
        sleep=clock.sleep, **kwargs,
    )  # fmt: skip


def audit(app):
    return [json.loads(line) for line in read_text(app.audit).splitlines()]


def links(app):
    return {name: link_target(app.link(name)) for name in ("current", "previous", "blue", "green")}


def starts(systemd):
    """The units started or restarted, in order: how often the app was imported."""
    return [unit for call in systemd.calls if call[0] in ("start", "restart") for unit in call[1:]]


def slot(systemd, app, name):
    return systemd.unit(app.units[name])


@pytest.fixture
def live(app, systemd, clock):
    """A host running OLD on the blue slot with settings S1, deployed by a first handover."""
    make_release(app, OLD, built_at="2026-11-01T00:00:00Z")
    make_release(app, NEW, built_at="2026-11-02T00:00:00Z")
    stage_settings(app, S1)
    machine(app, systemd, clock, release=OLD).run()
    systemd.calls.clear()
    return app


def test_a_first_deploy_installs_the_units_links_the_app_to_blue_and_starts_it_gated(app, systemd, clock):
    make_release(app, OLD)
    stage_settings(app, S1)
    result = machine(app, systemd, clock, release=OLD).run()
    assert (result["strategy"], result["result"], result["from"], result["slot"]) == ("initial", "success", "", "blue")
    assert links(app) == {"current": OLD, "previous": "", "blue": OLD, "green": ""}
    assert app.live_slot() == "blue" and systemd.show(app.units["app"])["Id"] == app.units["blue"]
    assert slot(systemd, app, "blue")["release"] == OLD
    assert app.units["socket"] in systemd.enabled
    # The boot starts the live slot through <app>.service, whichever slot that is.
    wants = os.path.join(app.unit_dir, "multi-user.target.wants", app.units["app"])
    assert os.readlink(wants) == os.path.join("..", app.units["app"])
    assert read_text(app.applied).strip() == S1
    [line] = audit(app)
    assert (line["event"], line["strategy"], line["result"], line["to"], line["from"]) == (
        "deploy",
        "initial",
        "success",
        OLD,
        "",
    )
    assert [pair[0] for pair in line["steps"]] == ["install units", "switch", "start", "gate", "open"]


def test_a_failed_first_deploy_leaves_the_units_stopped_and_nothing_live(app, systemd, clock):
    make_release(app, OLD)
    stage_settings(app, S1)
    systemd.broken.add(OLD)
    with pytest.raises(HandoverFailed) as failed:
        machine(app, systemd, clock, release=OLD).run()
    assert failed.value.step == "gate" and failed.value.check == "start"
    assert "first deploy: its units are stopped" in str(failed.value)
    assert failed.value.journal == "journal of demo-blue.service"
    assert links(app) == {"current": "", "previous": "", "blue": "", "green": ""}
    assert app.live_slot() == "" and not os.path.lexists(app.unit_path(app.units["blue"]))
    assert slot(systemd, app, "blue")["ActiveState"] == "inactive"
    assert systemd.unit(app.units["socket"])["ActiveState"] == "inactive"
    assert app.units["socket"] not in systemd.enabled
    # The socket and the slot in one transaction nothing may replace: a queued connection would start it again.
    assert ("stop-for-good", app.units["socket"], app.units["blue"], app.units["blue_probe"]) in systemd.calls
    assert audit(app)[-1]["result"] == "failed"
    # A corrected release deploys as a first deploy again.
    systemd.broken.clear()
    assert machine(app, systemd, clock, release=OLD).run()["strategy"] == "initial"


def test_a_handover_starts_the_new_release_once_and_the_old_slot_only_drains(live, systemd, clock):
    app = live
    blue_pid = slot(systemd, app, "blue")["MainPID"]
    result = machine(app, systemd, clock).run()
    assert (result["strategy"], result["change"], result["result"], result["slot"]) == (
        "handover",
        "release",
        "success",
        "green",
    )
    assert links(app) == {"current": NEW, "previous": OLD, "blue": OLD, "green": NEW}
    assert app.live_slot() == "green"
    green = slot(systemd, app, "green")
    assert (green["ActiveState"], green["release"]) == ("active", NEW)
    # One start in the whole handover: the app is imported once; the old slot is told to stop, never restarted.
    assert starts(systemd) == [app.units["green"]]
    assert ("stop", app.units["blue"]) in systemd.calls and slot(systemd, app, "blue")["MainPID"] != blue_pid
    assert [call for call in systemd.calls if call[0] == "wait-stopped"] == []  # nothing to wait for: no drain left
    line = audit(app)[-1]
    assert (line["from"], line["to"], line["result"], line["slot"]) == (OLD, NEW, "success", "green")
    assert [pair[0] for pair in line["steps"]] == [
        "wait for the last drain",
        "prepare",
        "start",
        "gate",
        "open",
        "switch",
        "drain",
    ]


def test_the_drain_runs_off_the_handover_and_the_next_handover_on_the_host_waits_for_it(live, systemd, clock):
    app = live
    systemd.slow_drain = True
    machine(app, systemd, clock).run()
    # The handover returned while blue still drains its connections.
    assert slot(systemd, app, "blue")["ActiveState"] == "deactivating"
    assert not [call for call in systemd.calls if call[0] == "wait-stopped"]
    systemd.calls.clear()
    # The next one needs blue: it waits for that drain first (bounded by blue's stop deadline and a margin).
    result = machine(app, systemd, clock, release=OLD).run()
    assert systemd.calls[0] == ("wait-stopped", app.units["blue"], 40.0 + machine_steps.DRAIN_MARGIN_S)
    assert result["slot"] == "blue" and app.live_slot() == "blue"
    assert starts(systemd) == [app.units["blue"]]


def test_a_drain_past_its_deadline_is_ended_by_a_kill(live, systemd, clock):
    app = live
    systemd.slow_drain = True
    machine(app, systemd, clock).run()
    systemd.stuck.add(app.units["blue"])
    machine(app, systemd, clock, release=OLD).run()
    assert ("kill", app.units["blue"]) in systemd.calls


def test_a_slot_left_running_by_a_dead_run_is_drained_before_it_is_reused(live, systemd, clock):
    app = live
    # A run that died after it started green on NEW, before the switch: green serves beside blue.
    swap_link(app.link("green"), NEW)
    systemd._launch(app.units["green"])
    systemd.slow_drain = True
    result = machine(app, systemd, clock).run()
    assert result["change"] == "release" and any("is not the live slot" in r for r in result["reasons"])
    calls = systemd.calls
    assert calls.index(("stop", app.units["green"])) < calls.index(("wait-stopped", app.units["green"], 45.0))
    assert app.live_slot() == "green" and slot(systemd, app, "green")["ActiveState"] == "active"


def test_a_starting_slot_gets_less_cpu_until_it_passed_its_gate(live, systemd, clock):
    machine(live, systemd, clock, start_cpu_weight=20, start_nice=10).run()
    weights = [c[1:] for c in systemd.calls if c[0] == "cpu-weight"]
    assert weights == [(live.units["green"], 20), (live.units["green"], 100)]
    # Started, niced at once (workers forked later inherit it), back to normal once gated.
    nice = [c[1:] for c in systemd.calls if c[0] in ("nice", "restart")]
    assert nice == [(live.units["green"],), (live.units["green"], 10), (live.units["green"], 0)]


def test_a_host_already_on_the_release_and_settings_is_left_alone(live, systemd, clock):
    lines = len(audit(live))
    result = machine(live, systemd, clock, release=OLD).run()
    assert result["changed"] is False
    assert systemd.calls == []
    assert len(audit(live)) == lines


def test_force_hands_over_even_when_nothing_changed(live, systemd, clock):
    result = machine(live, systemd, clock, release=OLD, force=True).run()
    assert result["changed"] and result["change"] == "repair"
    assert links(live)["previous"] == "" and live.live_slot() == "green"


def test_a_new_slot_that_fails_leaves_the_live_one_untouched_and_is_reverted(live, systemd, clock):
    app = live
    blue_before = dict(slot(systemd, app, "blue"))
    green_unit = read_text(app.unit_path(app.units["green"]))
    stage_settings(app, S2)
    systemd.broken.add(NEW)
    with pytest.raises(HandoverFailed) as failed:
        machine(app, systemd, clock, settings=S2).run()
    assert (failed.value.step, failed.value.check) == ("gate", "start")
    assert f"The host is back on {OLD}" in str(failed.value)
    assert failed.value.journal == "journal of demo-green.service"
    assert slot(systemd, app, "blue") == blue_before
    assert not [call for call in systemd.calls if app.units["blue"] in call]  # never touched
    assert links(app) == {"current": OLD, "previous": "", "blue": OLD, "green": ""}
    assert app.live_slot() == "blue"
    assert read_text(app.unit_path(app.units["green"])) == green_unit
    assert slot(systemd, app, "green")["ActiveState"] == "inactive"
    assert ("reset-failed", app.units["green"], app.units["green_probe"]) in systemd.calls
    line = audit(app)[-1]
    assert (line["result"], line["step"], line["to"]) == ("reverted", "gate", NEW)


def test_a_new_slot_that_never_gets_ready_fails_at_the_timeout(live, systemd, clock):
    systemd.unready.add(NEW)
    with pytest.raises(HandoverFailed) as failed:
        machine(live, systemd, clock).run()
    assert failed.value.check == "readiness"
    assert "did not answer /readyz with 200 within 5s (/readyz answered HTTP 503)" in str(failed.value)
    assert live.live_slot() == "blue"


def hook_run(rc):
    """systemd-run and journalctl, as far as a hook sees them: it exits with ``rc`` and printed one line."""
    finished = "Finished with result: {}\n".format("success" if rc == 0 else "exit-code")
    return FakeRun(
        [(("systemd-run",), (rc, "", finished)), (("journalctl", "--no-pager"), (0, "smoke: GET /health -> 500\n", ""))]
    )


def test_an_after_switch_hook_runs_last_as_part_of_the_gate(live, systemd, clock):
    app, hook = live, hook_run(0)
    result = machine(app, systemd, clock, after_switch="curl -fsS http://127.0.0.1:8000/", run_command=hook).run()
    assert result["result"] == "success" and [pair[0] for pair in result["steps"]][-2:] == ["drain", "after switch"]
    [argv] = hook.commands("systemd-run")
    assert argv[-3:] == ["/bin/sh", "-c", "curl -fsS http://127.0.0.1:8000/"]
    assert "Environment=ASGI_OPERATION=deploy" in argv and f"WorkingDirectory={app.release_dir(NEW)}" in argv
    assert "RuntimeMaxSec=600" in argv and argv[argv.index("--unit") + 1] == "asgi-hook-demo-after-switch.service"
    hook_line, handover_line = audit(app)[-2:]
    assert (hook_line["event"], hook_line["hook"], hook_line["result"], hook_line["release"]) == (
        "hook",
        "after_switch",
        "success",
        NEW,
    )
    assert "output" not in hook_line  # not marked safe to show
    assert handover_line["result"] == "success"


def test_a_failing_after_switch_hook_brings_the_old_slot_back_and_drains_the_new_one(live, systemd, clock):
    app = live
    with pytest.raises(HandoverFailed) as failed:
        machine(app, systemd, clock, after_switch="./smoke-test", hook_show_output=True, run_command=hook_run(1)).run()
    assert failed.value.step == "after switch"
    assert "GET /health -> 500" in str(failed.value) and f"back on {OLD}" in str(failed.value)
    assert links(app)["current"] == OLD and links(app)["previous"] == "" and app.live_slot() == "blue"
    blue = slot(systemd, app, "blue")
    assert (blue["ActiveState"], blue["release"]) == ("active", OLD)
    calls = systemd.calls
    # Blue back and gated first; green, which served, drains (it is not killed).
    assert calls.index(("restart", app.units["blue"])) < calls.index(("stop", app.units["green"]))
    assert ("stop-for-good", app.units["green"], app.units["green_probe"]) not in calls
    assert [line.get("result") for line in audit(app)[-2:]] == ["failed", "reverted"]


def test_when_the_old_slot_cannot_come_back_the_revert_says_so(live, systemd, clock):
    app = live
    systemd.broken.add(OLD)  # blue would crash-loop if started again
    with pytest.raises(HandoverFailed) as failed:
        machine(app, systemd, clock, after_switch="./smoke-test", run_command=hook_run(1)).run()
    assert "The revert did not complete" in str(failed.value)
    assert audit(app)[-1]["result"] == "revert_failed"


def test_no_after_switch_hook_runs_nothing(live, systemd, clock):
    hook = hook_run(0)
    machine(live, systemd, clock, run_command=hook).run()
    assert hook.commands("systemd-run") == []


def test_restart_restarts_the_live_slot_in_place(live, systemd, clock):
    result = machine(live, systemd, clock, strategy="restart").run()
    assert (result["strategy"], result["slot"]) == ("restart", "blue")
    assert links(live) == {"current": NEW, "previous": OLD, "blue": NEW, "green": ""}
    assert starts(systemd) == [live.units["blue"]] and live.live_slot() == "blue"
    assert [pair[0] for pair in audit(live)[-1]["steps"]] == ["prepare", "switch", "restart", "gate", "open"]


def test_a_failed_restart_goes_back_to_the_old_release(live, systemd, clock):
    systemd.broken.add(NEW)
    with pytest.raises(HandoverFailed) as failed:
        machine(live, systemd, clock, strategy="restart").run()
    assert failed.value.step == "gate"
    assert links(live)["current"] == OLD and links(live)["blue"] == OLD
    blue = slot(systemd, live, "blue")
    assert (blue["ActiveState"], blue["release"]) == ("active", OLD)


def test_new_settings_start_on_the_new_slot_and_the_old_slot_keeps_its_own(live, systemd, clock):
    app = live
    stage_settings(app, S2)
    blue_unit = read_text(app.unit_path(app.units["blue"]))
    result = machine(app, systemd, clock, release=OLD, settings=S2).run()
    assert result["change"] == "settings"
    assert read_text(app.unit_path(app.units["blue"])) == blue_unit
    assert f"ASGI_SETTINGS_DIGEST={S2}" in read_text(app.unit_path(app.units["green"]))
    assert slot(systemd, app, "green")["settings"] == S2
    assert read_text(app.applied).strip() == S2
    assert links(app)["previous"] == ""  # same release: history does not move


def test_a_changed_listening_socket_is_replaced_last_with_a_restart(live, systemd, clock):
    app = live
    stage_settings(app, S2, socket="ListenStream=0.0.0.0:9000\n")
    machine(app, systemd, clock, release=OLD, settings=S2).run()
    assert "9000" in read_text(app.unit_path(app.units["socket"]))
    calls = systemd.calls
    # The old slot would keep the old socket open: it ends first; then a restart, never a stop then a start.
    last = {call: i for i, call in enumerate(calls)}
    assert last[("stop-for-good", app.units["blue"])] < last[("restart", app.units["socket"])]
    assert ("stop", app.units["socket"]) not in calls
    assert "replace sockets" in [pair[0] for pair in audit(app)[-1]["steps"]]


def test_a_socket_replacement_that_fails_puts_the_old_socket_back_and_the_old_slot_on_its_release(live, systemd, clock):
    app = live
    old_socket = read_text(app.unit_path(app.units["socket"]))
    stage_settings(app, S2, socket="ListenStream=0.0.0.0:9000\n")
    original = systemd.restart

    def refuses_the_new_socket(*units):
        if app.units["socket"] in units and "9000" in read_text(app.unit_path(app.units["socket"])):
            raise SystemdError("Job for demo.socket failed")
        original(*units)

    systemd.restart = refuses_the_new_socket
    with pytest.raises(HandoverFailed) as failed:
        machine(app, systemd, clock, release=NEW, settings=S2).run()
    assert failed.value.step == "replace sockets" and "did not complete" not in str(failed.value)
    assert read_text(app.unit_path(app.units["socket"])) == old_socket
    blue = slot(systemd, app, "blue")
    assert (blue["ActiveState"], blue["release"]) == ("active", OLD) and app.live_slot() == "blue"
    assert audit(app)[-1]["result"] == "reverted"


def test_a_socket_file_edited_by_hand_is_rewritten_and_loaded_but_the_listening_socket_stays_open(live, systemd, clock):
    app = live
    path = app.unit_path(app.units["socket"])
    wanted = read_text(path)
    with open(path, "a") as stream:
        stream.write("# edited by hand\n")
    systemd.unit(app.units["socket"])["need_reload"] = True
    result = machine(app, systemd, clock, release=OLD).run()
    assert result["change"] == "repair"
    assert read_text(path) == wanted
    assert systemd.calls.count(("daemon-reload",)) >= 2  # the edit loaded first, then the rewrite
    assert not [call for call in systemd.calls if call[0] == "restart" and app.units["socket"] in call]
    assert "replace sockets" in [pair[0] for pair in audit(app)[-1]["steps"]]


def test_a_host_where_current_moved_but_the_app_still_names_the_old_slot_is_repaired(live, systemd, clock):
    app = live
    # A host restarted right after current switched, before <app>.service did: blue (OLD) came back at boot.
    swap_link(app.link("previous"), OLD)
    swap_link(app.link("current"), NEW)
    result = machine(app, systemd, clock).run()
    assert result["changed"] and result["change"] == "repair"
    assert app.live_slot() == "green" and slot(systemd, app, "green")["release"] == NEW


def test_a_release_that_is_not_built_is_refused_before_anything_changes(live, systemd, clock):
    with pytest.raises(HandoverFailed) as failed:
        machine(live, systemd, clock, release="9.9.9-cccc3333").run()
    assert failed.value.check == "release"
    assert systemd.calls == []


def test_settings_that_are_not_staged_are_refused_before_anything_changes(live, systemd, clock):
    with pytest.raises(HandoverFailed) as failed:
        machine(live, systemd, clock, settings="f" * 32).run()
    assert failed.value.check == "settings"
    assert systemd.calls == []


def test_a_systemd_error_mid_way_is_reverted_like_a_failed_gate(live, systemd, clock):
    systemd.fail_on["restart"] = live.units["green"]
    with pytest.raises(HandoverFailed) as failed:
        machine(live, systemd, clock).run()
    assert failed.value.step == "start" and failed.value.check == "systemd"
    assert links(live)["current"] == OLD and live.live_slot() == "blue"


def test_an_unknown_strategy_is_refused(app, systemd, clock):
    with pytest.raises(ValueError, match="strategy"):
        machine(app, systemd, clock, strategy="yolo")


def test_a_host_of_the_layout_before_slots_moves_to_slots_with_one_start(app, systemd, clock):
    make_release(app, OLD)
    make_release(app, NEW)
    stage_settings(app, S1)
    legacy_host(app, OLD, S1)
    systemd._launch(app.legacy_units["main"])
    result = machine(app, systemd, clock).run()
    assert (result["strategy"], result["slot"], result["from"]) == ("upgrade", "blue", OLD)
    assert app.live_slot() == "blue" and os.path.islink(app.unit_path(app.units["app"]))
    for name in ("next", "main_probe", "next_probe"):
        assert not os.path.lexists(app.unit_path(app.legacy_units[name])), name
    assert starts(systemd) == [app.units["blue"]]
    calls = systemd.calls
    # The old main drains once, after blue passed its gate and before its file becomes the link.
    assert calls.index(("restart", app.units["blue"])) < calls.index(("stop", app.legacy_units["main"]))
    assert ("wait-stopped", app.legacy_units["main"], 45.0) in calls
    assert app.units["socket"] in systemd.enabled
    steps = [pair[0] for pair in audit(app)[-1]["steps"]]
    assert steps == ["prepare", "start", "gate", "open", "retire the old layout", "switch"]
    # From here on, ordinary handovers between the slots.
    assert machine(app, systemd, clock, release=OLD).run()["slot"] == "green"


def test_an_upgrade_whose_new_slot_fails_leaves_the_old_layout_serving(app, systemd, clock):
    make_release(app, OLD)
    make_release(app, NEW)
    stage_settings(app, S1)
    legacy_host(app, OLD, S1)
    systemd._launch(app.legacy_units["main"])
    systemd.broken.add(NEW)
    with pytest.raises(HandoverFailed):
        machine(app, systemd, clock).run()
    assert app.live_slot() == "legacy"
    assert systemd.unit(app.legacy_units["main"])["ActiveState"] == "active"
    assert not [call for call in systemd.calls if app.legacy_units["main"] in call]


def test_every_step_is_named_once_with_the_instance_a_failure_shows_and_an_undo_the_revert_runs():
    steps = machine_steps.STEPS
    assert set(steps) == {
        "wait for the last drain", "install units", "prepare", "start", "gate", "retire the old layout", "switch",
        "restart", "drain", "replace sockets", "after switch", "bridge static files", "front door", "open",
    }  # fmt: skip
    assert {step.instance for step in steps.values()} <= {"idle", "live", ""}
    for name, step in steps.items():
        assert step.undo is None or callable(getattr(Handover, step.undo)), name


def test_unit_files_systemd_has_not_loaded_are_loaded_before_anything_starts(live, systemd, clock):
    systemd.unit(live.units["socket"])["need_reload"] = True
    result = machine(live, systemd, clock, release=OLD).run()
    assert result["change"] == "repair" and any("not loaded" in r for r in result["reasons"])
    assert systemd.calls[0] == ("daemon-reload",)


def test_the_live_slot_running_other_settings_than_the_marker_is_handed_over_again(live, systemd, clock):
    with open(live.applied, "w") as stream:
        stream.write(S2 + "\n")
    stage_settings(live, S2)
    result = machine(live, systemd, clock, release=OLD, settings=S2).run()
    assert result["changed"] and slot(systemd, live, "green")["settings"] == S2


def _static(app, release_id, name):
    static = os.path.join(app.release_dir(release_id), "static")
    os.makedirs(static, exist_ok=True)
    with open(os.path.join(static, name), "w") as stream:
        stream.write(release_id)


def test_static_files_are_bridged_before_the_new_release_serves_and_put_back_when_its_gate_fails(live, systemd, clock):
    app = live
    _static(app, OLD, "style.1111aaaa2222.css")
    _static(app, NEW, "style.3333bbbb4444.css")
    assets_dir = os.path.join(app.root, "assets")
    machine(app, systemd, clock, release=OLD, static_dir="static", force=True).run()
    before = os.readlink(os.path.join(assets_dir, "current"))
    systemd.broken.add(NEW)
    with pytest.raises(HandoverFailed):
        machine(app, systemd, clock, static_dir="static").run()
    assert os.readlink(os.path.join(assets_dir, "current")) == before
    assert sorted(os.listdir(assets_dir)) == sorted(["current", before])
    systemd.broken.clear()
    result = machine(app, systemd, clock, static_dir="static").run()
    assert [pair[0] for pair in result["steps"]][:3] == ["wait for the last drain", "prepare", "bridge static files"]
    served = sorted(os.listdir(os.path.join(assets_dir, "current")))
    assert served == ["style.1111aaaa2222.css", "style.3333bbbb4444.css"]
    assert sorted(os.listdir(assets_dir)) == sorted(["current", os.readlink(os.path.join(assets_dir, "current"))])


def test_a_front_door_that_does_not_answer_takes_the_host_back(live, systemd, clock, monkeypatch):
    app = live
    asked = []

    def refuse(name, port, path, statuses, cafile=""):
        asked.append((name, port, path))
        raise machine_steps.FrontDoorFailed(f"https://{name}:{port}{path} through this host's nginx answered 502")

    monkeypatch.setattr(machine_steps, "check_through", refuse)
    door = {"name": "shop.example.com", "port": 443, "path": "/readyz", "statuses": [200]}
    with pytest.raises(HandoverFailed) as failed:
        machine(app, systemd, clock, front_door=door).run()
    assert failed.value.step == "front door" and "answered 502" in str(failed.value)
    assert asked == [("shop.example.com", 443, "/readyz")]
    assert app.live_slot() == "blue" and links(app)["current"] == OLD


def test_the_new_slot_serves_its_probe_only_until_its_gate_passed_and_never_when_it_fails(live, systemd, clock):
    app = live
    systemd.unready.add(NEW)
    with pytest.raises(HandoverFailed):
        machine(app, systemd, clock).run()
    # Started held: the never-ready release answered no client; the old slot serves, never held.
    assert ("open", app.units["green"]) not in systemd.calls and slot(systemd, app, "green")["held"] is True
    assert not os.path.exists(app.held["green"]) and slot(systemd, app, "blue")["held"] is False
    systemd.unready.clear()
    systemd.calls.clear()
    machine(app, systemd, clock).run()
    opened = systemd.calls.index(("open", app.units["green"]))
    stopped = systemd.calls.index(("stop", app.units["blue"]))
    assert systemd.calls.index(("restart", app.units["green"])) < opened < stopped
    assert slot(systemd, app, "green")["held"] is False and not os.path.exists(app.held["green"])
