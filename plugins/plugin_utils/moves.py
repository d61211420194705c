# Copyright: asgi.deploy maintainers
# MIT License (see LICENSE)
"""Who goes where: from every host's state read under a run's lock, which hosts a deploy or a rollback moves
and to what, which of two runs meeting on a host goes on, and the fleet's audited history a rollback steps down.
Every such decision is here, in Python with tests; the roles only ask (through plugins/filter/fleet.py).
"""

from __future__ import annotations

import calendar
import time

from ansible_collections.asgi.deploy.plugins.module_utils.locking import later, started_key


class FleetError(Exception):
    pass


def _kept(state):
    return {r["id"]: r for r in state.get("kept", [])}


def lock_round(order, results, run, release, started=0.0):
    """What a run does after its first round trip (asgi.deploy.lock state=needed on every host): ``{moves, pending,
    held, yield_to}``.

    A host that needs a change is locked (pending) or held by another live run. Of two runs that each hold some
    hosts, the one that started first goes on (``started``, else the time its run id begins with): a later run
    yields (it releases what it took and stops, naming that run), and the earlier one's round trip waits for it to
    let go (the lock module, ``locking.later``). So a run yields to a host held by a run that started earlier, by
    another slice of this very run (a host belongs to one slice), or by a later run that did not let go within the
    wait (``waited``): the earliest of them is named."""
    moves, held = {}, {}
    for host in order:
        result = results.get(host) or {}
        verdict = (result.get("host_state") or {}).get("assessment") or {}
        locked, holder = bool(result.get("locked")), result.get("held_by")
        moves[host] = {"release": release, "pending": locked or bool(holder), "reasons": verdict.get("reasons", [])}
        if holder:
            held[host] = holder
    yield_to = None
    if held:
        holder = held[min(held, key=lambda host: started_key(held[host].get("run") or "", held[host].get("started")))]
        if holder.get("run") == run:
            yield_to = {**holder, "other_slice": True}
        else:
            yield_to = {**holder, "waited": True} if later(holder, run, started) else holder
    return {
        "moves": moves,
        "pending": [h for h in order if moves[h]["pending"]],
        "held": held,
        "yield_to": yield_to,
    }


def fleet_runs(states):
    """Every run that moved a host, in the order the controller started them (``run_started``, the controller's
    clock; the host's clock only for lines written before runs recorded it), with where it went: ``[{run, event, to,
    hosts}]``. One run, one entry, however many hosts it moved."""
    runs = {}
    for host, state in sorted(states.items()):
        for position, move in enumerate(state.get("history", [])):
            key = move.get("run") or f"{host}-{position}"
            started = move.get("run_started") or _epoch(move.get("time", ""))
            entry = runs.setdefault(key, {"run": key, "event": move.get("event"), "to": move.get("to"),
                                          "started": started, "hosts": set()})  # fmt: skip
            entry["started"] = min(entry["started"], started)
            if move.get("event") == "revert":
                entry["reverted"] = True
            else:
                entry["event"], entry["to"] = move.get("event"), move.get("to")
            entry["hosts"].add(host)
    return sorted(runs.values(), key=lambda r: (r["started"], r["run"]))


def _epoch(iso):
    """Seconds since the epoch of an audit line's UTC ``time`` (0 when unreadable)."""
    try:
        return float(calendar.timegm(time.strptime(iso[:19], "%Y-%m-%dT%H:%M:%S")))
    except ValueError:
        return 0.0


def history_stack(states):
    """The fleet's releases as a stack: a deploy pushes its release, a rollback pops down to where it went (a
    rollback one step back pops the live release). ``(stack, rolled_back_from)``: the releases left, oldest first,
    and the ones a rollback left (never chosen again by default)."""
    stack, left = [], set()
    for run in fleet_runs(states):
        if run.get("reverted"):
            continue  # taken back in its own run (on_failure=revert): it never happened, for the fleet
        target = run["to"]
        if run["event"] == "deploy":
            if not stack or stack[-1] != target:
                stack.append(target)
            left.discard(target)
        elif target in stack:
            while stack[-1] != target:
                left.add(stack.pop())
        else:
            stack.append(target)
    return stack, left


def step_back(states):
    """(target, why): one step down the fleet's audited history - the release below the newest one a host runs,
    never one a rollback left - so a second rollback goes further back."""
    stack, left = history_stack(states)
    lives = {s.get("live") for s in states.values()} - {""}
    positions = [i for i, release in enumerate(stack) if release in lives]
    if not positions:
        raise FleetError(
            "no host runs a release its audit log records as deployed ({}); give -e asgi_version=V".format(
                ", ".join(sorted(lives)) or "nothing runs"
            )
        )
    newest = max(positions)
    # A release only some hosts ran (a rollout stopped half way) is no step back for the fleet.
    everywhere = set.intersection(*({m.get("to") for m in s.get("history", [])} for s in states.values()))
    earlier = [r for r in stack[:newest] if r in everywhere and r not in left]
    if not earlier:
        if newest == 0:
            raise FleetError(f"{stack[0]} is the first release in the fleet's audited history; give -e asgi_version=V")
        raise FleetError(
            f"no release before {stack[newest]} ran on every host (per their audit logs); give -e asgi_version=V"
        )
    target = earlier[-1]
    trail = " -> ".join(stack[max(0, newest - 3) : newest + 1])
    note = f"; rolled back from before: {', '.join(sorted(left))}" if left else ""
    return target, f"the release deployed before {stack[newest]} (history: {trail}{note})"


def by_version(states, version):
    """The newest release of ``version`` that every host keeps."""
    common = None
    for host, state in sorted(states.items()):
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
    return max(common, key=lambda i: (_kept(some)[i].get("built_at", ""), i))


def rollback_plan(states, version="", release=""):
    """One release for every host: ``{target, why, moves: [{host, release}], pending, anchor, message}``. A pinned
    ``release`` (job slices of one rollback name the same one) is the target as it is."""
    if not states:
        raise FleetError("no hosts to roll back")
    if release:
        if version and not release.startswith(version + "-"):
            raise FleetError(f"release {release} is not of version {version}")
        target, why = release, f"release {release}, pinned"
    elif version:
        target, why = by_version(states, version), f"version {version}, as asked"
    else:
        target, why = step_back(states)
    missing = sorted(h for h, s in states.items() if s.get("live") != target and target not in _kept(s))
    if missing:
        raise FleetError(f"{target} is no longer kept on {', '.join(missing)}; give -e asgi_version=V.")
    order = sorted(states)
    pending = [h for h in order if states[h].get("live") != target]
    staying = [h for h in order if h not in pending]
    message = "rollback: every host goes to {} ({}); to change: {}{}".format(
        target, why, ", ".join(pending) or "none", "; already there: {}".format(", ".join(staying)) if staying else ""
    )
    return {
        "target": target,
        "why": why,
        "moves": [{"host": h, "release": target} for h in pending],
        "pending": pending,
        "anchor": pending[0] if pending else "",
        "message": message,
    }


def rollback_round(order, results, run, version="", release="", started=0.0):
    """A rollback after its one round trip, each host read under this run's lock (asgi.deploy.lock with no
    release): where the fleet goes, from every host's history (``rollback_plan``: ``target``, ``message``), and
    which of two runs goes on (``lock_round``, over the hosts that move). The hosts this run locked that are on the
    target already are ``unneeded``: released at once."""
    states = {h: dict(results[h]["host_state"]) for h in order if (results.get(h) or {}).get("host_state")}
    plan = rollback_plan(states, version, release)
    moving = set(plan["pending"])
    locks = lock_round(order, {h: results.get(h) for h in order if h in moving}, run, plan["target"], started)
    for host in moving:
        locks["moves"][host]["reasons"] = [
            "release {} -> {}".format(states[host].get("live") or "none", plan["target"])
        ]
    unneeded = [h for h in order if (results.get(h) or {}).get("locked") and h not in moving]
    return {**locks, "target": plan["target"], "message": plan["message"], "unneeded": unneeded}
