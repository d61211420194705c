# Copyright: asgi.deploy maintainers
# MIT License (see LICENSE)
"""A team's deploy metrics, from the audit logs of its hosts: are deploys getting better?

Every host's ``deploys.log`` has a line per event of a run (``lock``, ``deploy``, ``rollback``,
``revert``, ``hook``, ``unlock``), each with the run's id. A run is the events of one id on every
host. From the runs:

- deployment frequency: deploy runs that changed some host and did not fail, per period;
- lead time: from the release's commit (its ``commit_time``) to the end of its first such run;
- change failure rate: deploy runs that failed, or that a rollback undid within ``window_h`` (a rollback undoes
  the last good deploy before it, not every deploy of the window);
- time to restore: from such a failure to the end of the next run that left the fleet healthy;
- rollback frequency: rollback runs per period;
- deploy duration: from a run's first event to its last (median, p90), per period for the trend.
"""

from __future__ import annotations

import statistics
from datetime import UTC, datetime, timedelta

FAILED = ("failed", "reverted", "revert_failed")


def parse_time(text):
    """An ISO 8601 time as UTC: the audit log's (``...Z``) and git's commit times (``%cI``: the committer's own
    offset, ``+01:00``), so that a lead time never carries a time zone's difference."""
    moment = datetime.fromisoformat(str(text).strip().replace("Z", "+00:00"))
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


def runs_of(events):
    """The runs in ``events`` (every host's lines), oldest first: id, operation, start, end, hosts, outcome."""
    by_run = {}
    for e in events:
        if not e.get("run") or "time" not in e:
            continue
        run = by_run.setdefault(e["run"], {"id": e["run"], "events": []})
        run["events"].append(e)
    runs = []
    for run in by_run.values():
        moves = [e for e in run["events"] if e.get("event") in ("deploy", "rollback") and "result" in e]
        if not moves:
            continue  # a run that changed no host (nothing needed a change, or it stopped before any switch)
        times = sorted(parse_time(e["time"]) for e in run["events"])
        results = {e["result"] for e in moves}
        runs.append(
            {
                "id": run["id"],
                "operation": moves[0]["event"],
                "start": times[0],
                "end": times[-1],
                "hosts": sorted({e.get("host", "") for e in moves}),
                "to": sorted({e.get("to", "") for e in moves}),
                "failed": bool(results & set(FAILED)) or any(e["event"] == "revert" for e in run["events"]),
            }
        )
    return sorted(runs, key=lambda r: r["start"])


def period_key(when, period):
    if period == "day":
        return when.strftime("%Y-%m-%d")
    monday = when - timedelta(days=when.weekday())
    return monday.strftime("%Y-%m-%d")  # the week starting on that Monday


def percentile(values, q):
    """The ``q``-th percentile, interpolated between the two nearest values (the median of two is their mean)."""
    ordered = sorted(values)
    if not ordered:
        return None
    position = q / 100 * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return round(ordered[low] + (ordered[high] - ordered[low]) * (position - low), 1)


def undone_by_rollbacks(deploys, rollbacks, window):
    """The ids of the deploy runs a rollback undid: for each rollback that did not fail, the last deploy that did
    not fail and ended before it started, when it ended within ``window`` of that start."""
    undone = set()
    for back in rollbacks:
        if back["failed"]:
            continue
        before = [d for d in deploys if not d["failed"] and d["end"] <= back["start"]]
        if before and back["start"] - before[-1]["end"] <= window:
            undone.add(before[-1]["id"])
    return undone


def restore_times(deploys, runs, undone):
    """Seconds from each failed (or undone) deploy to the end of the next run that did not fail."""
    found = []
    for run in deploys:
        if run["failed"] or run["id"] in undone:
            later = [r for r in runs if r["start"] > run["start"] and not r["failed"] and r is not run]
            if later:
                found.append((later[0]["end"] - run["end"]).total_seconds())
    return found


def metrics(events, releases=None, period="week", window_h=24):
    """The team's deploy metrics from every host's audit lines, and per-period figures for the trend."""
    releases = releases or {}
    runs = runs_of(events)
    window = timedelta(hours=window_h)
    deploys = [r for r in runs if r["operation"] == "deploy"]
    rollbacks = [r for r in runs if r["operation"] == "rollback"]
    good = [r for r in deploys if not r["failed"]]
    undone = undone_by_rollbacks(deploys, rollbacks, window)
    failures = [r for r in deploys if r["failed"] or r["id"] in undone]
    lead = []
    seen = set()
    for run in good:
        for release in run["to"]:
            commit = (releases.get(release) or {}).get("commit_time")
            if commit and release not in seen:
                seen.add(release)
                lead.append((run["end"] - parse_time(commit)).total_seconds())
    durations = [(r["end"] - r["start"]).total_seconds() for r in deploys]
    periods = {}
    for run in runs:
        slot = periods.setdefault(period_key(run["start"], period), {"deploys": 0, "rollbacks": 0, "durations": []})
        if run["operation"] == "deploy":
            slot["deploys"] += 0 if run["failed"] else 1
            slot["durations"].append((run["end"] - run["start"]).total_seconds())
        else:
            slot["rollbacks"] += 1
    trend = [
        {"period": key, "deploys": p["deploys"], "rollbacks": p["rollbacks"],
         "median_duration_s": round(statistics.median(p["durations"]), 1) if p["durations"] else None}
        for key, p in sorted(periods.items())
    ]  # fmt: skip
    return {
        "period": period,
        "periods": len(trend),
        "deploys": len(deploys),
        "deployment_frequency": round(len(good) / max(1, len(trend)), 2),
        "lead_time_s": {"median": percentile(lead, 50), "p90": percentile(lead, 90), "count": len(lead)},
        "change_failure_rate": round(len(failures) / len(deploys), 3) if deploys else None,
        "time_to_restore_s": {"median": percentile(restore_times(deploys, runs, undone), 50)},
        "rollbacks": len(rollbacks),
        "rollback_frequency": round(len(rollbacks) / max(1, len(trend)), 2),
        "deploy_duration_s": {"median": percentile(durations, 50), "p90": percentile(durations, 90)},
        "trend": trend,
    }


def lines(app, figures, corrupt=0):
    """The metrics as lines of text."""

    def minutes(seconds):
        return "-" if seconds is None else f"{seconds / 60:.1f} min"

    f = figures
    out = [
        f"{app}: {f['deploys']} deploy run(s) and {f['rollbacks']} rollback(s) over {f['periods']} {f['period']}(s)",
        f"  deployment frequency   {f['deployment_frequency']} per {f['period']}",
        f"  lead time              median {minutes(f['lead_time_s']['median'])}, "
        f"p90 {minutes(f['lead_time_s']['p90'])}",
        "  change failure rate    {}".format(
            "-" if f["change_failure_rate"] is None else f"{f['change_failure_rate']:.0%}"
        ),
        f"  time to restore        median {minutes(f['time_to_restore_s']['median'])}",
        f"  rollback frequency     {f['rollback_frequency']} per {f['period']}",
        f"  deploy duration        median {minutes(f['deploy_duration_s']['median'])}, "
        f"p90 {minutes(f['deploy_duration_s']['p90'])}",
    ]
    if corrupt:
        out.append(f"  ({corrupt} audit line(s) could not be read and were skipped)")
    return out
