# Copyright: asgi.deploy maintainers
# MIT License (see LICENSE)
"""Everything a run needs to know about a host, read in one go, and the one assessment of it.

``assess`` answers "does this host need a change, and why?" for the state module, the
handover and every check-mode path alike.
"""

from __future__ import annotations

import os

from ansible_collections.asgi.deploy.plugins.module_utils.gate import SETTINGS_ENV
from ansible_collections.asgi.deploy.plugins.module_utils.host import (
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

RUNNING = ("active", "activating", "reloading", "deactivating")
# The settings a host with no settings key yet is to run: different from whatever it runs.
NEW_SETTINGS = "new"


def instance(app, systemd, which):
    props = systemd.show(app.units[which])
    pid = props.get("MainPID", 0)
    return {
        "unit": app.units[which],
        "loaded": props.get("LoadState") == "loaded",
        "active": props.get("ActiveState", ""),
        "sub": props.get("SubState", ""),
        "result": props.get("Result", ""),
        "pid": pid,
        "restarts": props.get("NRestarts", 0),
        "enabled": props.get("UnitFileState", ""),
        "need_reload": props.get("NeedDaemonReload") == "yes",
        "invocation": props.get("InvocationID", ""),
        "release": systemd.release_of(pid),
        "settings": systemd.environ_of(pid).get(SETTINGS_ENV, ""),
    }


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
    main, nxt = instance(app, systemd, "main"), instance(app, systemd, "next")
    sockets = [systemd.show(app.units[name]) for name in ("socket", "main_probe", "next_probe")]
    state = {
        "app": app.name,
        "root": app.root,
        # `live` is what current points at, and only if that release is finished.
        "live": current if manifest is not None else "",
        "live_version": (manifest or {}).get("version", ""),
        "current": current,
        "previous": link_target(app.link("previous")),
        "next": link_target(app.link("next")),
        "settings": read_text(app.applied).strip(),
        "main": main,
        "next_instance": nxt,
        "units_installed": os.path.isfile(app.unit_path(app.units["main"])),
        # Unit files changed on disk that systemd has not loaded (a daemon-reload was missed).
        "reload_needed": [i["unit"] for i in (main, nxt) if i["need_reload"]]
        + [props.get("Id", "") for props in sockets if props.get("NeedDaemonReload") == "yes"],
        "live_interpreter": bool(manifest is None or interpreter_ok(app, current)),
        "lock": read_lock(app, now),
        # A build, hook or handover running right now (say, left running by a controller that died).
        "busy": flock_holder(app),
        "hooks_running": systemd.running(f"asgi-hook-{app.name}-*"),
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
            tools=[t for t in _listdir(app.tools) if os.path.isfile(os.path.join(app.tools, t, "uv"))],
            free_mb=free_mb(app.root),
            python=python_info(run, python),
            recent=read_audit(app, last=5),
            history=deploy_history(app),
        )
    state["interrupted"] = interrupted(state)
    return state


def interrupted(state):
    """Signs that a run stopped in the middle of a handover (empty when there are none)."""
    signs = []
    nxt, main = state["next_instance"], state["main"]
    if nxt["active"] in RUNNING:
        signs.append(
            "the temporary instance {} is running (release {})".format(nxt["unit"], nxt["release"] or "unknown")
        )
    if main["active"] == "active" and main["release"] and state["current"] and main["release"] != state["current"]:
        signs.append("{} runs {} but current points at {}".format(main["unit"], main["release"], state["current"]))
    if state["current"] and not state["live"]:
        signs.append("current points at {}, which is not a finished release".format(state["current"]))
    return signs


def drift(state):
    """Ways the host differs from what its last run left, though the links say it runs the release."""
    found = []
    main = state["main"]
    if main["active"] == "failed" or main["sub"] == "auto-restart":
        found.append("{} has failed".format(main["unit"]))
    if main["active"] == "active" and main["settings"] and state["settings"] and main["settings"] != state["settings"]:
        found.append(
            "{} runs settings {} but {} were applied".format(
                main["unit"], main["settings"][:12], state["settings"][:12]
            )
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
