# Copyright: asgi.deploy maintainers
# MIT License (see LICENSE)
"""What a run prints, from every host's state and results: the fleet's status, the summary at the end, why it
stopped and what it did before, a one-off command's output, merged logs, the canary's verdict, a verify.
"""

from __future__ import annotations

import json
import time

from ansible_collections.asgi.deploy.plugins.module_utils.host_state import damage
from ansible_collections.asgi.deploy.plugins.plugin_utils.moves import history_stack


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
