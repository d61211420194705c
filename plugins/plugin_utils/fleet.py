# Copyright: asgi.deploy maintainers
# MIT License (see LICENSE)
"""Decisions and reports over the whole fleet, from each host's state (see the state module)."""

from __future__ import annotations

import hashlib
import os


class FleetError(Exception):
    pass


def _kept(state):
    return {r["id"]: r for r in state.get("kept", [])}


def _built_at(states, release):
    for s in states.values():
        for r in s.get("kept", []):
            if r["id"] == release:
                return r.get("built_at", "")
    return ""


def _step_back(states):
    """The release the whole fleet steps back to, without a version.

    A fleet on one release goes to the newest of its hosts' previous releases that every host keeps (hosts
    deployed more often than others may have a newer previous one than the rest). A fleet a failed run left
    on two releases goes to the one every host runs or has just left; anything more scattered needs a version.
    """
    lives = {s.get("live") for s in states.values()}
    if len(lives) == 1:
        live = lives.pop()
        previous = {s.get("previous") for s in states.values()} - {"", live}
        for release in sorted(previous, key=lambda r: (_built_at(states, r), r), reverse=True):
            if all(release in _kept(s) for s in states.values()):
                return release
        raise FleetError(f"the hosts run {live} and no previous release is kept on every host; give -e version=V.")
    fits = []
    for release in sorted((lives | {s.get("previous") for s in states.values()}) - {""}):
        reachable = all(s.get("live") == release or s.get("previous") == release for s in states.values())
        if reachable and not all(s.get("live") == release for s in states.values()):
            fits.append(release)
    if len(fits) != 1:
        where = "; ".join(
            f"{h}: {s.get('live') or 'none'} (previous {s.get('previous') or 'none'})"
            for h, s in sorted(states.items())
        )
        raise FleetError(f"no single previous release for the whole fleet ({where}); give -e version=V.")
    return fits[0]


def rollback_plan(states, version=""):
    """One release for every host: ``{"target", "moves": [{host, release}], "message"}``.

    With ``version``: the newest release of that version that every host keeps. Without: the release R
    such that every host either runs R or has R as its previous release (its history's step back), and
    not every host runs it already; when no single such release exists, the fleet is too scattered to
    guess and the caller must name a version.
    """
    if not states:
        raise FleetError("no hosts to roll back")
    if version:
        common = None
        for host, state in states.items():
            ids = {r["id"] for r in state.get("kept", []) if r.get("version") == version}
            if not ids:
                versions = sorted({r.get("version", "") for r in state.get("kept", [])})
                raise FleetError(
                    "version {} is not kept on {}; kept versions: {} (live: {}).".format(
                        version, host, ", ".join(versions) or "none", state.get("live") or "none"
                    )
                )
            common = ids if common is None else common & ids
        if not common:
            raise FleetError(
                f"version {version} was built differently on different hosts (no release id kept on every host); "
                "deploy it again to make the fleet uniform."
            )
        some = next(iter(states.values()))
        target = max(common, key=lambda i: (_kept(some)[i].get("built_at", ""), i))
    else:
        target = _step_back(states)
        missing = [h for h, s in states.items() if s.get("live") != target and target not in _kept(s)]
        if missing:
            raise FleetError(f"{target} is no longer kept on {', '.join(sorted(missing))}; give -e version=V.")
    moves = [{"host": h, "release": target} for h, s in sorted(states.items()) if s.get("live") != target]
    staying = sorted(h for h, s in states.items() if s.get("live") == target)
    message = "rollback: every host goes to {}; to change: {}{}".format(
        target,
        ", ".join(m["host"] for m in moves) or "none",
        "; already there: {}".format(", ".join(staying)) if staying else "",
    )
    return {"target": target, "moves": moves, "message": message}


def _instance(i):
    if not i or (i.get("active") in ("", "inactive") and not i.get("pid")):
        return "-"
    state = i.get("active", "?") if i.get("sub") in ("running", "") else f"{i.get('active')}/{i.get('sub')}"
    return f"{state} {i['release']}" if i.get("release") else state


def _lock(lock):
    if not lock:
        return "no"
    return f"{lock['age_s']:.0f}s" if lock.get("age_s") is not None else "held"


def _event(host, r):
    when, event = str(r.get("time", ""))[:19], r.get("event", "")
    if "to" in r:
        what = f"{r.get('from') or '-'} -> {r.get('to')} {r.get('strategy', '')} {r.get('result', '')}"
    else:
        what = f"by {r.get('actor', '?')}"
    return f"{host:<12} {when} {event:<8} {what}"


def status_table(states):
    """A plain text table of the fleet, the last events, and anything that needs a look."""
    lines = [f"{'HOST':<12} {'LIVE':<24} {'MAIN':<34} {'NEXT':<26} {'LOCK':<8} KEPT"]
    notes, recent = [], []
    for host, s in sorted(states.items()):
        kept = " ".join(r["id"] for r in s.get("kept", []))
        main, nxt = _instance(s.get("main")), _instance(s.get("next_instance"))
        lines.append(f"{host:<12} {s.get('live') or '-':<24} {main:<34} {nxt:<26} {_lock(s.get('lock')):<8} {kept}")
        lock = s.get("lock")
        if lock:
            what = f"{lock.get('operation', '')} {lock.get('version', '')}"
            holder = f"{lock.get('actor', '?')} ({what}), run {lock.get('run', '?')}"
            notes.append(f"{host}: deploy lock held by {holder}, {_lock(lock)} ago")
        if s.get("busy"):
            notes.append(f"{host}: a build or handover is running on the host now (pid {s['busy']})")
        notes += [f"{host}: {sign}" for sign in s.get("interrupted", [])]
        recent += [_event(host, r) for r in s.get("recent", [])]
    text = "\n".join(lines)
    if notes:
        text += "\n\nNeeds a look:\n" + "\n".join(notes)
    if recent:
        text += "\n\nLast events:\n" + "\n".join(recent)
    return text


def controller_id(machine_id="/etc/machine-id"):
    """This controller, beyond its host name (two laptops may both be called "localhost")."""
    try:
        with open(machine_id, "rb") as stream:
            return hashlib.sha256(stream.read().strip()).hexdigest()[:16]
    except OSError:
        return ""


def dead_run(holder, me=None, proc="/proc"):
    """True when a lock was taken from this controller by an ansible-playbook that no longer runs:
    its lock can be taken over (with an audit line) without asking for force_unlock."""
    me = controller_id() if me is None else me
    if not holder or not me or holder.get("controller_id") != me or not holder.get("pid"):
        return False
    try:
        with open(os.path.join(proc, str(int(holder["pid"])), "cmdline"), "rb") as stream:
            cmdline = stream.read()
    except (OSError, ValueError):
        return True
    return b"ansible" not in cmdline
