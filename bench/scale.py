"""A model of a deploy over 100 and 1,000 hosts, from the per-host figures one `make bench` run measured.

report.py renders it into docs/scale.md; the arithmetic lives here so that a test can hold it to account.
"""

from __future__ import annotations

import math

# The rollout policies the model prices: the role's default, the canary-first one the docs recommend, and all at once.
POLICIES = {
    "serial: 1": [1],
    "serial: 1,25%,100%": [1, "25%", "100%"],
    "serial: 10%": ["10%"],
    "serial: 100%": ["100%"],
}


def batches(hosts: int, serial: list) -> list[int]:
    """The batch sizes Ansible makes of ``hosts`` for a ``serial`` list: each item in turn (a percentage of all the
    play's hosts, rounded down, at least one), the last one repeated until no host is left."""
    sizes, left, i = [], hosts, 0
    while left > 0:
        item = serial[min(i, len(serial) - 1)]
        size = int(int(item[:-1]) / 100 * hosts) if isinstance(item, str) else int(item)
        size = min(max(size, 1), left)
        sizes.append(size)
        left -= size
        i += 1
    return sizes


def wall_s(hosts: int, serial: list, per_host_wall: float, per_host_cpu: float, cores: int, forks: int) -> float:
    """A deploy's wall time: each batch takes a host's own time (its build and handover, its tasks in as many
    waves as the batch needs forks), or the controller's CPU for the batch spread over its cores, whichever is
    longer. The drains run off the path, so a batch ends when its hosts are open."""
    return sum(max(per_host_wall * math.ceil(b / forks), b * per_host_cpu / cores) for b in batches(hosts, serial))


def figures(results: dict) -> dict:
    """The per-host inputs of the model, from one bench run: the controller's CPU per host and per run, the time
    one more host adds to a `serial: 1` deploy, and what a host is sent."""
    cpu = results["controller_cpu"]
    growth = results["growth"]["serial_1"]
    sizes = sorted(growth, key=int)
    small, large = sizes[0], sizes[-1]
    per_host_wall = (growth[large] - growth[small]) / (int(large) - int(small))
    shipped = results.get("shipped", {})
    return {
        "cpu_per_host_s": {run: cpu[run]["per_host_s"] for run in ("deploy", "rollback", "no_change")},
        "cpu_fixed_s": {run: cpu[run]["fixed_s"] for run in ("deploy", "rollback", "no_change")},
        "per_host_wall_s": round(per_host_wall, 2),
        "wheelhouse_mb": shipped.get("wheelhouse_mb"),
        "app_wheel_kb": shipped.get("app_wheel_kb"),
        "lock_change_kb": shipped.get("lock_change", {}).get("wheelhouse_kb_per_host"),
        "moved": shipped.get("lock_change", {}).get("moved"),
    }


def model(results: dict, fleet: int, cores: int = 2, forks: int = 5) -> dict:
    """Controller CPU, bytes sent and wall time per policy for a fleet of ``fleet`` hosts."""
    f = figures(results)
    per_cpu = f["cpu_per_host_s"]["deploy"]
    return {
        "hosts": fleet,
        "cpu_s": {run: round(f["cpu_fixed_s"][run] + f["cpu_per_host_s"][run] * fleet) for run in f["cpu_per_host_s"]},
        "first_deploy_gb": round(f["wheelhouse_mb"] * fleet / 1024, 1) if f["wheelhouse_mb"] else None,
        "new_release_mb": round(f["app_wheel_kb"] * fleet / 1024, 1) if f["app_wheel_kb"] else None,
        "lock_change_mb": round(f["lock_change_kb"] * fleet / 1024, 1) if f["lock_change_kb"] else None,
        "wall_min": {
            name: round(wall_s(fleet, serial, f["per_host_wall_s"], per_cpu, cores, forks) / 60, 1)
            for name, serial in POLICIES.items()
        },
    }


def render(results: dict, table) -> str:
    f = figures(results)
    fleets = [model(results, n) for n in (100, 1000)]
    big = [model(results, n, cores=8, forks=50) for n in (100, 1000)]
    cpu_rows = [
        [run.replace("_", " "), f["cpu_per_host_s"][run], f["cpu_fixed_s"][run], *(m["cpu_s"][run] for m in fleets)]
        for run in ("deploy", "rollback", "no_change")
    ]
    wall_rows = [
        [name, *(m["wall_min"][name] for m in fleets), *(m["wall_min"][name] for m in big)] for name in POLICIES
    ]
    wall_header = ["policy"] + [
        f"{n:,} hosts, {c} cores, forks {f} (min)" for c, f in ((2, 5), (8, 50)) for n in (100, 1000)
    ]
    shipped = [
        ["first deploy (the whole wheelhouse)", f"{f['wheelhouse_mb']} MB",
         *(f"{m['first_deploy_gb']} GB" for m in fleets)],
        ["a new release of the app, same lock (the app wheel)", f"{f['app_wheel_kb']} KB",
         *(f"{m['new_release_mb']} MB" for m in fleets)],
        *([[f"a one-package lock change ({f['moved']}: that wheel, and the wheelhouse's list)",
            f"{f['lock_change_kb']} KB", *(f"{m['lock_change_mb']} MB" for m in fleets)]]
          if f["lock_change_kb"] else []),
    ] if f["wheelhouse_mb"] else [["(not measured in this run: `make bench` records it)", "-", "-", "-"]]  # fmt: skip
    return "\n".join(
        [
            "# Scale: 100 and 1,000 hosts",
            "",
            "<!-- Generated by bench/report.py (bench/scale.py) from bench/results/latest.json: edit those. -->",
            "",
            f"A model, not a measurement: the per-host figures of one `make bench` run ({results['started_at']}, "
            f"{results['machine']['cores']} cores shared by the controller and up to 9 hosts), multiplied out. The "
            "controller side of 100 hosts (plan, history, summary, report over 100 hosts' state) runs for real in "
            "`tests/unit/plugins/plugin_utils/test_fleet_100.py`.",
            "",
            "## The inputs",
            "",
            f"- One more host adds **{f['per_host_wall_s']} s** to a `serial: 1` deploy here (the 3 and 9 host runs "
            "apart): its release build and its handover (start the idle slot held, gate, open, switch). Drains are "
            "off the path, so held connections do not add to it.",
            "- The controller spends the CPU below per host and per run (the 3 and 9 host runs apart), plus a fixed "
            "part; the app wheel and the wheelhouse are built once per version "
            f"({results['controller_cpu']['app_wheel_and_wheelhouse_s']} s).",
            "",
            "## Controller CPU",
            "",
            table(["run", "per host (s)", "fixed (s)", "100 hosts (s)", "1,000 hosts (s)"], cpu_rows),
            "",
            "CPU does not depend on forks or batches: it is Ansible's cost per task per host (a worker fork, the "
            "task's templating, a module shipped over SSH) times the tasks a host gets. A 1,000-host deploy is "
            f"{fleets[1]['cpu_s']['deploy'] / 60:.0f} minutes of one core: on a controller of 8 cores, about "
            f"{fleets[1]['cpu_s']['deploy'] / 60 / 8:.0f} minutes if the batches are wide enough to use them.",
            "",
            "One more cost grows with wall time, not with tasks: while it waits for hosts, ansible-playbook polls its "
            "workers every `internal_poll_interval`. At Ansible's default (0.001 s) that is about a tenth of a core "
            "for as long as a run lasts, and a `serial: 1` deploy lasts a handover per host; this project's "
            "`ansible.cfg` sets 0.005 s (a result is seen at most 5 ms later), and a controller running fleets "
            "should set the same.",
            "",
            "## Bytes sent",
            "",
            table(["what", "per host", "100 hosts", "1,000 hosts"], shipped),
            "",
            "A host keeps every wheel once, by content, in its wheel store, and a wheelhouse per lock made of links "
            "into it: a release with the same lock ships only the app wheel, and a lock change ships the wheels the "
            "host lacks, with the new wheelhouse's SHA256SUMS.",
            "",
            "## Wall time per rollout policy",
            "",
            "Each batch takes a host's own time, its tasks in as many waves as the batch needs forks, or the "
            "controller's CPU for the batch spread over its cores, whichever is longer (`bench/scale.py`):",
            "",
            table(wall_header, wall_rows),
            "",
            "- `serial: 1` is the careful default for a handful of hosts; past a few dozen its wall time is the "
            "host count times a handover. Use `-e asgi_serial=1,25%,100%` (a canary, a quarter, the rest) with "
            "`rollout_canary_check`, and `forks` as wide as the controller's cores carry.",
            "- Past one controller's cores, slice the run: one job per part of the inventory (AWX job slicing, or "
            "`--limit` per ansible-runner job), each told the same `-e asgi_run_id=ID` and `-e asgi_release=R`. The "
            "slices are one run in the locks, the audit logs and the history; each locks only its own hosts (a "
            "host in two slices stops the later one, with nothing changed), and a slice that would ship another "
            "release than R stops before any host changes. A rollback in slices names where it goes "
            "(`-e asgi_release=R`). The default scenario runs two slices of a deploy and of a rollback at once "
            "through ansible-runner.",
            "",
        ]
    )
