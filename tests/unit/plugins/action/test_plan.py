"""The plan's decisions on the controller: where each run input comes from, what the command line may say, and
each host's options as the inventory, the play and the extra vars give them."""

from __future__ import annotations

import pytest
from ansible_collections.asgi.deploy.plugins.action import plan
from ansible_collections.asgi.deploy.plugins.plugin_utils import options as opts


def inputs(cli=None, **task_vars):
    return plan.run_inputs(task_vars, cli or {})


def test_a_prefixed_extra_var_beats_the_short_one_which_beats_the_inventory():
    assert inputs({"asgi_serial": 2, "serial": 3}, asgi_serial=4)["serial"] == 2
    assert inputs({"serial": 3}, asgi_serial=4)["serial"] == 3
    assert inputs({}, asgi_serial=4)["serial"] == 4
    assert inputs({})["serial"] is None


def test_a_run_input_from_a_variable_is_templated():
    found = plan.run_inputs({"asgi_version": "{{ v }}"}, {}, template=lambda value: value.replace("{{ v }}", "2.1.0"))
    assert found["version"] == "2.1.0"


def test_an_unprefixed_inventory_variable_never_steers_a_run():
    # A shared inventory's `version` (another tool's) is not ours: only -e version=... is.
    assert inputs({}, version="7.7.7")["version"] == ""
    assert inputs({"version": "1.2.0"}, version="7.7.7")["version"] == "1.2.0"


def test_on_failure_is_the_rollout_option_not_the_failure_notification():
    # asgi_on_failure is the notification command: a role default that must not be read as stop/revert.
    assert inputs({"on_failure": "revert"}, asgi_on_failure="", rollout_on_failure="stop")["on_failure"] == "revert"
    assert inputs({"rollout_on_failure": "revert"}, rollout_on_failure="stop")["on_failure"] == "revert"
    assert inputs({}, asgi_on_failure="tasks:page.yml", rollout_on_failure="stop")["on_failure"] == "stop"


def test_the_app_source_and_wheel_come_from_the_command_line_only():
    # In the inventory, asgi_app_source is the app's option (read by the plan), not a per-run override.
    assert inputs({}, asgi_app_source="/src/app")["app_source"] == ""
    assert inputs({"app_source": "/src/app-2"}, asgi_app_source="/src/app")["app_source"] == "/src/app-2"


def good_run(**overrides):
    run = dict(plan.RUN_INPUTS, version="1.4.0", serial=1, strategy="handover", on_failure="stop")
    return {**run, **overrides}


def test_a_good_command_line_has_no_problem():
    assert plan.command_line("deploy", good_run()) == []
    assert plan.command_line("deploy", good_run(version="")) == []  # the app's own version
    assert plan.command_line("deploy", good_run(version="auto", git_ref="v1.4.0")) == []
    assert plan.command_line("rollback", good_run(version="")) == []


@pytest.mark.parametrize(
    ("operation", "overrides", "said"),
    [
        ("deploy", {"version": "../1.4"}, "give -e asgi_version=V"),
        ("deploy", {"version": "1.4 beta"}, "not '1.4 beta'"),
        ("deploy", {"git_ref": "v1; rm -rf /"}, "-e asgi_git_ref names a commit"),
        ("maintenance", {"maintenance": "maybe"}, "give -e asgi_maintenance=on (or off)"),
        ("rollback", {"version": "../x"}, "is not a release version"),
        ("deploy", {"strategy": "blue-green"}, "must be handover or restart"),
        ("deploy", {"serial": "0"}, "-e asgi_serial must be a number"),
        ("deploy", {"serial": [1, "25%", "x"]}, "-e asgi_serial must be a number"),
        ("deploy", {"on_failure": "retry"}, "rollout_on_failure (or on_failure) must be stop or revert"),
        ("deploy", {"force_unlock": "true"}, "names the run whose lock to clear"),
        ("status", {"format": "xml"}, "must be text or json"),
        ("report", {"period": "month"}, "must be day or week"),
        ("exec", {"cmd": "  "}, "give the command to run"),
        ("deploy", {"lock_wait": "soon"}, "-e asgi_lock_wait must be a number of seconds"),
        ("deploy", {"run_id": "job 7; rm"}, "-e asgi_run_id is a name of [0-9A-Za-z._-]"),
        ("deploy", {"release": "1.4.0"}, "-e asgi_release names a release id"),
        ("exec", {"release": "1.4.0-0a1b2c3d", "cmd": "true"}, "exec takes none"),
        ("rollback", {"version": "", "run_id": "awx-4711"}, "a rollback in job slices names where it goes"),
    ],
)
def test_each_bad_command_line_input_is_named_with_what_to_give(operation, overrides, said):
    problems = plan.command_line(operation, good_run(**overrides))
    assert len(problems) == 1 and said in problems[0], problems


def test_a_canary_list_of_batches_is_a_serial():
    assert plan.check_serial([1, "25%", "100%"]) == []
    assert plan.check_serial("100%") == [] and plan.check_serial(3) == []
    assert plan.check_serial([]) != []


def test_pipelining_follows_the_host_variable_first():
    assert plan.pipelining({"ansible_pipelining": "yes"}) is True
    assert plan.pipelining({"ansible_pipelining": False}) is False


class Templar:
    def template(self, value):
        return value


def host_options(task_vars, host):
    action = object.__new__(plan.ActionModule)
    action._templar = Templar()
    specs = {role: opts.role_spec(role) for role in plan.ROLES}
    return action.host_options(host, specs, task_vars, "status")


def test_each_host_gets_its_own_inventory_values_and_the_play_or_extra_vars_beat_them():
    hostvars = {
        "web1": {"asgi_app": "billing", "service_workers": 4, "rollout_pause": 0},
        "web2": {"asgi_app": "billing", "service_workers": 8, "rollout_pause": 0},
    }
    # The task runs for web1: it sees web1's inventory, and an extra var (-e rollout_pause=30) over it.
    task_vars = {"hostvars": hostvars, "inventory_hostname": "web1", "asgi_app": "billing", "service_workers": 4,
                 "rollout_pause": 30}  # fmt: skip
    web1, problems1 = host_options(task_vars, "web1")
    web2, problems2 = host_options(task_vars, "web2")
    assert problems1 == problems2 == []
    assert (web1["service_workers"], web2["service_workers"]) == (4, 8)  # each host's own inventory
    assert web1["rollout_pause"] == web2["rollout_pause"] == 30  # what outranks the inventory is the same for all
    assert web2["asgi_base_dir"] == "/srv"  # the spec's default where nothing sets it


def test_a_bad_option_on_one_host_is_named_with_its_role():
    hostvars = {"web1": {"asgi_app": "billing", "service_workers": "many"}}
    task_vars = {"hostvars": hostvars, "inventory_hostname": "web1", "asgi_app": "billing", "service_workers": "many"}
    _found, problems = host_options(task_vars, "web1")
    assert any("service_workers" in p and "(role service)" in p for p in problems), problems


def test_run_ids_sort_by_when_the_run_started():
    earlier, later = plan.run_id(now=1_765_000_000.000), plan.run_id(now=1_765_000_000.002)
    assert len(earlier) == len(later) == 16 and int(earlier, 16) >= 0
    assert earlier < later


def test_a_list_of_batches_arrives_whole_from_the_command_line_with_commas():
    assert plan.serial_of("1,25%,100%") == [1, "25%", "100%"]
    assert plan.serial_of("2") == "2" and plan.serial_of([1, "50%"]) == [1, "50%"]
    assert plan.check_serial(plan.serial_of("1,25%,100%")) == []


def test_a_stray_text_ansible_split_off_the_command_line_is_refused_with_the_form_that_works():
    # -e 'asgi_serial=[1, "25%", "100%"]' reaches Ansible as asgi_serial='[1,' and the rest as _raw_params.
    [problem] = plan.inventory_problems({}, {"asgi_serial": "[1,", "_raw_params": '"25%", "100%"]'})
    assert "not key=value" in problem and "-e asgi_serial=1,25%,100%" in problem


def test_force_unlock_purge_and_a_command_are_refused_from_the_inventory():
    problems = plan.inventory_problems({"asgi_force_unlock": "all", "asgi_purge": True, "asgi_cmd": "rm -rf /"}, {})
    assert len(problems) == 3 and all("may only be given with -e" in p for p in problems)
    assert plan.inventory_problems({"asgi_purge": True}, {"asgi_purge": True}) == []
    assert plan.inventory_problems({"asgi_purge": True}, {"purge": True}) == []


def test_job_slices_of_one_run_share_the_run_id_they_are_given_and_may_pin_the_release():
    assert plan.command_line("deploy", good_run(run_id="awx-4711", release="1.4.0-0a1b2c3d")) == []
    # A sliced rollback goes where every slice is told: a release, or a version.
    assert plan.command_line("rollback", good_run(version="", run_id="awx-4711", release="1.3.0-99aa00ff")) == []
    assert plan.command_line("rollback", good_run(version="1.3.0", run_id="awx-4711")) == []


def test_a_shared_run_id_and_a_pinned_release_are_refused_from_the_inventory():
    problems = plan.inventory_problems({"asgi_run_id": "x", "asgi_release": "1.4.0-0a1b2c3d"}, {})
    assert len(problems) == 2 and all("may only be given with -e" in p for p in problems)
