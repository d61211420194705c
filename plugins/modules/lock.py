#!/usr/bin/python
# Copyright: asgi.deploy maintainers
# MIT License (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: lock
short_description: Take or release the per-host deploy lock of an app
version_added: 0.2.0
description:
  - The lock (C(<base>/<app>/deploy.lock)) records the run that holds it - run id, actor, operation, version,
    release, controller host, controller id and PID, and when it was taken - so a held lock names its holder and age.
  - Taking it is one exclusive create, so of two runs racing for a host exactly one wins.
  - Taking over names the run whose lock may be replaced (O(take_over)) - a run the controller found dead, or one
    the user named with C(-e asgi_force_unlock=<run>). Under the host flock the lock is read again and replaced
    only if that run still holds it, so of two runs taking over one dead run exactly one wins. A C(force_unlock)
    line naming the previous holder goes to the audit log (C(<base>/<app>/deploys.log)).
  - A run releases only its own lock; O(force) clears the named run's lock, or anyone's with C(all).
  - Once the lock is taken, a deploy hook a dead run left running (C(asgi-hook-<app>-<hook>)) is waited for, or stopped
    with O(stop_hooks), so that no migration ever runs beside another.
  - With O(state=present), also returns the host's state read under the lock (see M(asgi.deploy.state)), with the
    id of the settings set the host is to run.
  - With O(state=needed), reads the host and assesses it against O(release) and the settings (the one assessment,
    see M(asgi.deploy.state)), and takes the lock only where a change is needed, then reads the host again under it -
    a run's first round trip to a host. A host that needs nothing gets no lock (a dead run's lock on it is cleared,
    audited). A live holder is not an error here but a result, RV(held_by) - the controller decides which of two
    runs goes on. A holder that started after this run (O(started)) yields to it, so this round trip waits for it
    to let go, O(wait) seconds or 120, whichever is longer, before it returns it as RV(held_by). The dead-run rule
    is O(alive)'s - a run of this controller whose ansible-playbook is gone.
author: asgi.deploy maintainers (!UNKNOWN)
extends_documentation_fragment:
  - asgi.deploy.app
options:
  state:
    description:
      - C(present) takes the lock, C(absent) releases it, C(needed) reads and assesses the host and takes the lock only
        where a change is needed.
    type: str
    choices: [present, absent, needed]
    default: present
  run:
    description: Identifies this run; only the run that holds the lock releases it without O(force).
    type: str
    required: true
  actor:
    description: Who runs the deploy (C(user@controller)).
    type: str
    default: ""
  operation:
    description: What the run does, recorded in the lock.
    type: str
    choices: [deploy, rollback, revert, exec, remove, settings, release, ""]
    default: ""
  version:
    description: The version the run ships, recorded in the lock.
    type: str
    default: ""
  release:
    description:
      - The release the run ships, recorded in the lock (pruning never removes it).
      - With O(state=needed), none (a rollback, whose target every host's history decides, read under the locks)
        counts every host as needing a change.
    type: str
    default: ""
  controller:
    description: Host name of the controller.
    type: str
    default: ""
  controller_id:
    description: The controller's identity (machine id, boot id, host name, PID namespace), so that only this
      controller ever judges the run dead.
    type: str
    default: ""
  pid:
    description:
      - PID of C(ansible-playbook) on the controller. With O(controller_id), it tells apart two job slices of one
        run (they share the run id) - a slice never takes, or releases, a lock another slice holds.
    type: int
    default: 0
  started:
    description:
      - When the run started on its controller (seconds since the epoch), recorded in the lock. Of two runs that
        meet on some hosts, the one that started first goes on (M(asgi.deploy.plan)'s run id sorts the same way,
        but a run id that job slices share need not).
    type: float
    default: 0.0
  host:
    description: The inventory name of the host, for the audit log.
    type: str
    default: ""
  take_over:
    description: The run id of a dead holder whose lock may be replaced (O(state=present)).
    type: str
    default: ""
  force:
    description: With O(state=absent), the run id whose lock to clear, or C(all) for anyone's.
    type: str
    default: ""
  wait:
    description:
      - Seconds to wait for a live holder to let go before failing (O(state=present)) or returning it as RV(held_by)
        (O(state=needed); at least 120 for a holder that started after this run).
    type: int
    default: 0
  hook_wait:
    description: Seconds to wait for a hook a dead run left running before failing as busy.
    type: int
    default: 660
  reason:
    description: Why O(take_over) may replace that run's lock, for the audit line - C(dead run) or C(force_unlock).
    type: str
    choices: [dead run, force_unlock]
    default: dead run
  stop_hooks:
    description:
      - Stop the hooks of the run whose lock is taken over (O(take_over), or O(force)'s run; C(all) - any), each
        stop audited, instead of waiting for them (the user forced the unlock); other runs' hooks are always waited
        for.
    type: bool
    default: false
  python:
    description: Interpreter the releases are built with (for the state returned with O(state=present)).
    type: path
    default: /usr/bin/python3
  settings_public:
    description: The controller's digest of the options that shape the host's settings (secrets left out).
    type: str
    default: ""
  secrets:
    description: The app's secrets; with O(settings_public) they key the settings id (see M(asgi.deploy.settings)).
    type: dict
    default: {}
  converge:
    description: With O(state=needed), count the host as needing a change even when it runs O(release) as asked.
    type: bool
    default: false
  keep:
    description: With O(state=needed), the finished releases kept; what pruning to it frees is room for O(release).
    type: int
    default: 5
  min_free_mb:
    description: With O(state=needed), the least free space a new release needs.
    type: int
    default: 0
  alive:
    description:
      - With O(state=needed), the controller's processes as M(asgi.deploy.plan) saw them - C(controller_id), C(pids)
        (its ansible processes) and C(certain) (whether it could see every process). A lock of this controller whose
        PID is not among them is a dead run's, taken over naming it; none is when C(certain) is false.
    type: dict
    default: {}
attributes:
  check_mode:
    support: full
    description: Reports whether the lock could be taken or released, and changes nothing.
  diff_mode:
    support: none
    description: The lock file is bookkeeping.
"""

EXAMPLES = r"""
- name: Take the deploy lock
  asgi.deploy.lock:
    app: billing
    run: "{{ run_id }}"
    actor: ops@laptop
    operation: deploy
    version: 1.4.0

- name: Clear the lock a dead run left, naming it (audited)
  asgi.deploy.lock:
    app: billing
    state: absent
    run: "{{ run_id }}"
    force: 3f2a9c1e0b7d4a11
"""

RETURN = r"""
holder:
  description: The holder found before this call (with C(age_s)), or null.
  returned: always
  type: dict
forced:
  description: Whether another run's lock was taken over or cleared.
  returned: always
  type: bool
waited_s:
  description: Seconds spent waiting for a live holder.
  returned: when O(state=present)
  type: float
hooks_stopped:
  description: Hook units of a dead run this call stopped.
  returned: when O(state=present)
  type: list
  elements: str
host_state:
  description: The host's state read under the lock (as M(asgi.deploy.state) returns it), with RV(settings_id).
  returned: when O(state=present)
  type: dict
settings_id:
  description: The id of the settings set the host is to run (its key made if missing).
  returned: when O(state=present) and O(settings_public) is set
  type: str
locked:
  description: Whether this run holds the host's lock now (it needs a change).
  returned: when O(state=needed)
  type: bool
held_by:
  description: The live run holding the lock of a host that needs a change (not taken over), or null.
  returned: when O(state=needed)
  type: dict
"""

import os
import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.asgi.deploy.plugins.module_utils.build import space
from ansible_collections.asgi.deploy.plugins.module_utils.hooks import run_of
from ansible_collections.asgi.deploy.plugins.module_utils.host import App, Busy, app_argument_spec, audit
from ansible_collections.asgi.deploy.plugins.module_utils.host_state import NEW_SETTINGS, assess, read_state
from ansible_collections.asgi.deploy.plugins.module_utils.locking import (
    LATER_RUN_WAIT_S,
    LockHeld,
    describe,
    later,
    ours,
    read_lock,
    replaceable,
    take,
    unlock,
)
from ansible_collections.asgi.deploy.plugins.module_utils.settings import KeyDamaged, settings_id
from ansible_collections.asgi.deploy.plugins.module_utils.systemd import Systemd

# The id check mode shows for a host that has no settings key yet (check mode makes none).
CHECK_MODE_SETTINGS = "0" * 32
ARGUMENT_SPEC = app_argument_spec(
    state=dict(type="str", choices=["present", "absent", "needed"], default="present"),
    run=dict(type="str", required=True),
    actor=dict(type="str", default=""),
    operation=dict(
        type="str", choices=["deploy", "rollback", "revert", "exec", "remove", "settings", "release", ""], default=""
    ),
    version=dict(type="str", default=""),
    release=dict(type="str", default=""),
    controller=dict(type="str", default=""),
    controller_id=dict(type="str", default=""),
    pid=dict(type="int", default=0),
    started=dict(type="float", default=0.0),
    host=dict(type="str", default=""),
    take_over=dict(type="str", default=""),
    force=dict(type="str", default=""),
    wait=dict(type="int", default=0),
    hook_wait=dict(type="int", default=660),
    reason=dict(type="str", choices=["dead run", "force_unlock"], default="dead run"),
    stop_hooks=dict(type="bool", default=False),
    python=dict(type="path", default="/usr/bin/python3"),
    settings_public=dict(type="str", default=""),
    secrets=dict(type="dict", default={}, no_log=True),
    converge=dict(type="bool", default=False),
    keep=dict(type="int", default=5),
    min_free_mb=dict(type="int", default=0),
    alive=dict(type="dict", default={}),
)


def settle_hooks(app, systemd, stop, wait_s, clock=time.monotonic, sleep=time.sleep, who=None):
    """Hooks an earlier run left running end before this run starts its own: those of the run ``stop`` names
    (whose lock the user forced; ``all`` for any) are stopped, each stop audited; the others are waited for (each
    stops at its own time limit). Returns the units stopped."""
    running = systemd.running(*app.hook_units())
    chosen = [u for u in running if stop and (stop == "all" or run_of(systemd.description(u)) == stop)]
    if chosen:
        systemd.stop_for_good(*chosen)
        for unit in chosen:
            audit(app, {"event": "hook_stopped", **(who or {}), "unit": unit, "of_run": stop})
    deadline = clock() + wait_s
    running = [u for u in running if u not in chosen]
    while running:
        if clock() > deadline:
            raise Busy(f"hooks of an earlier run are still running after {wait_s}s: {', '.join(running)}")
        sleep(1.0)
        running = systemd.running(*app.hook_units())
    return chosen


def who(p):
    return {"run": p["run"], "actor": p["actor"], "host": p["host"]}


def process(p):
    """The ansible-playbook this call comes from: what tells two slices of one run apart."""
    return (p["controller_id"], p["pid"])


# What a lock records of its run, besides the run id and actor.
LOCK_FIELDS = ("operation", "version", "release", "controller", "controller_id", "pid", "started")


def check_mode(module, app):
    p = module.params
    holder = read_lock(app)
    mine = ours(holder, p["run"], process(p))
    if p["state"] == "present":
        if holder is not None and not mine and holder.get("run") != p["take_over"]:
            module.fail_json(msg=f"deploy lock held by {describe(holder)}", holder=holder)
        state = read_state(app, Systemd(module.run_command), module.run_command, p["python"])
        result = dict(changed=not mine, holder=holder, forced=bool(holder and not mine), host_state=state)
        if p["settings_public"]:
            # No key is made in check mode: a host without one shows the id its settings would get with a new one.
            made = keyed_id(module, app, state)
            result["settings_id"] = state["settings_id"] = made or CHECK_MODE_SETTINGS
        module.exit_json(hooks_stopped=[], waited_s=0.0, **result)
    clears = holder is not None and (mine or p["force"] in ("all", holder.get("run")))
    module.exit_json(changed=clears, holder=holder, forced=bool(clears and not mine))


def present(module, app, systemd):
    p = module.params
    fields = {k: p[k] for k in LOCK_FIELDS}
    try:
        changed, holder, waited = take(
            app,
            p["run"],
            actor=p["actor"],
            host=p["host"],
            take_over=p["take_over"],
            wait_s=p["wait"],
            reason=p["reason"],
            **fields,
        )
        stopped = settle_hooks(app, systemd, p["take_over"] if p["stop_hooks"] else "", p["hook_wait"], who=who(p))
    except LockHeld as held:
        module.fail_json(msg="{}: {}".format(p["host"] or "host", held), holder=held.holder)
    except Busy as busy:
        module.fail_json(msg="{}: {}".format(p["host"] or "host", busy), busy=True)
    except OSError as exc:
        module.fail_json(msg=f"cannot take the deploy lock {app.lock}: {os.strerror(exc.errno or 0) or exc}")
    state = read_state(app, systemd, module.run_command, p["python"])
    result = dict(changed=changed or bool(stopped), holder=holder, forced=bool(holder), waited_s=waited)
    if p["settings_public"]:
        result["settings_id"] = state["settings_id"] = keyed_id(module, app, state, create=True)
    module.exit_json(hooks_stopped=stopped, host_state=state, **result)


def keyed_id(module, app, state, create=False):
    """The settings id on this host. A damaged key fails, saying so and how to repair it - unless the run converges
    (and changes hosts): then a new key replaces it, audited, and the settings get a new id (a handover)."""
    p = module.params
    try:
        return settings_id(app, p["settings_public"], p["secrets"], create=create)
    except KeyDamaged as damaged:
        if not p["converge"] or module.check_mode:
            module.fail_json(
                msg=f"{p['host'] or 'this host'}: the settings key is damaged: {damaged}. Nothing was changed. "
                "-e asgi_converge=true makes a new key (the settings get a new id: the host is handed over, audited)",
                host_state=state,
            )
        made = settings_id(app, p["settings_public"], p["secrets"], renew=True)
        audit(app, {"event": "repair", "run": p["run"], "actor": p["actor"], "host": p["host"],
                    "what": "settings key", "why": str(damaged)})  # fmt: skip
        state["settings_key"] = "ok"
        return made


def assessed(module, app, systemd):
    """The host read and assessed against the run's release and settings (the one assessment)."""
    p = module.params
    state = read_state(app, systemd, module.run_command, p["python"])
    if not p["release"]:
        state["assessment"] = {"needed": True, "reasons": []}
        return state
    wanted = ""
    if p["settings_public"]:
        state["settings_id"] = keyed_id(module, app, state)
        # No key yet: no set was ever staged with one here, so the host needs new settings.
        wanted = state["settings_id"] or NEW_SETTINGS
    state["assessment"] = assess(state, p["release"], wanted, p["converge"])
    return state


def fits(module, app, state):
    """Fail, with the numbers, when the release does not fit once pruned to ``keep``; else the room found."""
    p = module.params
    if not state["python"]:
        module.fail_json(msg="{} does not run on this host (asgi_python)".format(p["python"]), host_state=state)
    lock = state.get("lock") or {}
    room = space(app, state, p["release"], p["keep"], p["min_free_mb"], protect=[lock.get("release", "")])
    if not room["fits"]:
        module.fail_json(
            msg=(
                f"release {p['release']} does not fit under {state['root']}: it needs about {room['needed_mb']} MB, "
                f"{room['free_mb']} MB are free and pruning to release_keep={p['keep']} frees "
                f"{room['reclaimable_mb']} MB more; free some space or lower release_keep"
            ),
            host_state=state,
        )
    return room


def where_needed(module, app, systemd):
    """Read, assess, and lock only where a change is needed (then read again, under the lock)."""
    p = module.params
    alive = p["alive"] or {}
    state = assessed(module, app, systemd)
    holder = state.get("lock")
    replace = replaceable(holder, p["force"], alive.get("controller_id", ""), alive.get("pids", []),
                          bool(alive.get("certain", False)))  # fmt: skip
    done = dict(locked=False, held_by=None, holder=holder, hooks_stopped=[], waited_s=0.0)
    if not state["assessment"]["needed"]:
        cleared = False
        if replace and not module.check_mode:
            # A dead (or named) run's lock on a host this run does not change: cleared, naming it.
            cleared = unlock(app, p["run"], actor=p["actor"], host=p["host"], force=replace, reason=p["reason"])[0]
        module.exit_json(changed=cleared, forced=cleared, host_state=state, **done)
    if p["release"]:
        state["space"] = fits(module, app, state)
    if module.check_mode:
        live = holder if holder and not ours(holder, p["run"], process(p)) and holder.get("run") != replace else None
        # Would be locked (unless another run holds it): what follows shows, in check mode, what it would do.
        module.exit_json(changed=True, forced=bool(replace), host_state=state,
                         **{**done, "locked": not live, "held_by": live},
                         settings_id=state.get("settings_id") or CHECK_MODE_SETTINGS)  # fmt: skip
    fields = {k: p[k] for k in LOCK_FIELDS}
    try:
        taking = dict(actor=p["actor"], host=p["host"], take_over=replace, reason=p["reason"], **fields)
        try:
            changed, taken, waited = take(app, p["run"], wait_s=p["wait"], **taking)
        except LockHeld as held:
            if not later(held.holder, p["run"], p["started"]):
                raise
            # A run that started after this one yields to it once its own first round trip shows it: wait for that.
            changed, taken, waited = take(app, p["run"], wait_s=max(p["wait"], LATER_RUN_WAIT_S), **taking)
        forced = ("all" if p["force"] == "all" else replace) if p["stop_hooks"] else ""
        stopped = settle_hooks(app, systemd, forced, p["hook_wait"], who=who(p))
    except LockHeld as held:
        module.exit_json(changed=False, forced=False, host_state=state, **{**done, "held_by": held.holder})
    except Busy as busy:
        module.fail_json(msg="{}: {}".format(p["host"] or "host", busy), busy=True)
    # What the run works from is what it reads under its lock (another run may have finished meanwhile).
    state = assessed(module, app, systemd)
    if not state["assessment"]["needed"]:
        unlock(app, p["run"], actor=p["actor"], host=p["host"], process=process(p))
        module.exit_json(changed=bool(taken), forced=bool(taken), host_state=state, **done)
    if p["settings_public"] and not state["settings_id"]:
        state["settings_id"] = settings_id(app, p["settings_public"], p["secrets"], create=True)
    result = dict(locked=True, held_by=None, holder=taken, hooks_stopped=stopped, waited_s=waited)
    module.exit_json(changed=changed or bool(stopped), forced=bool(taken), host_state=state,
                     settings_id=state.get("settings_id", ""), **result)  # fmt: skip


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    p = module.params
    app = App(p["app"], p["base_dir"])
    if not p["run"]:
        module.fail_json(msg="lock: run must not be empty")
    if p["state"] == "needed":
        where_needed(module, app, Systemd(module.run_command))
    if module.check_mode:
        check_mode(module, app)
    if p["state"] == "present":
        present(module, app, Systemd(module.run_command))
    reason = p["reason"] if p["reason"] == "dead run" and p["force"] else ""
    changed, holder = unlock(app, p["run"], actor=p["actor"], host=p["host"], force=p["force"], reason=reason,
                             process=process(p))  # fmt: skip
    module.exit_json(changed=changed, holder=holder, forced=bool(changed and holder and holder.get("run") != p["run"]))


if __name__ == "__main__":
    main()
