# Copyright: asgi.deploy maintainers
# MIT License (see LICENSE)
"""Decisions and reports over the whole fleet, from each host's state (see the state module)."""

from __future__ import annotations


class FleetError(Exception):
    pass


def _kept(state):
    return {r["id"]: r for r in state.get("kept", [])}


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
                    "version {} is not kept on {}; kept versions: {} (live: {}). Nothing was changed.".format(
                        version, host, ", ".join(versions) or "none", state.get("live") or "none"
                    )
                )
            common = ids if common is None else common & ids
        if not common:
            raise FleetError(
                f"version {version} was built differently on different hosts (no release id kept on every host); "
                "deploy it again to make the fleet uniform. Nothing was changed."
            )
        some = next(iter(states.values()))
        target = max(common, key=lambda i: (_kept(some)[i].get("built_at", ""), i))
    else:
        candidates = {s.get("previous") for s in states.values()} | {s.get("live") for s in states.values()}
        fits = []
        for release in sorted(candidates - {""}):
            reachable = all(s.get("live") == release or s.get("previous") == release for s in states.values())
            if reachable and not all(s.get("live") == release for s in states.values()):
                fits.append(release)
        if len(fits) != 1:
            where = "; ".join(
                "{}: {} (previous {})".format(h, s.get("live") or "none", s.get("previous") or "none")
                for h, s in sorted(states.items())
            )
            raise FleetError(
                f"no single previous release for the whole fleet ({where}); give -e version=V. Nothing was changed."
            )
        target = fits[0]
        missing = [h for h, s in states.items() if s.get("live") != target and target not in _kept(s)]
        if missing:
            raise FleetError(
                "{} is no longer kept on {}; give -e version=V. Nothing was changed.".format(
                    target, ", ".join(sorted(missing))
                )
            )
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
        notes += [f"{host}: {sign}" for sign in s.get("interrupted", [])]
        recent += [_event(host, r) for r in s.get("recent", [])]
    text = "\n".join(lines)
    if notes:
        text += "\n\nNeeds a look:\n" + "\n".join(notes)
    if recent:
        text += "\n\nLast events:\n" + "\n".join(recent)
    return text
