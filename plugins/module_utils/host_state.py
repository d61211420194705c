# Copyright: asgi.deploy maintainers
# MIT License (see LICENSE)
"""Everything a run needs to know about a host, read in one go, and the one assessment of it.

``assess`` answers "does this host need a change, and why?" for the state module, the
handover and every check-mode path alike.
"""

from __future__ import annotations

import os

from ansible_collections.asgi.deploy.plugins.module_utils.front_door import FrontDoor
from ansible_collections.asgi.deploy.plugins.module_utils.gate import SETTINGS_ENV
from ansible_collections.asgi.deploy.plugins.module_utils.host import (
    SLOTS,
    audit_corrupt,
    deploy_history,
    flock_holder,
    free_mb,
    link_target,
    list_releases,
    python_info,
    read_audit,
    read_manifest,
    read_text,
)
from ansible_collections.asgi.deploy.plugins.module_utils.locking import read_lock
from ansible_collections.asgi.deploy.plugins.module_utils.settings import key_state
from ansible_collections.asgi.deploy.plugins.module_utils.systemd import RUNNING

# The settings a host with no settings key yet is to run: different from whatever it runs.
NEW_SETTINGS = "new"


def instance(systemd, unit, live=False):
    """One instance as systemd and /proc see it: its state, and the release and settings its main PID runs."""
    props = systemd.show(unit)
    pid = props.get("MainPID", 0)
    active = props.get("ActiveState", "")
    found = {
        "unit": unit,
        "live": live,
        "loaded": props.get("LoadState") == "loaded",
        "active": active,
        "sub": props.get("SubState", ""),
        "result": props.get("Result", ""),
        "pid": pid,
        "restarts": props.get("NRestarts", 0),
        "need_reload": props.get("NeedDaemonReload") == "yes",
        "invocation": props.get("InvocationID", ""),
        "release": systemd.release_of(pid),
        "settings": systemd.environ_of(pid).get(SETTINGS_ENV, ""),
        # An instance that is not live and still has processes is draining the connections it had.
        "draining": not live and active == "deactivating",
    }
    found["connections"] = systemd.connections_of(pid) if active in RUNNING else 0
    return found


def interpreter_ok(app, release_id):
    """The release's venv still has an interpreter (its link to the system Python resolves)."""
    return os.path.exists(os.path.join(app.release_dir(release_id), "venv", "bin", "python"))


def _listdir(path):
    try:
        return sorted(os.listdir(path))
    except (FileNotFoundError, NotADirectoryError):
        return []


def read_state(app, systemd, run, python="/usr/bin/python3", now=None, full=True):
    """The host as a run sees it. ``full=False`` reads only what a handover decides on."""
    current = link_target(app.link("current"))
    manifest = read_manifest(app, current) if current else None
    live_slot = app.live_slot()
    slots = {slot: instance(systemd, app.units[slot], live=slot == live_slot) for slot in SLOTS}
    legacy = {}
    if live_slot == "legacy":
        legacy = {which: instance(systemd, app.legacy_units[which], live=which == "main") for which in ("main", "next")}
    serving = slots.get(live_slot) or legacy.get("main") or {}
    socket_units = [app.units["socket"]] + [app.units[f"{slot}_probe"] for slot in SLOTS]
    state = {
        "app": app.name,
        "root": app.root,
        # `live` is what current points at, and only if that release is finished.
        "live": current if manifest is not None else "",
        "live_version": (manifest or {}).get("version", ""),
        "current": current,
        "previous": link_target(app.link("previous")),
        "settings": read_text(app.applied).strip(),
        # blue, green; "legacy" for the layout before slots; "" when nothing was installed.
        "live_slot": live_slot,
        "slots": {slot: {**slots[slot], "link": link_target(app.link(slot))} for slot in SLOTS},
        "serving": serving,
        "legacy": legacy,
        "units_installed": bool(live_slot),
        # Unit files changed on disk that systemd has not loaded (a daemon-reload was missed).
        "reload_needed": [i["unit"] for i in (*slots.values(), *legacy.values()) if i["need_reload"]]
        + [unit for unit in socket_units if systemd.show(unit).get("NeedDaemonReload") == "yes"],
        "live_interpreter": bool(manifest is None or interpreter_ok(app, current)),
        "lock": read_lock(app, now),
        # A build, hook or handover running right now (say, left running by a controller that died).
        "busy": flock_holder(app),
        "hooks_running": systemd.running(*app.hook_units()),
        # "ok", "missing" (no settings set made here yet), or what is wrong with it.
        "settings_key": key_state(app),
        # {since, run, actor} while the front door answers 503 (maintenance.yml), {} otherwise.
        "maintenance": FrontDoor(app).maintenance(),
    }
    if full:
        kept, unfinished = list_releases(app)
        for release in kept:
            release["interpreter"] = interpreter_ok(app, release["id"])
        state.update(
            kept=kept,
            unfinished=unfinished,
            settings_sets=[d for d in _listdir(app.settings_root) if not d.startswith(".")],
            wheelhouses=[k for k in _listdir(app.wheels) if os.path.isfile(os.path.join(app.wheels, k, "SHA256SUMS"))],
            wheel_store=_listdir(app.wheel_store),
            tools=[t for t in _listdir(app.tools) if os.path.isfile(os.path.join(app.tools, t, "uv"))],
            free_mb=free_mb(app.root),
            python=python_info(run, python),
            recent=read_audit(app, last=5),
            audit_corrupt=audit_corrupt(app),
            history=deploy_history(app),
        )
    state["interrupted"] = interrupted(state)
    return state


def interrupted(state):
    """Signs that a run stopped in the middle of a handover (empty when there are none)."""
    signs = []
    serving = state["serving"]
    for slot in state["slots"].values():
        if not slot["live"] and slot["active"] in ("active", "activating", "reloading"):
            signs.append(
                "{} is running (release {}) but is not the live slot".format(slot["unit"], slot["release"] or "unknown")
            )
    nxt = state["legacy"].get("next")
    if nxt and nxt["active"] in RUNNING:
        signs.append(f"the temporary instance {nxt['unit']} is running (release {nxt['release'] or 'unknown'})")
    runs, current = serving.get("release"), state["current"]
    if serving.get("active") == "active" and runs and current and runs != current:
        signs.append(f"{serving['unit']} runs {runs} but current points at {current}")
    if state["current"] and not state["live"]:
        signs.append("current points at {}, which is not a finished release".format(state["current"]))
    return signs


def damage(state):
    """What is broken on the host that a deploy cannot simply redo, in plain words (status shows it)."""
    found = []
    if state.get("settings_key") not in ("ok", "missing", None):
        found.append(f"the settings key is damaged: {state['settings_key']} (-e asgi_converge=true makes a new one)")
    if state.get("audit_corrupt"):
        found.append(f"the audit log has {state['audit_corrupt']} unreadable line(s) (they are skipped)")
    return found


def drift(state):
    """Ways the host differs from what its last run left, though the links say it runs the release."""
    found = []
    serving = state["serving"]
    if state["live_slot"] == "legacy":
        found.append("{} runs the layout before slots (it moves to {})".format(serving["unit"], " and ".join(SLOTS)))
    if serving.get("active") == "failed" or serving.get("sub") == "auto-restart":
        found.append("{} has failed".format(serving["unit"]))
    applied = state["settings"]
    if serving.get("active") == "active" and serving.get("settings") and applied and serving["settings"] != applied:
        found.append(
            "{} runs settings {} but {} were applied".format(serving["unit"], serving["settings"][:12], applied[:12])
        )
    if state.get("reload_needed"):
        found.append("unit files changed on disk but not loaded: {}".format(", ".join(state["reload_needed"])))
    if state["live"] and not state.get("live_interpreter", True):
        found.append("the interpreter of {}'s venv is gone (it is rebuilt)".format(state["live"]))
    return found + state["interrupted"]


def release_needed(state, release, switch=False):
    """Whether the release role alone (no units) has work here: ``release`` is not finished on the host, or
    ``switch`` asks for ``current`` to point at it and it does not."""
    built = release in {r["id"] for r in state.get("kept", [])}
    return not built or (switch and state.get("current") != release)


def assess(state, release, settings="", force=False):
    """The one answer to "does this host need a change to run ``release`` with ``settings``, and why?".

    ``settings`` empty keeps the settings the host runs (a rollback). Returns ``first`` (nothing runs
    here yet), ``change`` (release, settings, both or empty), ``healthy`` (no drift), ``reasons`` and
    ``needed``."""
    first = not state["live"] or not state["units_installed"]
    reasons = []
    if first:
        change = "both"
        reasons.append("first deploy")
    else:
        release_changed = state["live"] != release
        settings_changed = bool(settings) and state["settings"] != settings
        change = {(True, True): "both", (True, False): "release", (False, True): "settings"}.get(
            (release_changed, settings_changed), ""
        )
        if release_changed:
            reasons.append("release {} -> {}".format(state["live"], release))
        if settings_changed:
            reasons.append("settings {} -> {}".format(state["settings"][:12] or "none", settings[:12]))
    found = drift(state)
    if force and not reasons and not found:
        reasons.append("converge requested")
    return {
        "first": first,
        "change": change,
        "healthy": not found,
        "reasons": reasons + found,
        "needed": bool(reasons or found),
    }
