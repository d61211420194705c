#!/usr/bin/env python3
"""The benchmarks behind docs/benchmarks.md, all in one run on one machine.

    make bench         everything (< 20 min on 2 cores): bench/results/latest.json,
                       then docs/benchmarks.md and its plots (bench/report.py)
    make bench-quick   CI: one host, handover and restart under load; exits 1 on
                       any failed request (build/bench/quick.json)
    bench/run.py --speed   the engine's cost only: deploy, no-change and rollback
                       on 3 and 9 hosts, controller CPU per host (build/bench/speed.json)

The benchmarks run on their own lab (LAB_NAME=bench tools/lab.sh: containers
bench-web1..N over SSH on 127.0.0.1), deploy the reference app with the
playbooks exactly as users do, and remove the lab at the end. Load goes to
127.0.0.1 only and every phase is bounded in time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import shape
from liveclients import Clients
from loadgen import Load, http_ok

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "build/bench"
RESULTS = ROOT / "bench/results/latest.json"
QUICK_RESULTS = WORK / "quick.json"
SPEED_RESULTS = WORK / "speed.json"
SSH_BASE, HTTP_BASE, SECOND_BASE = 2230, 8090, 8190
# The collection as it was before slots (<app>.service and <app>-next.service): the layout compared with slots.
BEFORE_SLOTS = "06c0332ae2f53addaf3ced24c80094be61b14e32"
HELD = 100  # WebSockets held per host while a rollout runs
USERS = 4  # load threads, one fresh connection per request
RATE = 200  # requests per second in all: steady traffic that leaves CPU for the deploy itself
WORKERS = 2  # Gunicorn workers per host (the role's default)
HOSTS = 9  # the lab's maximum: growth is measured at 1, 3 and 9 hosts
# Deploy, no-change and rollback on 3 and 9 hosts, this many times.
SPEED_ROUNDS = int(os.environ.get("SPEED_ROUNDS", 3))
MOVED = "click==8.5.0"  # a one-package lock change: the reference app's lock has click 8.5.1
RECAP = re.compile(r"^(\S+)\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)\s+skipped=(\d+)", re.M)


def children_cpu() -> float:
    """User and system CPU seconds of every child process this one has waited for."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def log(message: str) -> None:
    print(f"bench [{time.strftime('%H:%M:%S')}] {message}", flush=True)


def env() -> dict:
    return {
        **os.environ,
        "PATH": f"{ROOT / '.venv/bin'}:{os.environ['PATH']}",
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "ANSIBLE_FORCE_COLOR": "0",
        "ANSIBLE_NOCOLOR": "1",
        "LAB_NAME": "bench",
    }


class Lab:
    def __init__(self, hosts: int):
        self.hosts = hosts
        self.names = [f"bench-web{n}" for n in range(1, hosts + 1)]
        self.inventory = WORK / "hosts.yml"
        self._version = 0
        self.sources: dict[str, Path] = {}

    def up(self) -> float:
        began = time.monotonic()
        # A bench lab left running (--keep-lab) holds earlier runs' releases and audit histories: start empty.
        self.down()
        subprocess.run([ROOT / "tools/lab.sh", "up"], env={**env(), "LAB_HOSTS": str(self.hosts)}, check=True)
        WORK.mkdir(parents=True, exist_ok=True)
        hosts = "".join(
            f"        {name}:\n          ansible_port: {SSH_BASE + n}\n" for n, name in enumerate(self.names, 1)
        )
        self.inventory.write_text(
            "# Written by bench/run.py: the bench lab (tools/lab.sh with LAB_NAME=bench).\n"
            f"all:\n  children:\n    asgi:\n      hosts:\n{hosts}"
            "  vars:\n    ansible_host: 127.0.0.1\n    ansible_user: root\n"
            "    ansible_python_interpreter: /usr/bin/python3\n"
            '    ansible_ssh_private_key_file: "{{ inventory_dir }}/../../.bench/id_ed25519"\n'
            "    ansible_ssh_common_args: -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null\n"
        )
        # Same app settings as the people's lab; paths there are relative to
        # the inventory, which sits at the same depth.
        group_vars = WORK / "group_vars/all"
        group_vars.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / "inventories/lab/group_vars/all/asgi.yml", group_vars / "asgi.yml")
        return time.monotonic() - began

    def down(self) -> None:
        subprocess.run([ROOT / "tools/lab.sh", "down"], env=env(), check=False)

    def url(self, n: int = 1, path: str = "") -> str:
        return f"http://127.0.0.1:{HTTP_BASE + n}{path}"

    def next_version(self) -> str:
        """A new version of the reference app: its source with the version bumped, as a user ships one."""
        self._version += 1
        version = f"1.{self._version}.0"
        source = WORK / f"src-{version}"
        if not source.is_dir():
            shutil.copytree(ROOT / "app", source, ignore=shutil.ignore_patterns("tests", "__pycache__", "*.egg-info"))
            pyproject = source / "pyproject.toml"
            pyproject.write_text(re.sub(r'(?m)^version = ".*"$', f'version = "{version}"', pyproject.read_text()))
        self.sources[version] = source
        return version

    def ssh(self, n: int, command: str, stdin: str | None = None) -> str:
        argv = ["ssh", "-i", str(ROOT / ".bench/id_ed25519"), "-p", str(SSH_BASE + n), "-o", "BatchMode=yes"]
        argv += ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"]
        result = subprocess.run([*argv, "root@127.0.0.1", command], input=stdin, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"ssh bench-web{n} {command!r} failed: {result.stderr.strip()}")
        return result.stdout

    def playbook(self, book: str, hosts: int, *options: str, env_extra=None, **extra) -> dict:
        """Run a playbook on bench-web1..hosts; wall time, controller CPU and tasks per host."""
        argv = ["ansible-playbook", "-i", str(self.inventory), str(ROOT / book), *options]
        argv += ["--limit", ",".join(self.names[:hosts])]
        if book.endswith("deploy.yml") and extra.get("version") in self.sources:
            extra = {"app_source": self.sources[extra["version"]], **extra}
        if extra:
            argv += ["-e", json.dumps({key: str(v) if isinstance(v, Path) else v for key, v in extra.items()})]
        began, cpu = time.monotonic(), children_cpu()
        result = subprocess.run(argv, env={**env(), **(env_extra or {})}, capture_output=True, text=True, check=False)
        # ansible-playbook and every process it started (workers, ssh): the controller's CPU for this run.
        wall, cpu = time.monotonic() - began, children_cpu() - cpu
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed:\n{result.stdout[-3000:]}{result.stderr[-2000:]}")
        recap = RECAP.findall(result.stdout)
        tasks = statistics.mean(int(fields[1]) + int(fields[4]) for fields in recap)
        return {
            "wall_s": round(wall, 2),
            "cpu_s": round(cpu, 2),
            "tasks_per_host": round(tasks, 1),
            "s_per_task": round(wall / tasks, 3),
        }

    def starts(self, n: int, app: str = "demo") -> int:
        """Gunicorn masters of ``app`` started on host ``n`` so far (each logs one start line)."""
        out = self.ssh(n, f"journalctl --no-pager -o cat -t {app} --grep 'asgi.deploy start' | wc -l || true")
        return int(out.strip() or 0)

    def wait_http(self, n: int = 1, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if http_ok(self.url(n)):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"bench-web{n} does not answer {self.url(n)}")
            time.sleep(0.2)


# A plain unit: Gunicorn or uvicorn binding port 8000 itself, no systemd socket.
PLAIN_UNIT = """[Unit]
Description=bench: {name} binding its own port (no socket activation)
[Service]
User=demo
Group=demo
WorkingDirectory=/srv/demo/current
{settings}
ExecStart={command}
KillMode=mixed
"""
# The app reads its settings at import: the plain unit gets the same ones as the app's own unit.
SETTINGS_LINES = r"^(Environment|EnvironmentFile|LoadCredential|LoadCredentialEncrypted|SetCredential)="
GUNICORN_PLAIN = (
    f"/srv/demo/current/venv/bin/gunicorn --worker-class uvicorn_worker.UvicornWorker --workers {WORKERS} "
    "--bind 0.0.0.0:8000 --access-logfile - demo_app.main:app"
)
UVICORN_PLAIN = f"/srv/demo/current/venv/bin/uvicorn --workers {WORKERS} --host 0.0.0.0 --port 8000 demo_app.main:app"


def install_plain(lab: Lab, name: str, command: str) -> None:
    settings = lab.ssh(1, f"systemctl cat demo.service | grep -E '{SETTINGS_LINES}' || true").strip()
    unit = PLAIN_UNIT.format(name=name, command=command, settings=settings)
    lab.ssh(1, f"cat > /run/systemd/system/{name}.service && systemctl daemon-reload", stdin=unit)
    lab.ssh(1, f"systemctl stop demo.socket demo.service && systemctl start {name}.service")
    lab.wait_http()


def remove_plain(lab: Lab, name: str) -> None:
    lab.ssh(1, f"systemctl stop {name}.service; rm -f /run/systemd/system/{name}.service; systemctl daemon-reload")
    lab.ssh(1, "systemctl start demo.socket")
    lab.wait_http()


def series(load: Load, bucket: float = 0.1) -> dict:
    """Latency over time: per bucket, the worst latency and the failures."""
    buckets: dict[int, list] = {}
    for record in load.records:
        slot = buckets.setdefault(int(record.t / bucket), [0.0, 0])
        if record.ok:
            slot[0] = max(slot[0], record.ms)
        else:
            slot[1] += 1
    keys = sorted(buckets)
    return {
        "bucket_s": bucket,
        "t": [round(k * bucket, 2) for k in keys],
        "max_ms": [round(buckets[k][0], 1) for k in keys],
        "failures": [buckets[k][1] for k in keys],
    }


def zero_downtime(lab: Lab, strategy: str, steady_s: float, tail_s: float) -> dict:
    """Load on bench-web1: a steady window while status.yml runs, then the change."""
    if strategy == "plain":
        install_plain(lab, "demo-plain", GUNICORN_PLAIN)
    with Load([lab.url(1)], users=USERS, rate=RATE) as load:
        s0 = load.now()
        lab.playbook("playbooks/status.yml", 1)  # the same controller work as a deploy's checks
        while load.now() - s0 < steady_s:
            time.sleep(0.05)
        a0 = load.now()
        starts = lab.starts(1)
        if strategy in ("handover", "restart"):
            run = lab.playbook("playbooks/deploy.yml", 1, version=lab.next_version(), strategy=strategy)
        else:
            unit = "demo-plain.service" if strategy == "plain" else "demo.service"
            state = "restarted" if strategy == "plain" else "reloaded"
            began = time.monotonic()
            subprocess.run(
                [
                    "ansible",
                    "-i",
                    str(lab.inventory),
                    "bench-web1",
                    "-m",
                    "ansible.builtin.systemd_service",
                    "-a",
                    json.dumps({"name": unit, "state": state}),
                ],
                env=env(),
                check=True,
                capture_output=True,
            )
            run = {"wall_s": round(time.monotonic() - began, 2)}
        a1 = load.now()
        # Observation window after the command: HUP and restarts finish asynchronously.
        while load.now() - a1 < tail_s:
            time.sleep(0.05)
        end = load.now()
    if strategy == "plain":
        remove_plain(lab, "demo-plain")
    steady, during = load.window(s0, a0), load.window(a0, end)
    result = {
        "steady": steady,
        "during": during,
        "max_over_steady_max": ratio(during, steady),
        "command_wall_s": run["wall_s"],
        "window_s": [round(a0, 2), round(a1, 2), round(end, 2)],
        # How often the app was imported (a Gunicorn master started) on the host for the change.
        "app_starts": lab.starts(1) - starts,
    }
    if strategy in ("handover", "restart"):
        # The deploy also builds the release beside the live one; the switch
        # itself is what the audit line times: from its start until a second
        # after it ended.
        # The deploy's own line (lock and unlock lines come before and after it).
        audit = json.loads(lab.ssh(1, "grep '\"duration_s\"' /srv/demo/deploys.log | tail -n 1"))
        ended = load.at(datetime.fromisoformat(audit["time"].rstrip("Z")).replace(tzinfo=UTC).timestamp())
        switch = load.window(ended - audit["duration_s"], ended + 1.0)
        result["switch"] = switch
        result["switch_window_s"] = [round(ended - audit["duration_s"], 2), round(ended + 1.0, 2)]
        result["switch_max_over_steady_max"] = ratio(switch, steady)
    log(
        f"zero downtime {strategy}: {during['failures']} failed of {during['requests']}, max {during['max_ms']} ms "
        f"(steady max {steady['max_ms']} ms; switch max {result.get('switch', {}).get('max_ms')} ms)"
    )
    result["series"] = series(load)
    return result


def ratio(window: dict, steady: dict) -> float | None:
    return round(window["max_ms"] / steady["max_ms"], 2) if steady["max_ms"] else None


WRK = re.compile(r"Requests/sec:\s+([\d.]+)")
WRK_P = re.compile(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", re.M)
WRK_ERR = re.compile(
    r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)|Non-2xx or 3xx responses: (\d+)"
)


def wrk(url: str, seconds: int, connections: int = 32) -> dict:
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    pct = {q: round(float(v) * scale[unit], 2) for q, v, unit in WRK_P.findall(out)}
    errors = sum(int(n) for match in WRK_ERR.findall(out) for n in match if n)
    return {"rps": float(WRK.search(out).group(1)), "p50_ms": pct.get("50"), "p99_ms": pct.get("99"), "errors": errors}


def serving(lab: Lab, seconds: int, rounds: int) -> dict:
    """req/s through the systemd socket vs standalone uvicorn, same worker count."""
    url = lab.url(1, "/healthz")
    configs = {}

    def measure(name: str) -> None:
        lab.wait_http()
        wrk(url, 2)  # warm up: workers started, imports done
        runs = [wrk(url, seconds) for _ in range(rounds)]
        best = max(runs, key=lambda run: run["rps"])
        configs[name] = {**best, "runs_rps": [run["rps"] for run in runs]}
        log(f"serving {name}: {best['rps']:.0f} req/s, p99 {best['p99_ms']} ms")

    live = lab.ssh(1, "basename $(readlink /srv/demo/current)").strip().split("-")[0]
    measure("gunicorn_uvicorn_worker")  # the role's defaults
    recycle = {"service_max_requests": 2000, "service_max_requests_jitter": 1000}
    lab.playbook("playbooks/deploy.yml", 1, version=live, **recycle)
    measure("gunicorn_uvicorn_worker_recycling")
    lab.playbook("playbooks/deploy.yml", 1, version=live, service_worker_class="asgi")
    measure("gunicorn_asgi_worker")
    install_plain(lab, "demo-uvicorn", UVICORN_PLAIN)
    measure("uvicorn_standalone")
    remove_plain(lab, "demo-uvicorn")
    lab.playbook("playbooks/deploy.yml", 1, version=live)
    base = configs["uvicorn_standalone"]["rps"]
    return {
        "configs": configs,
        "ratios_vs_uvicorn": {name: round(c["rps"] / base, 3) for name, c in configs.items()},
    }


VENV_SCRIPT = r"""
set -eu
rel=$(readlink -f /srv/demo/current)
key=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['wheelhouse_key'])" "$rel/release.json")
wheels=/srv/demo/wheels/$key
uv=$(ls -d /srv/demo/tools/uv-*/uv | head -n1)
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
t() { local s=$EPOCHREALTIME; "$@" > /dev/null; awk "BEGIN { print $EPOCHREALTIME - $s }"; }
uv_build() {  # cache flags...
  rm -rf "$work/venv"
  "$uv" venv --quiet --no-python-downloads --python /usr/bin/python3 "$work/venv"
  "$uv" pip sync --quiet --require-hashes --offline --no-index --find-links "$wheels" --find-links "$rel/dist" \
    --compile-bytecode --link-mode copy "$@" --python "$work/venv/bin/python" "$rel/requirements.txt"
}
pip_build() {  # cache flags...
  rm -rf "$work/venv"
  /usr/bin/python3 -m venv "$work/venv"
  "$work/venv/bin/pip" install --quiet --disable-pip-version-check --no-deps --require-hashes --no-index \
    --find-links "$wheels" --find-links "$rel/dist" "$@" -r "$rel/requirements.txt"
}
packages=$(grep -c '^[A-Za-z0-9]' "$rel/requirements.txt")
uv_build --cache-dir "$work/uv-cache" ; pip_build --cache-dir "$work/pip-cache"   # fill the warm caches
for i in 1 2 3; do
  echo "uv_cold $(t uv_build --no-cache)"
  echo "uv_warm $(t uv_build --cache-dir "$work/uv-cache")"
  echo "pip_cold $(t pip_build --no-cache-dir)"
  echo "pip_warm $(t pip_build --cache-dir "$work/pip-cache")"
done
echo "packages $packages"
"""


def venv(lab: Lab) -> dict:
    """uv vs pip building the release venv from the host's wheelhouse, 3 runs each."""
    out = lab.ssh(1, "bash -s", stdin=VENV_SCRIPT)
    times: dict[str, list[float]] = {}
    packages = 0
    for line in out.splitlines():
        name, value = line.split()
        if name == "packages":
            packages = int(value)
        else:
            times.setdefault(name, []).append(round(float(value), 3))
    median = {name: round(statistics.median(values), 3) for name, values in times.items()}
    result = {
        "packages": packages,
        "runs_s": times,
        "median_s": median,
        "pip_over_uv_cold": round(median["pip_cold"] / median["uv_cold"], 1),
        "pip_over_uv_warm": round(median["pip_warm"] / median["uv_warm"], 1),
    }
    log(
        f"venv: uv cold {median['uv_cold']} s, warm {median['uv_warm']} s; pip cold {median['pip_cold']} s, "
        f"warm {median['pip_warm']} s"
    )
    return result


def deploy_speed(lab: Lab, hosts: int) -> dict:
    """Empty playbook (facts only) as the floor; deploy, no-change re-run, rollback. The version's wheel and
    wheelhouse are made first (a plan-only check run), so the deploy measures what a host costs."""
    version = lab.next_version()
    result = {
        "empty_playbook": lab.playbook("bench/empty.yml", hosts),
        # Check mode: the app wheel and the wheelhouse are built on the controller; no host changes.
        "one_time": lab.playbook("playbooks/deploy.yml", hosts, "--check", version=version),
        "deploy": lab.playbook("playbooks/deploy.yml", hosts, version=version),
        "no_change": lab.playbook("playbooks/deploy.yml", hosts, version=version),
        "rollback": lab.playbook("playbooks/rollback.yml", hosts),
    }
    empty = result["empty_playbook"]["wall_s"]
    for run in ("deploy", "no_change", "rollback"):
        result[f"{run}_over_empty"] = round(result[run]["wall_s"] / empty, 2)
    log(
        f"deploy speed, {hosts} host(s): "
        + ", ".join(f"{k} {v['wall_s']} s" for k, v in result.items() if isinstance(v, dict))
    )
    return result


def cpu_per_host(rounds: list[dict], small: str, large: str) -> dict:
    """The controller's CPU per host (the difference between two fleet sizes, per host) and what one run costs
    whatever the fleet's size, for each run, from the mean of every round; projected to 100 and 1,000 hosts."""
    found = {}
    for run in ("deploy", "no_change", "rollback"):
        a, b = (statistics.mean(r[size][run]["cpu_s"] for r in rounds) for size in (small, large))
        per_host = max(0.0, (b - a) / (int(large) - int(small)))
        fixed = max(0.0, a - per_host * int(small))
        found[run] = {
            "per_host_s": round(per_host, 3),
            "fixed_s": round(fixed, 2),
            "projected_cpu_s": {n: round(fixed + per_host * n, 1) for n in (100, 1000)},
            "rounds_cpu_s": [[r[small][run]["cpu_s"], r[large][run]["cpu_s"]] for r in rounds],
        }
    found["app_wheel_and_wheelhouse_s"] = rounds[0][small]["one_time"]["cpu_s"]
    return found


def sent_by(name: str) -> tuple[dict, Path]:
    """The environment that records what each release task sends its host (tools/callbacks/asgi_shipped.py), and
    the file it writes, one JSON line per host."""
    log_file = WORK / f"shipped-{name}.jsonl"
    log_file.unlink(missing_ok=True)
    return {
        "ANSIBLE_CALLBACK_PLUGINS": str(ROOT / "tools/callbacks"),
        "ANSIBLE_CALLBACKS_ENABLED": "asgi_shipped",
        "ASGI_SHIPPED_LOG": str(log_file),
    }, log_file


def shipped(lab: Lab, first: Path) -> dict:
    """What a host is sent, as the release action accounts for it: the first deploy (``first``: its record) sends
    the whole wheelhouse and the app wheel; a one-package lock change (MOVED) deployed to 3 hosts sends the wheel
    that changed, against which it is measured."""
    records = [json.loads(line) for line in first.read_text().splitlines()]
    found = {
        "wheelhouse_mb": round(max(r["wheelhouse_bytes"] for r in records) / 2**20, 1),
        "app_wheel_kb": round(max(r["app_wheel_bytes"] for r in records) / 2**10, 1),
    }
    lock = WORK / "moved.lock"
    subprocess.run([ROOT / "tools/locks.sh", "move", MOVED, lock], cwd=ROOT, env=env(), check=True)
    callback, log_file = sent_by("lock-change")
    lab.playbook("playbooks/deploy.yml", 3, version=lab.next_version(), asgi_lockfile=lock, env_extra=callback)
    sent = [json.loads(line) for line in log_file.read_text().splitlines()]
    changed = {name for host in sent for name in host["wheels"]}
    cache = Path.home() / ".cache/asgi.deploy/demo/wheelhouses"
    changed_bytes = sum(next(cache.glob(f"*/{name}")).stat().st_size for name in changed)
    found["lock_change"] = {
        "moved": MOVED,
        "wheels_sent": sorted(changed),
        "changed_wheels_kb": round(changed_bytes / 2**10, 1),
        "wheelhouse_kb_per_host": round(max(host["wheelhouse_bytes"] for host in sent) / 2**10, 1),
        "over_changed": round(max(host["wheelhouse_bytes"] for host in sent) / changed_bytes, 3),
    }
    log(f"shipped: {found}")
    return found


def engine_shape(lab: Lab) -> dict:
    """The collection's files a new-version deploy of one host reads on the controller, and the plugins' code."""
    log_file = WORK / "files.log"
    log_file.unlink(missing_ok=True)
    lab.playbook("playbooks/deploy.yml", 1, version=lab.next_version(), env_extra=shape.audit_env(log_file))
    files = shape.files_read(log_file)
    found = {"deploy_files": len(files), "deploy_python_files": sum(f.endswith(".py") for f in files),
             "files": files, **shape.plugin_code()}  # fmt: skip
    log(f"shape: {found['deploy_files']} files read by a deploy ({found['deploy_python_files']} Python); "
        f"plugins {found['lines']} lines, longest function {found['longest_function_lines']}")  # fmt: skip
    return found


def reproducibility(lab: Lab) -> dict:
    """For each release on more than one host: the share of hosts whose venv tree digest is the fleet's majority."""
    digests: dict[str, list[str]] = {}
    for n in range(1, lab.hosts + 1):
        out = lab.ssh(n, "for m in /srv/demo/releases/*/release.json; do cat $m; echo; done")
        for line in out.split("\n}\n"):
            text = line.strip()
            if text:
                manifest = json.loads(text if text.endswith("}") else text + "}")
                digests.setdefault(manifest["release_id"], []).append(manifest.get("tree_sha256", ""))
    rates = {}
    for release, found in digests.items():
        if len(found) > 1:
            majority = max(set(found), key=found.count)
            rates[release] = {"hosts": len(found), "rate": round(found.count(majority) / len(found), 3)}
    overall = min((r["rate"] for r in rates.values()), default=None)
    log(f"reproducibility: {overall} (lowest over {len(rates)} release(s))")
    return {"releases": rates, "lowest_rate": overall}


def live_sources(versions: list[str]) -> dict[str, Path]:
    """examples/live at each version, locked (as the deploy scenario prepares it)."""
    found = {}
    for version in versions:
        source = WORK / f"live-{version}"
        if not (source / "requirements.lock").is_file():
            shutil.rmtree(source, ignore_errors=True)
            shutil.copytree(ROOT / "examples/live", source, ignore=shutil.ignore_patterns("tests", "__pycache__"))
            pyproject = source / "pyproject.toml"
            pyproject.write_text(re.sub(r'(?m)^version = ".*"$', f'version = "{version}"', pyproject.read_text()))
            subprocess.run(
                [ROOT / ".venv/bin/uv", "pip", "compile", "--quiet", "--universal", "--python-version", "3.11",
                 "--generate-hashes", source / "pyproject.toml", "-o", source / "requirements.lock"],
                check=True,
            )  # fmt: skip
        found[version] = source
    return found


def live_extra(source: Path, version: str) -> dict:
    return {
        "asgi_app": "live", "asgi_entrypoint": "live.app:app", "asgi_lockfile": source / "requirements.lock",
        "asgi_app_source": source, "asgi_listen_tcp": ["0.0.0.0:8003"], "asgi_readiness_path": "/readyz",
        "service_environment": {}, "service_secrets": {}, "version": version,
    }  # fmt: skip


def long_lived(lab: Lab, hosts: int = 3) -> dict:
    """examples/live on ``hosts`` hosts, serial 1: a rollout with no client, then one while HELD WebSockets per host
    stay connected (each cut once, reconnecting onto the new release). The drains run off the rollout's path, so
    the second should take about as long as the first."""
    sources = live_sources(["1.0.0", "1.1.0", "1.2.0"])
    lab.playbook("playbooks/deploy.yml", hosts, **live_extra(sources["1.0.0"], "1.0.0"), serial=hosts)
    quiet = lab.playbook("playbooks/deploy.yml", hosts, **live_extra(sources["1.1.0"], "1.1.0"), serial=1)
    targets = [f"127.0.0.1:{SECOND_BASE + n}" for n in range(1, hosts + 1)]
    with Clients(targets, ws=HELD, sse=0) as clients:
        deadline = time.monotonic() + 120
        while not clients.all_connected():
            if time.monotonic() > deadline:
                raise RuntimeError("bench: the held WebSockets did not all connect")
            time.sleep(0.2)
        began = clients.now()
        held = lab.playbook("playbooks/deploy.yml", hosts, **live_extra(sources["1.2.0"], "1.2.0"), serial=1)
        deadline = time.monotonic() + 120
        while not clients.all_connected() and time.monotonic() < deadline:
            time.sleep(0.2)
        seen = clients.window(began)
    cuts = [len(c["disconnects"]) for c in seen.values()]
    result = {
        "hosts": hosts,
        "held_websockets_per_host": HELD,
        "rollout_wall_s": {"none": quiet["wall_s"], "held": held["wall_s"]},
        "held_over_none": round(held["wall_s"] / quiet["wall_s"], 2),
        "most_cuts_per_client": max(cuts),
        "clients_cut": sum(1 for n in cuts if n),
        "failed_connects": sum(len(c["failed"]) for c in seen.values()),
    }
    log(f"long-lived connections: {result}")
    return result


def layouts(lab: Lab) -> dict:
    """The handover on one host, the layout before slots (restart main beside a temporary next) against slots (the
    idle slot starts once, the old one drains off the path), in one run: each one's audit line times the switch, and
    the journal counts the app's imports."""
    before = WORK / "collection-before-slots"
    tree = before / "ansible_collections/asgi/deploy"
    if not (tree / "galaxy.yml").is_file():
        tree.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "-C", ROOT, "archive", "--format=tar", BEFORE_SLOTS], capture_output=True,
                                 check=True).stdout  # fmt: skip
        subprocess.run(["tar", "-x", "-C", tree], input=archive, check=True)
    old_env = {"ANSIBLE_COLLECTIONS_PATH": f"{before}:{ROOT / '.collections'}"}
    app = {"asgi_app": "layout", "asgi_listen_tcp": ["0.0.0.0:8004"]}
    units = " ".join(f"-u layout{suffix}.service" for suffix in ("", "-next", "-blue", "-green"))

    def starts():
        out = lab.ssh(1, f"journalctl --no-pager -o cat {units} --grep 'asgi.deploy start' | wc -l || true")
        return int(out.strip() or 0)

    found = {}
    # Before slots: a first deploy, then the handover measured. Slots: the first deploy of this collection moves the
    # host to slots (an upgrade), then the handover measured.
    # Each with its own playbook: the collection's playbooks and roles change together.
    for layout, book, env_extra in (("before slots", str(tree / "playbooks/deploy.yml"), old_env),
                                    ("slots", "playbooks/deploy.yml", {})):  # fmt: skip
        lab.playbook(book, 1, env_extra=env_extra, version=lab.next_version(), **app)
        already = starts()
        lab.playbook(book, 1, env_extra=env_extra, version=lab.next_version(), **app)
        line = json.loads(lab.ssh(1, "grep '\"duration_s\"' /srv/layout/deploys.log | tail -n 1"))
        found[layout] = {
            "strategy": line["strategy"],
            "handover_s": line["duration_s"],
            "steps": line["steps"],
            "app_starts_per_handover": starts() - already,
        }
    lab.playbook("playbooks/remove.yml", 1, **app)
    log(f"layouts: {found}")
    return found


def machine() -> dict:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        platform.processor(),
    )
    podman = subprocess.run(["podman", "--version"], capture_output=True, text=True).stdout.strip()
    ansible = subprocess.run(["ansible", "--version"], env=env(), capture_output=True, text=True).stdout.splitlines()
    return {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "kernel": platform.release(),
        "podman": podman,
        "ansible": ansible[0] if ansible else "",
        "os": Path("/etc/os-release").read_text().split('PRETTY_NAME="', 1)[-1].split('"', 1)[0],
    }


def targets(results: dict) -> list[dict]:
    """Every target the benchmark checks, met or missed, with the value measured in this run."""
    z, found = results["zero_downtime"], []

    def check(name: str, value, limit: str, met: bool) -> None:
        found.append({"target": name, "value": value, "limit": limit, "met": bool(met)})

    for strategy in ("handover", "restart"):
        failures = z[strategy]["during"]["failures"]
        check(f"{strategy}: failed requests", failures, "0", failures == 0)
    for key, what in (("switch_max_over_steady_max", "the switch"), ("max_over_steady_max", "the whole deploy")):
        value = z["handover"][key]
        check(f"handover: max latency during {what} / steady-state max", value, "<= 1.5", value and value <= 1.5)
    starts = z["handover"].get("app_starts")
    if starts is not None:
        check("handover: app imports on the host (Gunicorn masters started)", starts, "1", starts == 1)
    if "long_lived" in results:
        value = results["long_lived"]["held_over_none"]
        check(f"rollout with {HELD} WebSockets held per host / with none (3 hosts, serial 1)", value, "<= 1.2",
              value <= 1.2)  # fmt: skip
        value = results["long_lived"]["most_cuts_per_client"]
        check("disconnects per held client in one rollout", value, "<= 1", value <= 1)
    if "layouts" in results:
        old, new = results["layouts"]["before slots"]["handover_s"], results["layouts"]["slots"]["handover_s"]
        check("handover of one host, slots / layout before slots", round(new / old, 2), "< 1", new < old)
    if "serving" in results:
        value = results["serving"]["ratios_vs_uvicorn"]["gunicorn_uvicorn_worker"]
        check("Gunicorn+UvicornWorker req/s / standalone uvicorn", value, ">= 0.95", value >= 0.95)
    if "lock_change" in results.get("shipped", {}):
        value = results["shipped"]["lock_change"]["over_changed"]
        check(f"bytes a one-package lock change ships / the changed wheel ({MOVED})", value, "<= 1.1", value <= 1.1)
    if "shape" in results:
        code = results["shape"]
        files, lines, longest = code["deploy_files"], code["lines"], code["longest_function_lines"]
        check("collection files a deploy of one host reads", files, "<= 30", files <= 30)
        limit = code["lines_at_24"]
        check("plugin Python lines", lines, f"<= {limit} (when #24 was filed)", lines <= limit)
        check(f"longest plugin function ({code['longest_function']})", longest, "<= 60", longest <= 60)
    if "venv" in results:
        for kind in ("cold", "warm"):
            value = results["venv"][f"pip_over_uv_{kind}"]
            check(f"pip time / uv time ({kind})", value, ">= 10", value >= 10)
    if "deploy_speed" in results:
        speed = results["deploy_speed"]
        # Engine v2's goals: three round trips a host per deploy.
        for run, limit in (("deploy", 6), ("rollback", 4), ("no_change", 3)):
            value = max(speed[n][run]["tasks_per_host"] for n in speed)
            label = run.replace("_", "-") if run == "no_change" else f"new-version {run}" if run == "deploy" else run
            check(f"tasks per host: {label} (most of 3 and {HOSTS} hosts)", value, f"<= {limit}", value <= limit)
    if results.get("reproducibility", {}).get("lowest_rate") is not None:
        value = results["reproducibility"]["lowest_rate"]
        check("hosts of one Python and platform building one release: same venv digest", value, "1.0", value == 1.0)
        for run, limit in (("deploy", 0.6), ("rollback", 0.4), ("no_change", 0.15)):
            per_host = results["controller_cpu"][run]["per_host_s"]
            label = {"deploy": "deploy", "no_change": "no-change deploy"}.get(run, run)
            check(f"controller CPU per host, {label} (3 to {HOSTS} hosts)", per_host, f"<= {limit} s",
                  per_host <= limit)  # fmt: skip
        for run, limit, sizes in (("deploy", 4, ("3",)), ("rollback", 2, ("3",)), ("no_change", 1.2, ("3",))):
            for n in sizes:
                value = speed[n][f"{run}_over_empty"]
                label = {"deploy": "new-version deploy", "no_change": "no-change deploy"}.get(run, run)
                check(
                    f"{label} / empty playbook ({n} host{'s' if n != '1' else ''})",
                    value,
                    f"<= {limit}",
                    value <= limit,
                )
    if "growth" in results:
        g = results["growth"]["serial_all"]
        value = round(g[str(HOSTS)] / g["3"], 2)
        check(f"deploy of {HOSTS} hosts / 3 hosts, serial = all", value, "<= 1.5", value <= 1.5)
    return found


def speed(lab: Lab) -> dict:
    """Deploy, no-change and rollback runs on 3 and HOSTS hosts, SPEED_ROUNDS times, and the controller's CPU per
    host they imply."""
    # A per-host figure is the difference of two totals that move with the machine's load: each round runs both
    # sizes again, and the figure is taken from their means. The tables show the first round.
    rounds = [{str(n): deploy_speed(lab, n) for n in (3, HOSTS)} for _ in range(SPEED_ROUNDS)]
    cpu = cpu_per_host(rounds, "3", str(HOSTS))
    log(f"controller CPU: {cpu}")
    return {"deploy_speed": rounds[0], "controller_cpu": cpu}


def speed_report(results: dict, began: float) -> int:
    results["bench_wall_s"] = round(time.monotonic() - began, 1)
    SPEED_RESULTS.parent.mkdir(parents=True, exist_ok=True)
    SPEED_RESULTS.write_text(json.dumps(results, indent=1) + "\n")
    for n, runs in results["deploy_speed"].items():
        for run in ("empty_playbook", "deploy", "no_change", "rollback"):
            r = runs[run]
            print(f"  {n} hosts {run}: {r['wall_s']} s, CPU {r['cpu_s']} s, {r['tasks_per_host']} tasks per host")
    for run in ("deploy", "no_change", "rollback"):
        print(f"  controller CPU per host, {run}: {results['controller_cpu'][run]['per_host_s']} s")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    only = parser.add_mutually_exclusive_group()
    only.add_argument("--quick", action="store_true", help="CI: one host, handover and restart only")
    only.add_argument("--speed", action="store_true", help="deploy speed and controller CPU on 3 and 9 hosts only")
    parser.add_argument("--keep-lab", action="store_true", help="leave the bench lab running afterwards")
    args = parser.parse_args()
    began = time.monotonic()
    hosts = 1 if args.quick else HOSTS
    lab = Lab(hosts)
    mode = "quick" if args.quick else "speed" if args.speed else "full"
    results: dict = {
        "mode": mode,
        "started_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": machine(),
        "conditions": {
            "hosts": "bench-web1..N: Debian 12 containers (podman, systemd) reached over SSH on 127.0.0.1",
            "gunicorn_workers_per_host": WORKERS,
            "load": f"{USERS} threads on the controller paced to {RATE} requests/s in all, a fresh connection per "
            "request, GET /version on 127.0.0.1 (the host's published port)",
            "app": "app/ (FastAPI reference service)",
        },
    }
    try:
        results["lab_up_s"] = round(lab.up(), 1)
        log(f"first deploy on {hosts} host(s)")
        callback, first_sent = sent_by("first")
        first = lab.playbook("playbooks/deploy.yml", hosts, version=lab.next_version(), serial=hosts,
                             env_extra=callback)  # fmt: skip
        results["first_deploy"] = {**first, "hosts": hosts, "serial": hosts}
        if args.speed:
            return speed_report({**results, **speed(lab)}, began)
        steady_s, tail_s = (4, 3) if args.quick else (8, 4)
        strategies = ["handover", "restart"] if args.quick else ["handover", "restart", "hup", "plain"]
        results["zero_downtime"] = {s: zero_downtime(lab, s, steady_s, tail_s) for s in strategies}
        if not args.quick:
            results["serving"] = serving(lab, seconds=8, rounds=2)
            results["venv"] = venv(lab)
            results.update(speed(lab))
            results["shipped"] = shipped(lab, first_sent)
            results["shape"] = engine_shape(lab)
            results["reproducibility"] = reproducibility(lab)
            results["long_lived"] = long_lived(lab)
            results["layouts"] = layouts(lab)
            growth = {"serial_1": {}, "serial_all": {}}
            for n in (3, HOSTS):
                growth["serial_1"][str(n)] = results["deploy_speed"][str(n)]["deploy"]["wall_s"]
            for n in (3, HOSTS):
                run = lab.playbook("playbooks/deploy.yml", n, version=lab.next_version(), serial=n)
                growth["serial_all"][str(n)] = run["wall_s"]
            results["growth"] = growth
            log(f"growth: {growth}")
    finally:
        if not args.keep_lab:
            lab.down()
    results["targets"] = targets(results)
    results["bench_wall_s"] = round(time.monotonic() - began, 1)
    out = QUICK_RESULTS if args.quick else RESULTS
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n")
    log(f"wrote {out.relative_to(ROOT)} in {results['bench_wall_s']} s")
    for target in results["targets"]:
        print(
            f"  {'ok  ' if target['met'] else 'MISS'} {target['target']}: {target['value']} (target {target['limit']})"
        )
    failed = sum(results["zero_downtime"][s]["during"]["failures"] for s in ("handover", "restart"))
    if failed:
        print(f"bench: {failed} request(s) failed during handover/restart", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
