#!/usr/bin/env python3
"""Turn bench/results/latest.json into docs/benchmarks.md and its PNG plots.

python bench/report.py [RESULTS]     (make bench runs it after bench/run.py)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import scale

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs/benchmarks.md"
SCALE_DOC = ROOT / "docs/scale.md"
IMG = ROOT / "docs/img"
LABELS = {
    "handover": "handover (the idle slot on the shared socket)",
    "restart": "restart (socket-activated restart)",
    "hup": "HUP (Gunicorn replaces its workers in place)",
    "plain": "plain restart without socket activation (the floor)",
}


# Why a target can be missed on this machine, and what would close it; shown
# for the targets this run missed.
WHY_MISSED = {
    "handover: max latency during the switch": (
        "The worst requests of the switch are the first ones the new Gunicorn workers serve (the first request "
        "through an app's routing and serialization is the slowest) and the moments two instances import the app: "
        "single-digit milliseconds on two cores shared with the controller, the load generator and nine containers. "
        "A starting instance runs at niceness 10 (and a lower CPUWeight, which needs a cgroup cpu controller these "
        "containers lack) until it passed its gate. Over four runs of this benchmark on one machine the ratio "
        "moved between 1.2 and 2.9: "
        "it compares maxima of a few milliseconds. Warming new workers up (an `asgi_after_switch` hook) or hosts "
        "with spare cores would close it."
    ),
    "handover: max latency during the whole deploy": (
        "The whole deploy also builds the release's venv on the host (niced, idle I/O class) and runs Ansible on "
        "the controller, all on the same two cores as the server and the load; the switch itself is measured "
        "separately, and its reason applies here too."
    ),
    "Gunicorn+UvicornWorker req/s": (
        "wrk, the server and its container share two cores, so one 8-second run varies a lot (between runs of this "
        "benchmark the same server moved by up to 40%; the better of two runs per server is kept). Longer, "
        "interleaved runs with the load generator on its own cores would settle it; the p99 columns show no serving "
        "penalty from Gunicorn."
    ),
    "pip time / uv time": (
        "Both compile bytecode for every module, which the release module does at build time on purpose (releases "
        "are read-only, nothing may be compiled at runtime), and pip's time includes bootstrapping pip into the venv "
        "(`python -m venv`). The lock is small (23 packages), so fixed costs weigh more than they would on a large "
        "one. A new release with the same lock still builds its venv whole: reusing the previous release's files "
        "is not built, because a venv is not relocatable (its scripts' shebangs, its `RECORD` files and every "
        "`.pyc`'s source path name the release's own directory), so linking them would need rewriting each and "
        "proving the result byte-identical with a build from scratch."
    ),
    "collection files a deploy": (
        "A deploy reads, on the controller, every file of the four roles it imports (defaults, argument specs, "
        "meta, vars), the task files of its stages, the settings set's templates and the console and Gunicorn "
        "helpers it ships, the action and filter plugins it runs with their plugin_utils, and every module_utils "
        "its three modules import (packed into each module for the host). The list is in "
        "`bench/results/latest.json` (`shape.files`). Reaching 30 would mean merging module_utils and roles, "
        "files that each hold one concern today."
    ),
    "plugin Python lines": (
        "Engine v2 added code that was not there when the issue was filed: the job slices (the controller's "
        "processes and their locks), the settings set rendered once per run, the rollback's round trip, the "
        "wheel store (the host's half in `module_utils/build.py`, the controller's in `plugin_utils/artifacts.py`) "
        "and the app wheel sent inside the module call."
    ),
    "no-change deploy / empty playbook": (
        "A no-change deploy makes one round trip per host, like the empty playbook, but also checks every option "
        "of every host and identifies the release (hashing the app source and the lock) on the controller."
    ),
    "new-version deploy / empty playbook": (
        "With the default `serial: 1` the hosts are handed over one after the other: each builds a venv, then starts "
        "the new release once in its idle slot, gates it and opens it (Gunicorn replaces the held workers), on two "
        "cores shared with the controller, the load and the other hosts' containers. The handover module times each "
        "step in the audit log (`steps`)."
    ),
    "rollback / empty playbook": (
        "A rollback reads and locks every host in one round trip, chooses where the fleet goes, then hands the hosts "
        "over at once: one Gunicorn start, a gate and an opening per host, all on the two shared cores."
    ),
    "deploy of": (
        "Hosts of one batch build and hand over in parallel, but here every host is a container on the same two "
        "cores, and the controller's own CPU grows with the hosts too: nine hosts build nine venvs and start nine "
        "Gunicorns on two cores. On real hosts each brings its own cores and only the controller's share grows. "
        "Pinning each lab host to its own CPU share cannot be done here: nine hosts and the controller on two "
        "cores leave no share to give, and CPUQuota needs the cgroup cpu controller these containers do not get. "
        "So this ratio measures the machine, not the engine, and is kept only as a record; the engine's growth "
        "is the controller's CPU per host above (the 3 and 9 host runs apart)."
    ),
    "tasks per host": (
        "Each task is a controller round trip; see the deploy speed table for the tasks each run makes. The "
        "run-once steps (the plan, the fleet's summary) count on one host only, so the mean moves with the fleet's "
        "size."
    ),
    "controller CPU per host": (
        "It is Ansible's own cost of each task on each host (a worker fork, templating the task's arguments, "
        "shipping a module over SSH) times the tasks a host gets, skipped ones too, plus the controller's polling "
        "for as long as the run waits on hosts (`internal_poll_interval`, 5 ms in `ansible.cfg`); the hosts share "
        "the controller's two cores, so each run's total moves with the load, and the figure is the mean of three "
        "rounds. `bench/run.py --speed` measures this figure alone in four minutes."
    ),
    "rollout with": (
        "With WebSockets held, each handover's old slot closes them (1012) and the clients reconnect to the new "
        "slot at once, a burst of connections on the two shared cores while the next host is handed over; the "
        "drain itself is off the rollout's path."
    ),
    "handover of one host, slots": (
        "The layout before slots started two instances per handover; the slots start one, plus an opening (the "
        "held workers replaced). On two shared cores the difference is the one import saved."
    ),
}


def why(target: str) -> str:
    return next((text for prefix, text in WHY_MISSED.items() if target.startswith(prefix)), "")


def table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def save(fig, name: str) -> str:
    fig.tight_layout()
    fig.savefig(IMG / name, dpi=110)
    plt.close(fig)
    return name


def plot_latency(results: dict) -> str:
    zero = results["zero_downtime"]
    fig, axes = plt.subplots(len(zero), 1, figsize=(9, 2.3 * len(zero)), sharex=False)
    for ax, (strategy, data) in zip(axes if len(zero) > 1 else [axes], zero.items(), strict=True):
        s = data["series"]
        ax.plot(s["t"], s["max_ms"], lw=0.8, color="tab:blue", label="worst latency per 100 ms")
        fails = [(t, 1) for t, f in zip(s["t"], s["failures"], strict=True) if f]
        if fails:
            ax.scatter([t for t, _ in fails], [max(s["max_ms"]) or 1] * len(fails), color="red", s=8, label="failed")
        a0, a1, end = data["window_s"]
        ax.axvspan(a0, a1, color="orange", alpha=0.25, label="command running")
        ax.axvspan(a1, end, color="orange", alpha=0.1, label="observed after")
        if "switch_window_s" in data:
            ax.axvspan(*data["switch_window_s"], color="green", alpha=0.25, label="switch (audit-timed)")
        ax.set_yscale("log")
        ax.set_ylabel("ms")
        ax.set_title(LABELS.get(strategy, strategy), fontsize=9)
        ax.legend(fontsize=7, loc="upper left")
    fig.supxlabel("seconds since the load started", fontsize=9)
    return save(fig, "bench-latency.png")


def plot_growth(results: dict) -> str:
    growth = results["growth"]
    fig, ax = plt.subplots(figsize=(6, 3.2))
    for key, label in (("serial_1", "serial 1 (default)"), ("serial_all", "serial = all hosts")):
        hosts = sorted(growth[key], key=int)
        ax.plot([int(h) for h in hosts], [growth[key][h] for h in hosts], marker="o", label=label)
    ax.set_xlabel("hosts")
    ax.set_ylabel("deploy wall time (s)")
    ax.set_xticks(sorted({int(h) for key in growth for h in growth[key]}))
    ax.grid(alpha=0.3)
    ax.legend()
    return save(fig, "bench-growth.png")


def plot_venv(results: dict) -> str:
    median = results["venv"]["median_s"]
    names = ["uv_cold", "pip_cold", "uv_warm", "pip_warm"]
    fig, ax = plt.subplots(figsize=(6, 2.8))
    colors = ["tab:green" if name.startswith("uv") else "tab:gray" for name in names]
    ax.bar([n.replace("_", " ") for n in names], [median[n] for n in names], color=colors)
    ax.set_ylabel("seconds (median of 3)")
    return save(fig, "bench-venv.png")


def render(results: dict) -> str:
    m, c = results["machine"], results["conditions"]
    out = [
        "# Benchmarks",
        "",
        "<!-- Generated by bench/report.py from bench/results/latest.json: edit those, not this file. -->",
        "",
        f"Measured {results['started_at']} by `make bench` ({results['bench_wall_s']:.0f} s in all) on "
        f"{m['cores']} cores ({m['cpu']}), {m['os']}, kernel {m['kernel']}, {m['podman']}, {m['ansible']}.",
        f"Hosts: {c['hosts']}; {c['gunicorn_workers_per_host']} Gunicorn workers per host; the app is {c['app']}.",
        "The controller, the load and every host share the same cores, so absolute figures are modest; the ratios",
        "are what matters, and they are all taken in the same run. Reproduce everything with `make bench`.",
        "",
        "## Targets",
        "",
        table(
            ["target", "measured", "goal", ""],
            [[t["target"], t["value"], t["limit"], "met" if t["met"] else "**missed**"] for t in results["targets"]],
        ),
        "",
    ]
    missed = [t for t in results["targets"] if not t["met"]]
    if missed:
        out += ["### Missed: why, and what would close it", ""]
        out += [f"- **{t['target']}** ({t['value']}, goal {t['limit']}): {why(t['target'])}" for t in missed]
        out += [""]

    zero = results["zero_downtime"]
    out += [
        "## 1. Zero downtime: one host handed over under load",
        "",
        f"Load: {c['load']}. Steady state is the window before the change, while `status.yml` runs (the same",
        "controller work as a deploy's checks); the change window runs from the command's start until a few",
        "seconds after it ends. handover and restart are `deploy.yml -e strategy=...` to a new version; HUP is",
        "`systemctl reload` (Gunicorn starts new workers, then stops the old ones: it cannot move to a new venv);",
        "the floor is Gunicorn binding the port itself, restarted with `systemctl restart`.",
        "",
        table(
            [
                "strategy",
                "requests",
                "failed",
                "p50 ms",
                "p99 ms",
                "max ms",
                "steady max ms",
                "max / steady",
                "switch max ms",
                "switch max / steady",
                "command s",
            ],
            [
                [
                    LABELS.get(s, s),
                    d["during"]["requests"],
                    d["during"]["failures"],
                    d["during"]["p50_ms"],
                    d["during"]["p99_ms"],
                    d["during"]["max_ms"],
                    d["steady"]["max_ms"],
                    d["max_over_steady_max"],
                    d.get("switch", {}).get("max_ms", "-"),
                    d.get("switch_max_over_steady_max", "-"),
                    d["command_wall_s"],
                ]
                for s, d in zero.items()
            ],
        ),
        "",
        "`max` covers the whole command: for a deploy that includes building the release beside the live one.",
        "`switch` is the part the audit line times (handover: the idle slot started held, gated, opened, current and",
        "the app's unit switched, the old slot told to drain; restart: switch, restart, gate, open) plus one second.",
        "",
        f"![Worst latency per 100 ms; the shaded band is the change]({'img/' + plot_latency(results)})",
        "",
        "Reading it: `restart` holds new connections in the socket's backlog while the old Gunicorn stops and the",
        "new one imports the app: no failure, a stall. `handover` keeps an instance answering throughout. HUP",
        "replaces workers in place without failures but cannot move to a new release: new workers fork from the",
        "old master, whose interpreter and import path belong to the old release's venv. Without socket",
        "activation, connections are refused while nothing listens.",
        "Everything here shares two cores with the controller and the load generator, so the whole-deploy peaks",
        "include CPU contention from Ansible and the (niced) venv build.",
        "",
    ]
    if "serving" in results:
        s = results["serving"]
        out += [
            "## 2. Serving overhead through the systemd socket",
            "",
            "`wrk -t1 -c32 -d8s --latency` against `/healthz` on one host, best of 2 runs, the same number of",
            "workers everywhere; access logs on in every case. `recycling` turns on Gunicorn's worker recycling",
            "(`service_max_requests=2000`, jitter 1000: a fresh worker every 2000-3000 requests); the role's",
            "default, like uvicorn, never recycles. `errors` are wrk's socket errors: with recycling, keep-alive",
            "connections that a retiring worker closes under wrk.",
            "",
            table(
                ["server", "req/s", "p50 ms", "p99 ms", "errors", "vs standalone uvicorn"],
                [
                    [
                        name,
                        f"{cfg['rps']:.0f}",
                        cfg["p50_ms"],
                        cfg["p99_ms"],
                        cfg["errors"],
                        s["ratios_vs_uvicorn"][name],
                    ]
                    for name, cfg in s["configs"].items()
                ],
            ),
            "",
        ]
    if "venv" in results:
        v = results["venv"]
        out += [
            "## 3. A release venv from the lockfile",
            "",
            f"The same lock ({v['packages']} packages with the app wheel), the same host, from the host's offline",
            "wheelhouse, with hashes required and bytecode compiled; median of 3. Cold: no cache (what the role",
            "does: `--no-cache`, `--link-mode copy`). Warm: a filled cache. pip's time includes `python -m venv`,",
            "which installs pip itself into the venv (ensurepip); that is part of building a venv with pip.",
            "",
            table(
                ["", "uv s", "pip s", "pip / uv"],
                [
                    ["cold", v["median_s"]["uv_cold"], v["median_s"]["pip_cold"], v["pip_over_uv_cold"]],
                    ["warm", v["median_s"]["uv_warm"], v["median_s"]["pip_warm"], v["pip_over_uv_warm"]],
                ],
            ),
            "",
            f"![uv and pip building the same venv]({'img/' + plot_venv(results)})",
            "",
        ]
    if "deploy_speed" in results:
        rows = []
        for hosts, speed in results["deploy_speed"].items():
            for step in ("empty_playbook", "deploy", "no_change", "rollback"):
                r = speed[step]
                ratio = speed.get(f"{step}_over_empty", 1.0 if step == "empty_playbook" else "-")
                rows.append(
                    [
                        hosts,
                        step.replace("_", " "),
                        r["wall_s"],
                        ratio,
                        r.get("cpu_s", "-"),
                        r["tasks_per_host"],
                        r["s_per_task"],
                    ]
                )
        out += [
            "## 4. Deploy speed over SSH",
            "",
            "Wall time of `ansible-playbook` (pipelining on, SSH multiplexing), handover strategy, default batches:",
            "a deploy hands hosts over one at a time (`serial: 1`), a rollback all at once (`serial: 100%`).",
            "`empty playbook` connects and gathers facts, nothing else: the floor, measured in the same run.",
            "`deploy` ships a new version (new source, same lock); `no change` deploys the version that is live:",
            "the options checked and the release identified on the controller, one round trip per host, nothing",
            "else; `rollback` goes back one release. Tasks per host is the mean of ok + failed over the hosts.",
            "",
            table(
                ["hosts", "run", "wall s", "x empty playbook", "controller CPU s", "tasks per host", "s per task"], rows
            ),
            "",
            f"First deploy onto {results['first_deploy'].get('hosts', 'all')} empty hosts "
            f"(serial {results['first_deploy'].get('serial', 1)}): {results['first_deploy']['wall_s']} s.",
            "",
        ]
    if "controller_cpu" in results:
        cpu = results["controller_cpu"]
        out += [
            "### The controller's CPU per host",
            "",
            "User and system CPU of `ansible-playbook` and every process it started, per host: the difference between",
            "the two fleet sizes, divided by the hosts between them; `fixed` is what a run costs whatever the fleet's",
            "size. The app wheel and the wheelhouse, built once per version on the controller, are apart: "
            f"{cpu['app_wheel_and_wheelhouse_s']} s (a check-mode run). Projected at ansible's default forks (CPU does",
            "not depend on forks; the wall time of a `serial: 1` deploy grows with the hosts):",
            "",
            table(
                ["run", "per host (s)", "fixed (s)", "100 hosts (s)", "1,000 hosts (s)"],
                [
                    [
                        run.replace("_", " "),
                        c["per_host_s"],
                        c["fixed_s"],
                        c["projected_cpu_s"]["100"],
                        c["projected_cpu_s"]["1000"],
                    ]
                    for run, c in cpu.items()
                    if isinstance(c, dict)
                ],
            ),
            "",
        ]
    if "reproducibility" in results:
        rep = results["reproducibility"]
        out += [
            "### Reproducible releases",
            "",
            "Each release's venv tree digest (every file's path, mode and content) on every host that built it: the",
            f"lowest share of hosts agreeing with the majority is {rep['lowest_rate']} over "
            f"{len(rep['releases'])} release(s) (1.0: every host of one Python and platform built the same bytes).",
            "",
        ]
    if "long_lived" in results:
        live = results["long_lived"]
        out += [
            "## Long-lived connections: drains off the rollout's path",
            "",
            f"examples/live on {live['hosts']} hosts, `serial: 1`: one rollout with no client, then one while "
            f"{live['held_websockets_per_host']} WebSockets per host stay connected. Each old slot closes its "
            "WebSockets (1012) and drains in the background while the rollout goes on to the next host.",
            "",
            table(
                ["rollout", "wall s"],
                [["no client", live["rollout_wall_s"]["none"]], ["WebSockets held", live["rollout_wall_s"]["held"]]],
            ),
            "",
            f"Held / none: {live['held_over_none']}. Clients cut: {live['clients_cut']}, at most "
            f"{live['most_cuts_per_client']} time(s) each; failed connection attempts: {live['failed_connects']}.",
            "",
        ]
    if "layouts" in results:
        lay = results["layouts"]
        out += [
            "## The handover before slots and with slots",
            "",
            "One host, one handover each, timed by the audit line (`duration_s`); app starts counted in the journal.",
            "",
            table(
                ["layout", "strategy", "handover s", "app starts per handover"],
                [[name, d["strategy"], d["handover_s"], d["app_starts_per_handover"]] for name, d in lay.items()],
            ),
            "",
        ]
    if "growth" in results:
        g = results["growth"]
        sizes = sorted(set(g["serial_1"]) | set(g["serial_all"]), key=int)
        out += [
            f"## 5. Growth: {', '.join(sizes[:-1])} and {sizes[-1]} hosts",
            "",
            table(
                ["hosts", "serial 1 (s)", "serial = all hosts (s)"],
                [[h, g["serial_1"].get(h, "-"), g["serial_all"].get(h, "-")] for h in sizes],
            ),
            "",
            f"![Deploy wall time as hosts grow]({'img/' + plot_growth(results)})",
            "",
            "`serial: 1` grows about linearly: each host is handed over and gated on its own. A larger `serial`",
            "hands hosts over in parallel; here all hosts share two cores, which caps what parallel batches gain.",
            "",
        ]
    return "\n".join(out)


def main() -> int:
    source = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "bench/results/latest.json"
    results = json.loads(source.read_text())
    IMG.mkdir(parents=True, exist_ok=True)
    DOC.write_text(render(results) + "\n")
    if "controller_cpu" in results and "growth" in results:
        SCALE_DOC.write_text(scale.render(results, table) + "\n")
    print(f"report: wrote {DOC.relative_to(ROOT)}, {SCALE_DOC.relative_to(ROOT)} and plots in {IMG.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
