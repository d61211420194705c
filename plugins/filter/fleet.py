# Copyright: asgi.deploy maintainers
# MIT License (see LICENSE)
"""Filters over the state of every host of a run (see plugins/plugin_utils: moves, processes, messages).

A decision that cannot be made comes back as ``{"error": ...}`` for the role to fail with, in its
own words: a filter that raised would surface as "The filter plugin ... failed"."""

from __future__ import annotations

from ansible_collections.asgi.deploy.plugins.plugin_utils import messages, moves, processes


def rollback_round(hosts, hostvars, key, run, version="", release="", started=0.0):
    """After a rollback's one round trip (the lock module with no release, registered as ``key``): see
    moves.rollback_round. A fleet with no release to go to comes back as ``{error}`` (every host's lock to release)."""
    results = {h: dict(hostvars[h].get(key) or {}) for h in hosts}
    try:
        return moves.rollback_round(list(hosts), results, str(run), str(version or ""), str(release or ""),
                                    float(started or 0))  # fmt: skip
    except moves.FleetError as exc:
        return {"error": f"rollback: {exc}"}


def lock_round(hosts, hostvars, key, run, release, started=0.0):
    """After the first round trip (the lock module, state=needed, registered as ``key``): see moves.lock_round."""
    results = {h: dict(hostvars[h].get(key) or {}) for h in hosts}
    return moves.lock_round(list(hosts), results, str(run), str(release), float(started or 0))


def lock_message(holder):
    return processes.lock_message(dict(holder) if holder else None)


def status_lines(states):
    return messages.status_lines(dict(states))


def status_table(states):
    return messages.status_table(dict(states))


def fleet_status(states):
    return messages.fleet_status(dict(states))


def summary_lines(results, operation, states, started):
    return messages.summary_lines(str(operation), dict(results), dict(states), started)


def failure_lines(failed, operation, stage, host="", done=None, live_version=""):
    return messages.failure_lines(str(operation), str(stage), failed, str(host), done, str(live_version or ""))


def outcome(hosts, hostvars, reverted=None):
    """What a stopping run did to ``hosts`` (see messages.outcome), from their registered handovers."""
    results = {h: dict(hostvars[h].get("__rollout_handover") or {}) for h in hosts}
    return messages.outcome(results, list((reverted or {}).get("results", [])))


def grouped_problems(problems):
    return messages.grouped_problems(list(problems))


def states_of(hosts, hostvars, key):
    """``{host: hostvars[host][key]}`` for the hosts that have it."""
    return {host: dict(hostvars[host][key]) for host in hosts if key in hostvars[host]}


def merged_logs(hosts, hostvars, key):
    return messages.merged_logs({h: list(hostvars[h][key].get("entries", [])) for h in hosts if key in hostvars[h]})


def exec_lines(hosts, hostvars, key):
    return messages.exec_lines(
        {h: dict(hostvars[h][key]) for h in hosts if key in hostvars[h] and "rc" in hostvars[h][key]}
    )


def canary_verdict(results, canary, threshold=0.05, min_requests=20):
    """From the traffic module's results (a loop over hosts), the canary's verdict (see messages.canary_verdict)."""
    counts = {r["__rollout_item"]: r for r in (results or {}).get("results", []) if "requests" in r}
    mine = {h: c for h, c in counts.items() if h in canary}
    return messages.canary_verdict(
        mine, {h: c for h, c in counts.items() if h not in canary}, float(threshold), int(min_requests)
    )


def verify_lines(hosts, hostvars, key):
    return messages.verify_lines({h: dict(hostvars[h][key]) for h in hosts if key in hostvars[h]})


def verify_failed(hosts, hostvars, key):
    return messages.verify_failed({h: dict(hostvars[h][key]) for h in hosts if key in hostvars[h]})


class FilterModule:
    def filters(self):
        return {
            "rollback_round": rollback_round,
            "lock_round": lock_round,
            "lock_message": lock_message,
            "status_lines": status_lines,
            "status_table": status_table,
            "fleet_status": fleet_status,
            "summary_lines": summary_lines,
            "failure_lines": failure_lines,
            "grouped_problems": grouped_problems,
            "outcome": outcome,
            "states_of": states_of,
            "merged_logs": merged_logs,
            "canary_verdict": canary_verdict,
            "verify_lines": verify_lines,
            "verify_failed": verify_failed,
            "exec_lines": exec_lines,
        }
