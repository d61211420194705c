# Copyright: asgi.deploy maintainers
# MIT License (see LICENSE)
"""Everything a run needs to know about a host, read in one go, and what it means for a run."""

from __future__ import annotations

import os

from ansible_collections.asgi.deploy.plugins.module_utils.gate import SETTINGS_ENV
from ansible_collections.asgi.deploy.plugins.module_utils.host import (
    free_mb,
    link_target,
    list_releases,
    operation_running,
    python_info,
    read_audit,
    read_manifest,
    read_text,
)
from ansible_collections.asgi.deploy.plugins.module_utils.locking import read_lock


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
        "release": systemd.release_of(pid),
        "settings": systemd.environ_of(pid).get(SETTINGS_ENV, ""),
    }


def _listdir(path):
    try:
        return sorted(os.listdir(path))
    except (FileNotFoundError, NotADirectoryError):
        return []


def read_state(app, systemd, python="/usr/bin/python3", now=None):
    current = link_target(app.link("current"))
    kept, unfinished = list_releases(app)
    manifest = read_manifest(app, current) if current else None
    main, nxt = instance(app, systemd, "main"), instance(app, systemd, "next")
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
        "lock": read_lock(app, now),
        "kept": kept,
        "unfinished": unfinished,
        "settings_sets": [d for d in _listdir(app.settings_root) if not d.startswith(".")],
        "wheelhouses": [k for k in _listdir(app.wheels) if os.path.isfile(os.path.join(app.wheels, k, "SHA256SUMS"))],
        "tools": [t for t in _listdir(app.tools) if os.path.isfile(os.path.join(app.tools, t, "uv"))],
        "units_installed": os.path.isfile(app.unit_path(app.units["main"])),
        "free_mb": free_mb(app.root),
        "python": python_info(python),
        "recent": read_audit(app, last=5),
        # A build or handover running right now (say, left running by a controller that died).
        "busy": operation_running(app),
    }
    state["interrupted"] = interrupted(state)
    return state


def interrupted(state):
    """Signs that a run stopped in the middle of a handover (empty when there are none)."""
    signs = []
    nxt, main = state["next_instance"], state["main"]
    if nxt["active"] in ("active", "activating", "reloading"):
        signs.append(
            "the temporary instance {} is running (release {})".format(nxt["unit"], nxt["release"] or "unknown")
        )
    if main["active"] == "active" and main["release"] and state["current"] and main["release"] != state["current"]:
        signs.append("{} runs {} but current points at {}".format(main["unit"], main["release"], state["current"]))
    if state["current"] and not state["live"]:
        signs.append("current points at {}, which is not a finished release".format(state["current"]))
    return signs


def needs(state, release, settings, converge=False):
    """Why this host must be changed to run ``release`` with ``settings`` (empty: it need not)."""
    reasons = []
    if not state["live"]:
        reasons.append("first deploy")
    elif state["live"] != release:
        reasons.append("release {} -> {}".format(state["live"], release))
    if settings and state["settings"] != settings:
        reasons.append("settings {} -> {}".format(state["settings"][:12] or "none", settings[:12]))
    if state["main"]["active"] == "failed" or state["main"]["sub"] == "auto-restart":
        reasons.append("{} has failed".format(state["main"]["unit"]))
    reasons += state["interrupted"]
    if converge and not reasons:
        reasons.append("converge requested")
    return reasons
