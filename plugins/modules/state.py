#!/usr/bin/python
# Copyright: asgi.deploy maintainers
# MIT License (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: state
short_description: Read everything a deploy, rollback or status needs about an app on a host, in one round trip
version_added: 0.2.0
description:
  - Reads the releases (live, previous, kept, unfinished), the two slots (which one is live, each one's state, main
    PID, the release and settings that PID actually runs, whether it drains and the connections it holds), the
    deploy lock with its holder and age, the settings the live slot was handed over with, staged settings sets,
    wheelhouses and tools on the host, free space, the Python that releases are built with, hooks running and the
    last audit log lines.
  - With O(release), also assesses whether the host needs a change to run that release with the settings, and why
    (RV(assessment)) - the same assessment M(asgi.deploy.handover) acts on - and whether the next release fits on
    the app's file system once old releases are pruned (RV(space)); when it does not, fails with the numbers.
  - Changes nothing.
author: asgi.deploy maintainers (!UNKNOWN)
extends_documentation_fragment:
  - asgi.deploy.app
  - asgi.deploy.app.read_only
options:
  python:
    description: Interpreter the releases are built with, described in RV(python).
    type: path
    default: /usr/bin/python3
  release:
    description: A release id to assess the host against; sets RV(assessment) and RV(space).
    type: str
    default: ""
  settings:
    description: A settings id to assess the host against (empty keeps the settings the host runs).
    type: str
    default: ""
  settings_public:
    description:
      - The controller's digest of the options that shape the host's settings (secrets left out). With O(secrets) it
        gives the settings id on this host (RV(settings_id)), which the host is assessed against.
    type: str
    default: ""
  secrets:
    description: The app's secrets, to key the settings id with (never returned).
    type: dict
    default: {}
  converge:
    description: Count the host as needing a change even when it runs O(release) with the settings.
    type: bool
    default: false
  switch:
    description:
      - For RV(release_needed) - whether C(current) is to point at O(release) (the release role's C(release_switch)).
    type: bool
    default: false
  keep:
    description: Finished releases kept (C(release_keep)); what pruning to it frees counts as space for the next one.
    type: int
    default: 5
  min_free_mb:
    description: Free space (MB) a new release needs at least, whatever the estimate; 0 checks nothing.
    type: int
    default: 0
"""

EXAMPLES = r"""
- name: Read the host
  asgi.deploy.state:
    app: billing
  register: billing_state

- name: Does the host need release 1.4.0-3f2a9c1e?
  asgi.deploy.state:
    app: billing
    release: 1.4.0-3f2a9c1e
    settings_public: "{{ plan.settings[inventory_hostname] }}"
    secrets: "{{ service_secrets }}"
  no_log: false
"""

RETURN = r"""
app:
  description: The app's name.
  returned: always
  type: str
root:
  description: The app's directory on the host.
  returned: always
  type: str
live:
  description: The release C(current) points at, if that release is finished; empty when the host runs nothing.
  returned: always
  type: str
  sample: 1.4.0-3f2a9c1e
live_version:
  description: The version of RV(live).
  returned: always
  type: str
current:
  description: Target of the C(current) link, finished or not.
  returned: always
  type: str
previous:
  description: Target of the C(previous) link.
  returned: always
  type: str
settings:
  description: Id of the settings set the live slot was last handed over with.
  returned: always
  type: str
settings_id:
  description: The id the settings of O(settings_public) and O(secrets) have on this host (empty when the host has no
    settings key yet - it never staged a set).
  returned: when O(settings_public) is set
  type: str
live_slot:
  description: The slot C(<app>.service) links to (C(blue), C(green)); C(legacy) on the layout before slots; empty when
    nothing is installed.
  returned: always
  type: str
slots:
  description:
    - Per slot (C(blue), C(green)) - C(unit), C(live), C(link) (the release its link names), C(loaded), C(active),
      C(sub), C(result), C(pid), C(restarts), C(need_reload), C(invocation), the C(release) and C(settings) that PID
      runs, C(draining) (not live, still stopping) and C(connections) (client connections it holds).
  returned: always
  type: dict
serving:
  description: The live instance, as one of RV(slots) (on the layout before slots, its C(<app>.service)).
  returned: always
  type: dict
legacy:
  description: On the layout before slots, its C(main) and C(next) instances, as RV(slots); else empty.
  returned: always
  type: dict
units_installed:
  description: Whether the app's units are installed (C(<app>.service) names a slot, or is a unit of its own).
  returned: always
  type: bool
reload_needed:
  description: The app's units whose files changed on disk since systemd loaded them.
  returned: always
  type: list
  elements: str
live_interpreter:
  description: Whether the live release's venv still has an interpreter.
  returned: always
  type: bool
lock:
  description: The deploy lock holder (run, actor, operation, version, release, controller, controller_id, pid, since,
    age_s), or null.
  returned: always
  type: dict
busy:
  description: PID of a build, hook or handover of the app running on the host now (empty when none).
  returned: always
  type: str
hooks_running:
  description: Deploy hook units of the app running now.
  returned: always
  type: list
  elements: str
kept:
  description: Finished releases, oldest first (id, version, app_version, built_at, wheelhouse_key, tree_sha256,
    interpreter).
  returned: always
  type: list
  elements: dict
unfinished:
  description: Release directories without a manifest.
  returned: always
  type: list
  elements: str
settings_sets:
  description: Settings ids staged on the host.
  returned: always
  type: list
  elements: str
wheelhouses:
  description: Wheelhouse keys on the host.
  returned: always
  type: list
  elements: str
wheel_store:
  description: The sha256 of every wheel in the host's wheel store (what a new wheelhouse need not ship again).
  returned: always
  type: list
  elements: str
tools:
  description: Installer versions unpacked on the host (C(uv-<version>)).
  returned: always
  type: list
  elements: str
free_mb:
  description: Free space of the file system that holds the app directory, in MB.
  returned: always
  type: int
python:
  description: Version (C(python), C(full)), C(machine), C(glibc), C(sys_platform) and C(venv) of O(python); empty
    when it does not run.
  returned: always
  type: dict
recent:
  description: The last audit log lines (deploys, rollbacks, reverts, hooks, locks), oldest first.
  returned: always
  type: list
  elements: dict
settings_key:
  description: C(ok), C(missing) (no settings set was made here yet), or what is wrong with the app's settings key.
  returned: always
  type: str
audit_corrupt:
  description: Lines of the audit log that cannot be read (skipped by every reader).
  returned: always
  type: int
interrupted:
  description: Signs that a run stopped half way through a handover.
  returned: always
  type: list
  elements: str
release_needed:
  description: Whether O(release) is not finished on the host, or (with O(switch)) C(current) does not point at it.
  returned: when O(release) is given and the host's Python runs
  type: bool
assessment:
  description:
    - Whether the host needs a change to run O(release) - C(needed), C(first) (nothing runs here yet), C(change)
      (C(release), C(settings), C(both) or empty), C(healthy) (no drift) and C(reasons), one sentence each.
  returned: when O(release) is set
  type: dict
space:
  description:
    - Whether the next release fits - C(free_mb), C(needed_mb) (an estimate from the kept releases, at least
      O(min_free_mb)), C(reclaimable_mb) (what pruning to O(keep) frees first) and C(fits).
  returned: when O(release) is set
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.asgi.deploy.plugins.module_utils.build import space
from ansible_collections.asgi.deploy.plugins.module_utils.host import App, app_argument_spec
from ansible_collections.asgi.deploy.plugins.module_utils.host_state import (
    NEW_SETTINGS,
    assess,
    read_state,
    release_needed,
)
from ansible_collections.asgi.deploy.plugins.module_utils.settings import KeyDamaged, settings_id
from ansible_collections.asgi.deploy.plugins.module_utils.systemd import Systemd

ARGUMENT_SPEC = app_argument_spec(
    python=dict(type="path", default="/usr/bin/python3"),
    release=dict(type="str", default=""),
    settings=dict(type="str", default=""),
    settings_public=dict(type="str", default=""),
    secrets=dict(type="dict", default={}, no_log=True),
    converge=dict(type="bool", default=False),
    switch=dict(type="bool", default=False),
    keep=dict(type="int", default=5),
    min_free_mb=dict(type="int", default=0),
)


def main():
    module = AnsibleModule(
        argument_spec=ARGUMENT_SPEC, mutually_exclusive=[("settings", "settings_public")], supports_check_mode=True
    )
    p = module.params
    app = App(p["app"], p["base_dir"])
    state = read_state(app, Systemd(module.run_command), module.run_command, p["python"])
    wanted = p["settings"]
    if p["settings_public"]:
        try:
            state["settings_id"] = settings_id(app, p["settings_public"], p["secrets"])
        except KeyDamaged:
            state["settings_id"] = ""  # the key is damaged: state["settings_key"] says how
        # No key yet: no set was ever staged with one here, so the host needs new settings.
        wanted = state["settings_id"] or NEW_SETTINGS
    if not p["release"]:
        module.exit_json(changed=False, **state)
    state["assessment"] = assess(state, p["release"], wanted, p["converge"])
    state["release_needed"] = release_needed(state, p["release"], p["switch"])
    if not state["python"]:
        module.fail_json(msg="{} does not run on this host (asgi_python)".format(p["python"]), **state)
    lock = state.get("lock") or {}
    state["space"] = space(app, state, p["release"], p["keep"], p["min_free_mb"], protect=[lock.get("release", "")])
    if state["assessment"]["needed"] and not state["space"]["fits"]:
        room = state["space"]
        module.fail_json(
            msg=(
                f"release {p['release']} does not fit under {state['root']}: it needs about {room['needed_mb']} MB, "
                f"{room['free_mb']} MB are free and pruning to release_keep={p['keep']} frees "
                f"{room['reclaimable_mb']} MB more; free some space or lower release_keep"
            ),
            **state,
        )
    module.exit_json(changed=False, **state)


if __name__ == "__main__":
    main()
