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
from ansible_collections.asgi.deploy.tests.unit.plugins.fakes import FakeRun, make_release, stage_settings

OLD, NEW = "1.0.0-aaaa1111", "2.0.0-bbbb2222"
S1, S2 = "1" * 32, "2" * 32


def machine(app, systemd, clock, release=NEW, settings=S1, run_command=None, **kwargs):
    gate = Gate(systemd, "/readyz", 5, clock=clock, sleep=clock.sleep, get=systemd.get)
    run_command = run_command or FakeRun()
    return Handover(
        app, systemd, gate, release, settings, run_command, run="run1", actor="ops@laptop", host="web1", clock=clock,
        **kwargs,
    )  # fmt: skip


def audit(app):
    return [json.loads(line) for line in read_text(app.audit).splitlines()]


def links(app):
    return {name: link_target(app.link(name)) for name in ("current", "previous", "next")}


@pytest.fixture
def live(app, systemd, clock):
    """A host running OLD with settings S1, deployed by a first handover."""
    make_release(app, OLD, built_at="2026-11-01T00:00:00Z")
    make_release(app, NEW, built_at="2026-11-02T00:00:00Z")
    stage_settings(app, S1)
    machine(app, systemd, clock, release=OLD).run()
    systemd.calls.clear()
    return app


def test_a_first_deploy_installs_enables_starts_and_gates_main(app, systemd, clock):
    make_release(app, OLD)
    stage_settings(app, S1)
    result = machine(app, systemd, clock, release=OLD).run()
    assert result["strategy"] == "initial" and result["result"] == "success" and result["from"] == ""
    assert links(app) == {"current": OLD, "previous": "", "next": OLD}
    assert systemd.unit(app.units["main"])["release"] == OLD
    assert {app.units["main"], app.units["socket"], app.units["main_probe"]} <= systemd.enabled
    assert read_text(app.applied).strip() == S1
    [line] = audit(app)
    assert (line["event"], line["strategy"], line["result"], line["to"], line["from"]) == (
        "deploy",
        "initial",
        "success",
        OLD,
        "",
    )
    assert [pair[0] for pair in line["steps"]] == ["install units", "switch current", "start main", "gate main"]


def test_a_failed_first_deploy_leaves_the_units_stopped_and_nothing_live(app, systemd, clock):
    make_release(app, OLD)
    stage_settings(app, S1)
    systemd.broken.add(OLD)
    with pytest.raises(HandoverFailed) as failed:
        machine(app, systemd, clock, release=OLD).run()
    assert failed.value.step == "gate main" and failed.value.check == "start"
    assert "first deploy: its units are stopped" in str(failed.value)
    assert failed.value.journal == "journal of demo.service"
    assert links(app) == {"current": "", "previous": "", "next": ""}
    assert systemd.unit(app.units["main"])["ActiveState"] == "inactive"
    assert systemd.unit(app.units["socket"])["ActiveState"] == "inactive"
    assert app.units["main"] not in systemd.enabled
    # Sockets and main in one transaction nothing may replace: a queued connection would start main again.
    units = (app.units["socket"], app.units["main_probe"], app.units["main"])
    assert [call for call in systemd.calls if call[0].startswith("stop")] == [("stop-for-good", *units)]
    assert audit(app)[-1]["result"] == "failed"
    # A corrected release deploys as a first deploy again.
    systemd.broken.clear()
    assert machine(app, systemd, clock, release=OLD).run()["strategy"] == "initial"


def test_a_handover_switches_links_and_instances_and_stops_next(live, systemd, clock):
    app = live
    pid_before = systemd.unit(app.units["main"])["MainPID"]
    result = machine(app, systemd, clock).run()
    assert (result["strategy"], result["change"], result["result"]) == ("handover", "release", "success")
    assert links(app) == {"current": NEW, "previous": OLD, "next": NEW}
    main = systemd.unit(app.units["main"])
    assert main["release"] == NEW and main["MainPID"] != pid_before
    assert systemd.unit(app.units["next"])["ActiveState"] == "inactive"
    verbs = [c[0] for c in systemd.calls if c[0] in ("restart", "stop")]
    # next first, main while next serves, then next stops.
    assert [c for c in systemd.calls if c[0] == "restart"] == [
        ("restart", app.units["next"]),
        ("restart", app.units["main"]),
    ]
    assert verbs[-1] == "stop"
    line = audit(app)[-1]
    assert (line["from"], line["to"], line["result"]) == (OLD, NEW, "success")
    assert [pair[0] for pair in line["steps"]] == [
        "prepare next",
        "start next",
        "gate next",
        "switch current",
        "restart main",
        "gate main",
        "stop next",
    ]


def test_a_starting_instance_gets_less_cpu_until_it_passed_its_gate(live, systemd, clock):
    machine(live, systemd, clock, start_cpu_weight=20, start_nice=10).run()
    weights = [c[1:] for c in systemd.calls if c[0] == "cpu-weight"]
    assert weights == [
        (live.units["next"], 20),
        (live.units["next"], 100),
        (live.units["main"], 20),
        (live.units["main"], 100),
    ]
    # Started, niced at once (workers forked later inherit it), back to normal once gated.
    nice = [c[1:] for c in systemd.calls if c[0] in ("nice", "restart")]
    assert nice == [
        (live.units["next"],),
        (live.units["next"], 10),
        (live.units["next"], 0),
        (live.units["main"],),
        (live.units["main"], 10),
        (live.units["main"], 0),
    ]


def test_a_host_already_on_the_release_and_settings_is_left_alone(live, systemd, clock):
    lines = len(audit(live))
    result = machine(live, systemd, clock, release=OLD).run()
    assert result["changed"] is False
    assert systemd.calls == []
    assert len(audit(live)) == lines


def test_force_hands_over_even_when_nothing_changed(live, systemd, clock):
    result = machine(live, systemd, clock, release=OLD, force=True).run()
    assert result["changed"] and result["change"] == "repair"
    assert links(live)["previous"] == ""


def test_a_next_instance_that_fails_leaves_main_untouched_and_is_reverted(live, systemd, clock):
    app = live
    main_before = dict(systemd.unit(app.units["main"]))
    systemd.broken.add(NEW)
    with pytest.raises(HandoverFailed) as failed:
        machine(app, systemd, clock).run()
    assert (failed.value.step, failed.value.check) == ("gate next", "start")
    assert f"The host is back on {OLD}" in str(failed.value)
    assert failed.value.journal == "journal of demo-next.service"
    assert systemd.unit(app.units["main"]) == main_before
    assert links(app) == {"current": OLD, "previous": "", "next": OLD}
    assert systemd.unit(app.units["next"])["ActiveState"] == "inactive"
    assert ("reset-failed", app.units["next"], app.units["next_probe"]) in systemd.calls
    line = audit(app)[-1]
    assert (line["result"], line["step"], line["to"]) == ("reverted", "gate next", NEW)


def test_a_next_instance_that_never_gets_ready_fails_at_the_timeout(live, systemd, clock):
    systemd.unready.add(NEW)
    with pytest.raises(HandoverFailed) as failed:
        machine(live, systemd, clock).run()
    assert failed.value.check == "readiness"
    assert "did not answer /readyz with 200 within 5s (/readyz answered HTTP 503)" in str(failed.value)


def test_main_failing_after_the_switch_goes_back_to_the_old_release_while_next_serves(live, systemd, clock):
    app = live

    def main_breaks(name):
        # next starts fine; main, restarted on the new release, crash-loops.
        if name == app.units["main"] and link_target(app.link("current")) == NEW:
            systemd.broken.add(NEW)
        original(name)

    original = systemd._launch
    systemd._launch = main_breaks
    with pytest.raises(HandoverFailed) as failed:
        machine(app, systemd, clock).run()
    assert (failed.value.step, failed.value.check) == ("gate main", "start")
    assert links(app) == {"current": OLD, "previous": "", "next": OLD}
    main = systemd.unit(app.units["main"])
    assert (main["ActiveState"], main["release"]) == ("active", OLD)
    # The crash loop was reset before main restarted on the old release, and next stopped only after that.
    calls = systemd.calls
    last = {call: i for i, call in enumerate(calls)}
    assert (
        last[("reset-failed", app.units["main"])]
        < last[("restart", app.units["main"])]
        < last[("stop-for-good", app.units["next"], app.units["next_probe"])]
    )
    assert systemd.unit(app.units["next"])["ActiveState"] == "inactive"
    assert audit(app)[-1]["result"] == "reverted"


def test_when_main_cannot_come_back_the_revert_says_so_and_next_keeps_serving(live, systemd, clock):
    app = live

    def everything_breaks(name):
        if name == app.units["main"] and link_target(app.link("current")) == NEW:
            systemd.broken.update({NEW, OLD})
        original(name)

    original = systemd._launch
    systemd._launch = everything_breaks
    with pytest.raises(HandoverFailed) as failed:
        machine(app, systemd, clock).run()
    assert "The revert did not complete" in str(failed.value)
    assert f"demo-next.service keeps serving {NEW}" in str(failed.value)
    assert systemd.unit(app.units["next"])["ActiveState"] == "active"
    assert audit(app)[-1]["result"] == "revert_failed"


def test_restart_switches_and_restarts_main_without_next(live, systemd, clock):
    result = machine(live, systemd, clock, strategy="restart").run()
    assert result["strategy"] == "restart"
    assert links(live)["current"] == NEW and links(live)["previous"] == OLD
    assert not [c for c in systemd.calls if live.units["next"] in c]
    assert [pair[0] for pair in audit(live)[-1]["steps"]] == ["switch current", "restart main", "gate main"]


def test_a_failed_restart_goes_back_to_the_old_release(live, systemd, clock):
    systemd.broken.add(NEW)
    with pytest.raises(HandoverFailed) as failed:
        machine(live, systemd, clock, strategy="restart").run()
    assert failed.value.step == "gate main"
    assert links(live)["current"] == OLD
    assert systemd.unit(live.units["main"])["release"] == OLD


def test_new_settings_are_tried_on_next_before_main_gets_them(live, systemd, clock):
    app = live
    stage_settings(app, S2)
    main_unit = read_text(app.unit_path(app.units["main"]))
    seen = {}

    def watch(name):
        if name == app.units["next"]:
            seen["main unit while next starts"] = read_text(app.unit_path(app.units["main"]))
        original(name)

    original = systemd._launch
    systemd._launch = watch
    result = machine(app, systemd, clock, release=OLD, settings=S2).run()
    assert result["change"] == "settings"
    assert seen["main unit while next starts"] == main_unit
    assert f"ASGI_SETTINGS_DIGEST={S2}" in read_text(app.unit_path(app.units["main"]))
    assert systemd.unit(app.units["main"])["settings"] == S2
    assert read_text(app.applied).strip() == S2
    assert links(app)["previous"] == ""  # same release: history does not move


def test_bad_settings_fail_on_next_and_main_keeps_its_old_unit(live, systemd, clock):
    app = live
    stage_settings(app, S2)
    main_unit = read_text(app.unit_path(app.units["main"]))
    next_unit = read_text(app.unit_path(app.units["next"]))

    def bad_settings(name):
        if systemd.unit(name) is not None and S2 in read_text(app.unit_path(name)):
            systemd.broken.add(OLD)
        original(name)
        systemd.broken.discard(OLD)

    original = systemd._launch
    systemd._launch = bad_settings
    with pytest.raises(HandoverFailed):
        machine(app, systemd, clock, release=OLD, settings=S2).run()
    assert read_text(app.unit_path(app.units["main"])) == main_unit
    assert read_text(app.unit_path(app.units["next"])) == next_unit
    assert systemd.unit(app.units["main"])["settings"] == S1
    assert read_text(app.applied).strip() == S1
    line = audit(app)[-1]
    assert (line["change"], line["result"]) == ("settings", "reverted")


def test_a_changed_listening_socket_is_replaced_last_with_a_restart(live, systemd, clock):
    app = live
    stage_settings(app, S2, socket="ListenStream=0.0.0.0:9000\n")
    machine(app, systemd, clock, release=OLD, settings=S2).run()
    assert "9000" in read_text(app.unit_path(app.units["socket"]))
    calls = systemd.calls
    assert ("restart", app.units["socket"]) in calls
    # Under load a connection would start main during a stop and cancel it: restarts only.
    assert ("stop", app.units["main"]) not in calls
    last = {call: i for i, call in enumerate(calls)}
    assert last[("stop-for-good", app.units["next"], app.units["next_probe"])] < last[("restart", app.units["socket"])]
    assert "replace sockets" in [pair[0] for pair in audit(app)[-1]["steps"]]


def test_a_socket_replacement_that_fails_puts_the_old_socket_back_and_main_on_its_release(live, systemd, clock):
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
    assert ("stop", app.units["main"]) not in systemd.calls
    main = systemd.unit(app.units["main"])
    assert (main["ActiveState"], main["release"]) == ("active", OLD)
    assert audit(app)[-1]["result"] == "reverted"


def test_a_changed_probe_socket_alone_is_replaced_without_closing_the_listening_socket(live, systemd, clock):
    app = live
    stage_settings(app, S2, probe="SocketMode=0600\n")
    machine(app, systemd, clock, release=OLD, settings=S2).run()
    restarts = [call for call in systemd.calls if call[0] == "restart"]
    assert ("restart", app.units["main_probe"]) in restarts
    assert not [call for call in restarts if app.units["socket"] in call]


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


def test_a_host_left_half_way_by_a_killed_run_is_repaired(live, systemd, clock):
    app = live
    # Killed after next started on NEW and current flipped, before main restarted.
    swap_link(app.link("next"), NEW)
    systemd._launch(app.units["next"])
    swap_link(app.link("previous"), OLD)
    swap_link(app.link("current"), NEW)
    result = machine(app, systemd, clock).run()
    assert result["changed"] and result["change"] == "repair"
    assert systemd.unit(app.units["main"])["release"] == NEW
    assert systemd.unit(app.units["next"])["ActiveState"] == "inactive"


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
    systemd.fail_on["restart"] = live.units["main"]
    with pytest.raises(HandoverFailed) as failed:
        machine(live, systemd, clock).run()
    assert failed.value.step == "restart main" and failed.value.check == "systemd"
    assert links(live)["current"] == OLD
    assert os.path.islink(live.link("next"))


def test_an_unknown_strategy_is_refused(app, systemd, clock):
    with pytest.raises(ValueError, match="strategy"):
        machine(app, systemd, clock, strategy="yolo")


def hook_run(rc):
    """systemd-run and journalctl, as far as a hook sees them: it exits with ``rc`` and printed one line."""
    finished = "Finished with result: {}\n".format("success" if rc == 0 else "exit-code")
    return FakeRun(
        [(("systemd-run",), (rc, "", finished)), (("journalctl", "--no-pager"), (0, "smoke: GET /health -> 500\n", ""))]
    )


def test_an_after_switch_hook_runs_last_as_part_of_the_gate(live, systemd, clock):
    app, hook = live, hook_run(0)
    result = machine(app, systemd, clock, after_switch="curl -fsS http://127.0.0.1:8000/", run_command=hook).run()
    assert result["result"] == "success" and [pair[0] for pair in result["steps"]][-2:] == ["stop next", "after switch"]
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


def test_a_failing_after_switch_hook_takes_the_host_back_like_a_failed_gate(live, systemd, clock):
    app = live
    with pytest.raises(HandoverFailed) as failed:
        machine(app, systemd, clock, after_switch="./smoke-test", hook_show_output=True, run_command=hook_run(1)).run()
    assert failed.value.step == "after switch"
    assert "GET /health -> 500" in str(failed.value) and f"back on {OLD}" in str(failed.value)
    assert links(app) == {"current": OLD, "previous": "", "next": OLD}
    main = systemd.unit(app.units["main"])
    assert (main["ActiveState"], main["release"]) == ("active", OLD)
    assert [line.get("result") for line in audit(app)[-2:]] == ["failed", "reverted"]


def test_no_after_switch_hook_runs_nothing(live, systemd, clock):
    hook = hook_run(0)
    machine(live, systemd, clock, run_command=hook).run()
    assert hook.commands("systemd-run") == []


def test_every_step_is_named_once_with_the_instance_a_failure_shows_and_how_to_undo_it():
    steps = machine_steps.STEPS
    assert set(steps) == {
        "install units", "switch current", "start main", "gate main", "prepare next", "start next", "gate next",
        "restart main", "stop next", "replace sockets", "after switch",
    }  # fmt: skip
    assert {name for name, step in steps.items() if step.instance == "next"} == {
        "prepare next",
        "start next",
        "gate next",
    }
    assert machine_steps.MAIN in steps["restart main"].undo and machine_steps.NEXT in steps["gate next"].undo


def test_unit_files_systemd_has_not_loaded_are_loaded_before_anything_starts(live, systemd, clock):
    systemd.unit(live.units["socket"])["need_reload"] = True
    result = machine(live, systemd, clock, release=OLD).run()
    assert result["change"] == "repair" and any("not loaded" in r for r in result["reasons"])
    assert systemd.calls[0] == ("daemon-reload",)


def test_main_running_other_settings_than_the_marker_is_handed_over_again(live, systemd, clock):
    with open(live.applied, "w") as stream:
        stream.write(S2 + "\n")
    stage_settings(live, S2)
    result = machine(live, systemd, clock, release=OLD, settings=S2).run()
    assert result["changed"] and systemd.unit(live.units["main"])["settings"] == S2
