# Copyright: asgi.deploy maintainers
# MIT License (see LICENSE)
"""Decisions and reports over the whole fleet, from each host's state (see the state module).

Every decision a run makes across hosts is here, in Python with tests: which hosts a deploy or a
rollback moves and to what, which host goes first, whether a lock's holder is dead, what the run
prints at the end and when it fails. The roles only ask.
"""

from __future__ import annotations

import calendar
import hashlib
import json
import os
import socket
import time

from ansible_collections.asgi.deploy.plugins.module_utils import locking
from ansible_collections.asgi.deploy.plugins.module_utils.host_state import damage


class FleetError(Exception):
    pass


def _kept(state):
    return {r["id"]: r for r in state.get("kept", [])}


# -- who goes where ----------------------------------------------------------------------


def lock_round(order, results, run, release, started=0.0):
    """What a run does after its first round trip (asgi.deploy.lock state=needed on every host): ``{moves, pending,
    held, yield_to, wait_on}``.

    A host that needs a change is locked (pending) or held by another live run. Of two runs that each hold some
    hosts, the one that started first goes on (``started``, else the time its run id begins with): a later run
    yields (it releases what it took and stops, naming that run); the earlier one waits on the hosts the later one
    held, until it lets go. A host held by a run that started earlier makes this run yield whatever it took; so does
    a host another slice of this very run holds (a host belongs to one slice)."""
    moves, held = {}, {}
    for host in order:
        result = results.get(host) or {}
        verdict = (result.get("host_state") or {}).get("assessment") or {}
        locked, holder = bool(result.get("locked")), result.get("held_by")
        moves[host] = {"release": release, "pending": locked or bool(holder), "reasons": verdict.get("reasons", [])}
        if holder:
            held[host] = holder
    mine = started_key(run, started)
    first = sorted(
        (started_key(h.get("run") or "", h.get("started")), host)
        for host, h in held.items()
        if (h.get("run") or "") == run or started_key(h.get("run") or "", h.get("started")) < mine
    )
    yield_to = None
    if first:
        holder = held[first[0][1]]
        yield_to = {**holder, "other_slice": True} if holder.get("run") == run else holder
    return {
        "moves": moves,
        "pending": [h for h in order if moves[h]["pending"]],
        "held": held,
        "yield_to": yield_to,
        "wait_on": [] if yield_to else [h for h in order if h in held],
    }


def started_key(run, started=None):
    """What orders two runs by start time: ``started`` (seconds, the controller's clock) where the lock records it,
    else the milliseconds a generated run id begins with (0 for any other id: such a holder counts as earlier)."""
    try:
        seconds = float(started or 0) or (int(run[:12], 16) / 1000 if len(run) == 16 else 0.0)
    except ValueError:
        seconds = 0.0
    return (seconds, run)


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


# -- locks ----------------------------------------------------------------------------------


def _read(path):
    try:
        with open(path, "rb") as stream:
            return stream.read().strip()
    except OSError:
        return b""


def controller_id(root="/"):
    """This controller: its machine id, boot id, host name and PID namespace. Two containers from one image
    (the same machine id), a clone, a reboot or another PID namespace are other controllers. Empty when the
    machine id is missing or empty: then no run of this controller is ever judged dead."""
    machine = _read(os.path.join(root, "etc/machine-id"))
    if not machine:
        return ""
    boot = _read(os.path.join(root, "proc/sys/kernel/random/boot_id"))
    try:
        namespace = os.readlink(os.path.join(root, "proc/self/ns/pid")).encode()
    except OSError:
        namespace = b""
    identity = b"|".join([machine, boot, socket.gethostname().encode(), namespace])
    return hashlib.sha256(identity).hexdigest()[:16]


def alive_runs(proc="/proc"):
    """This controller's ansible processes, as a run's lock records them: ``{controller_id, pids, certain}``.
    ``certain`` is false when some process could not be read (/proc mounted with hidepid, another user's process):
    then no run of this controller is judged dead, and a dead run's lock needs -e asgi_force_unlock=<run>."""
    pids, certain = [], not _hidepid(proc)
    for entry in os.listdir(proc):
        if not entry.isdigit():
            continue
        try:
            with open(os.path.join(proc, entry, "cmdline"), "rb") as stream:
                cmdline = stream.read()
        except FileNotFoundError:
            continue  # gone meanwhile
        except OSError:
            certain = False
            continue
        if b"ansible" in cmdline:
            pids.append(int(entry))
    return {"controller_id": controller_id(), "pids": sorted(pids), "certain": certain}


def _hidepid(proc):
    """Whether ``proc`` is mounted so that other users' processes are hidden (hidepid=1/2, invisible, noaccess)."""
    try:
        with open(os.path.join(proc, "self", "mountinfo"), encoding="utf-8") as stream:
            lines = stream.read().splitlines()
    except OSError:
        return False
    for line in lines:
        fields = line.split(" - ", 1)
        if len(fields) == 2 and fields[1].startswith("proc ") and " " + proc + " " in " " + fields[0] + " ":
            options = fields[1].split()[-1].split(",")
            return any(o.startswith("hidepid=") and o not in ("hidepid=0", "hidepid=off") for o in options)
    return False


def lock_message(holder):
    """What a run that yields says: who holds the host, and that nothing was changed by this run."""
    holder = holder or {}
    if holder.get("other_slice"):
        return (
            f"deploy lock held by another slice of this run: {locking.describe(holder)}; a host belongs to one "
            "slice only (give each job slice its own hosts)"
        )
    return f"deploy lock held by {locking.describe(holder)}; it started first and goes on"


# -- what a run prints ------------------------------------------------------------------------


def _instance(i):
    if not i or (i.get("active") in ("", "inactive") and not i.get("pid")):
        return "-"
    state = i.get("active", "?") if i.get("sub") in ("running", "") else f"{i.get('active')}/{i.get('sub')}"
    return f"{state} {i['release']}" if i.get("release") else state


def _draining(state):
    """The slot that drains the connections of the last handover, and how many it still holds ('-' when none)."""
    found = [i for i in (state.get("slots") or {}).values() if i.get("draining")]
    return ", ".join(f"{i['unit']} {i.get('release') or '?'} ({i.get('connections', 0)} conn.)" for i in found) or "-"


def _row(host, s):
    return [host, s["live"] or "-", s["previous"] or "-", s["slot"], s["serving"], s["draining"], s["lock"],
            " ".join(s["kept"])]  # fmt: skip


def _lock(lock):
    if not lock:
        return "no"
    return f"{lock['age_s']:.0f}s" if lock.get("age_s") is not None else "held"


def table(header, rows):
    """Columns as wide as their widest cell (host names of any length)."""
    widths = [max(len(str(c)) for c in column) for column in zip(header, *rows, strict=True)]
    return [
        "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]


def fleet_status(states):
    """The fleet as data (``-e asgi_format=json``): per host, what runs and what needs a look."""
    hosts = {}
    for host, s in sorted(states.items()):
        notes = []
        lock = s.get("lock")
        if lock:
            what = f"{lock.get('operation', '')} {lock.get('version', '')}".strip()
            notes.append(
                f"deploy lock held by {lock.get('actor', '?')} ({what}), run {lock.get('run', '?')}, {_lock(lock)} ago"
            )
        if s.get("busy"):
            notes.append(f"a build, hook or handover is running on the host now (pid {s['busy']})")
        notes += s.get("interrupted", [])
        notes += damage(s)
        hosts[host] = {
            "live": s.get("live", ""),
            "previous": s.get("previous", ""),
            "slot": s.get("live_slot") or "-",
            "serving": _instance(s.get("serving")),
            "draining": _draining(s),
            "lock": _lock(lock),
            "kept": [r["id"] for r in s.get("kept", [])],
            "tree_sha256": next((r.get("tree_sha256", "") for r in s.get("kept", []) if r["id"] == s.get("live")), ""),
            "notes": notes,
            "maintenance": s.get("maintenance") or {},
            "recent": s.get("recent", []),
        }
    return hosts


def _event(host, r):
    when, event = str(r.get("time", ""))[:19], r.get("event", "")
    if "to" in r:
        what = f"{r.get('from') or '-'} -> {r.get('to')} {r.get('strategy', '')} {r.get('result', '')}"
    elif event == "hook":
        what = f"{r.get('hook', '')} {r.get('result', '')} ({r.get('duration_s', '?')}s)"
    else:
        what = f"by {r.get('actor', '?')}"
    return [host, when, event, what.strip()]


def status_lines(states):
    """The fleet as lines of text: a table, what needs a look, the last events."""
    status = fleet_status(states)
    rows = [_row(host, s) for host, s in status.items()]
    lines = table(["HOST", "LIVE", "PREVIOUS", "SLOT", "SERVING", "DRAINING", "LOCK", "KEPT"], rows)
    notes = [f"{host}: {note}" for host, s in status.items() for note in s["notes"]]
    under = {host: s["maintenance"] for host, s in status.items() if s["maintenance"]}
    if under:
        since = sorted({str(m.get("since", "?")) for m in under.values()})
        lines += ["", f"Maintenance: ON on {', '.join(under)} (since {', '.join(since)}; the front door answers 503; "
                  "maintenance.yml -e asgi_maintenance=off ends it)"]  # fmt: skip
    if notes:
        lines += ["", "Needs a look:", *notes]
    stack, left = history_stack(states)
    if stack:
        lines += ["", "History (a rollback without a version goes one step down): " + " -> ".join(stack[-6:])]
    if left:
        lines.append("Rolled back from (never chosen by default again): " + ", ".join(sorted(left)))
    events = [_event(host, r) for host, s in status.items() for r in s["recent"]]
    if events:
        lines += ["", "Last events:", *table(["HOST", "TIME", "EVENT", "WHAT"], events)[1:]]
    return lines


def status_table(states):
    return "\n".join(status_lines(states))


def _seconds(result):
    return "{:.1f} s".format(float(result.get("duration_s") or 0))


def summary_lines(operation, results, states, started, now=None):
    """A run's last words: per host from -> to, strategy and seconds; hosts already there; wall time."""
    now = time.time() if now is None else now
    wall = f"{max(0.0, now - float(started or now)):.0f} s"
    changed = {h: r for h, r in sorted(results.items()) if r.get("changed")}
    already = sorted(h for h in states if h not in changed)
    if not changed:
        return [f"{operation}: no host needed a change ({len(states)} checked, {wall})."]
    groups = {}
    for host, r in changed.items():
        groups.setdefault((r.get("from") or "nothing", r.get("to", "?"), r.get("strategy", "")), []).append(host)
    lines = [f"{operation}: {len(changed)} host(s) changed in {wall}:"]
    for (before, after, strategy), hosts in groups.items():
        timings = ", ".join(f"{h} {_seconds(changed[h])}" for h in hosts)
        lines.append(f"  {before} -> {after} ({strategy}): {timings}")
    if already:
        lines.append("  already there: " + ", ".join(already))
    return lines


def grouped_problems(problems):
    """``host: problem`` lines as one line per problem, naming the hosts that have it."""
    hosts_of = {}
    for line in problems:
        host, sep, problem = line.partition(": ")
        key = problem if sep else line
        hosts_of.setdefault(key, [])
        if sep:
            hosts_of[key].append(host)
    return [f"{problem} ({', '.join(hosts)})" if hosts else problem for problem, hosts in hosts_of.items()]


def _lines(value):
    if isinstance(value, (list, tuple)):
        return [str(line) for line in value]
    return str(value or "").splitlines()


def outcome(results, reverted=()):
    """What a stopping run did to its hosts: ``switched`` (handed over in this run), ``revertible`` (those that ran
    something before), ``went_back`` and ``stuck`` (on_failure=revert: taken back, or not, and why)."""
    switched = [h for h, r in sorted(results.items()) if (r or {}).get("result") == "success"]
    went_back, stuck = [], []
    for item in reverted:
        host = item.get("__rollout_item", "?")
        if item.get("step") or item.get("failed"):
            stuck.append([host, _lines(item.get("msg", "unknown error"))[0] if item.get("msg") else "unknown error"])
        else:
            went_back.append(host)
    return {
        "switched": switched,
        "revertible": [h for h in switched if results[h].get("from")],
        "went_back": went_back,
        "stuck": stuck,
        "stayed": [h for h in switched if h not in went_back],
    }


def failure_lines(operation, stage, failed, host="", done=None, live_version=""):
    """The message a run stops with, as lines: what failed (the failure's own lines, problems one per line),
    what the fleet looks like now, what to do, and the failed instance's journal."""
    failed, done = dict(failed or {}), dict(done or {})
    said = _lines(failed.get("msg")) or [f"failed on {host or 'a host'}"]
    first = said[0] if said[0].startswith(f"{operation}:") else f"{operation}: {said[0]}"
    lines = [first, *said[1:], *[f"  - {p}" for p in failed.get("problems", [])]]
    if stage == "plan":
        lines.append("Nothing was changed.")
    elif stage == "build":
        kept = " (the release stays built where it was finished)" if operation == "deploy" else ""
        lines.append(f"No host was switched{kept}.")
    else:
        lines.append("Hosts not yet reached were not changed.")
        if done.get("went_back"):
            lines.append("Taken back to what they ran (on_failure=revert): {}.".format(", ".join(done["went_back"])))
        lines += [f"Could not take {h} back: {why}." for h, why in done.get("stuck", [])]
        if done.get("stayed"):
            again = f" -e asgi_version={live_version}" if live_version else ""
            lines.append(
                "Switched in this run and still on the new release: {} (to go back: ansible-playbook "
                "asgi.deploy.rollback{}).".format(", ".join(done["stayed"]), again)
            )
    for key, title in (("output", "Its last lines:"), ("journal", "Journal of the instance that failed:")):
        if failed.get(key):
            lines += [title, *_lines(failed[key])]
    return lines


def as_json(data):
    return json.dumps(data, indent=2, sort_keys=True)


def merged_logs(per_host):
    """Every host's journal entries as one list of lines, in time order, each with its host."""
    entries = sorted((e["t"], host, e["unit"], e["message"]) for host, found in per_host.items() for e in found)
    return [
        "{} {} {}: {}".format(time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t / 1e6)), host, unit, message)
        for t, host, unit, message in entries
    ]


def exec_lines(results):
    """What a command run on each host printed, and how it ended, host by host."""
    lines = []
    for host, r in sorted(results.items()):
        status = "exit {}".format(r.get("rc", "?")) + (
            " (stopped at its time limit)" if r.get("result") == "timeout" else ""
        )
        lines.append(f"== {host}: {status}, {r.get('duration_s', '?')} s")
        lines += [f"   {line}" for line in str(r.get("output", "")).splitlines()]
    return lines


def canary_verdict(canary, others, threshold=0.05, min_requests=20):
    """Whether the hosts just switched (``canary``: ``{host: {requests, errors}}``) fail more than the hosts not
    yet switched (``others``) by more than ``threshold`` (a share of requests): ``{bad, judged, lines}``. With fewer
    than ``min_requests`` on the canary there is nothing to judge by: not bad, not judged (the rollout stops there,
    the canary staying, rather than go on unseen)."""

    def rate(counts):
        requests = sum(c.get("requests", 0) for c in counts.values())
        errors = sum(c.get("errors", 0) for c in counts.values())
        return requests, errors, (errors / requests if requests else 0.0)

    c_req, c_err, c_rate = rate(canary)
    o_req, o_err, o_rate = rate(others)
    numbers = (
        f"canary {', '.join(sorted(canary))}: {c_err} of {c_req} requests failed ({c_rate:.1%}); "
        f"not yet switched {', '.join(sorted(others)) or 'none'}: {o_err} of {o_req} ({o_rate:.1%})"
    )
    if c_req < min_requests:
        return {
            "bad": False,
            "judged": False,
            "lines": [
                f"canary check: could not judge - {c_req} request(s) on the canary, fewer than "
                f"rollout_canary_min_requests ({min_requests}) ({numbers}).",
                "The rollout stops here; the canary stays on the new release. Give it traffic, a longer "
                "rollout_pause or a lower rollout_canary_min_requests, and run the deploy again to go on.",
            ],
        }
    bad = c_rate > o_rate + threshold
    verdict = f"more than {threshold:.0%} above the others: the canary goes back" if bad else "within bounds"
    return {"bad": bad, "judged": True, "lines": [f"canary check: {numbers}; {verdict}."]}


def verify_failed(results):
    """Whether verify found anything, or could not verify, on any host (registered with failed_when: false)."""
    return any(r.get("findings") or "releases" not in r for r in results.values())


def verify_lines(results):
    """What verify found on each host, or that every release there is as built."""
    lines = []
    for host, r in sorted(results.items()):
        releases = r.get("releases", {})
        if r.get("findings"):
            lines += [f"{host}: {finding}" for finding in r["findings"]]
        elif "releases" not in r:
            lines.append(f"{host}: {r.get('msg', 'verify failed')}")
        else:
            rebuilt = " and rebuilt to the same bytes" if any("reproduced" in v for v in releases.values()) else ""
            seconds = sum(v.get("seconds", 0) for v in releases.values())
            lines.append(f"{host}: {len(releases)} release(s) as built{rebuilt} ({seconds:.1f} s)")
    return lines
