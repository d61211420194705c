# Copyright: asgi.deploy maintainers
# MIT License (see LICENSE)
"""The app's CI gate: what a deploy will check and run, done on the CI runner before anything ships.

``check`` takes the artifacts the plan identified (the controller's checks of the lock, the server
stack and the wheel have passed by then) and:

1. checks that the lock is fresh against the app's project (``uv lock --check`` for a uv.lock; for a
   hashed requirements lock, the compile command its header records, run again into a scratch file);
2. builds the venv from the same offline wheelhouse a host of the runner's Python would get, and runs
   the app's build step and any before-start commands (a migration on the CI database) as the app;
3. starts the app under the same generated ``gunicorn.conf.py``, environment and credentials as the
   units, on a free loopback port handed over the way systemd does (LISTEN_FDS), with no systemd;
4. gates it on its readiness path, as a deploy does;
5. loads it with locust for a while on the given paths, and fails on a failure ratio or a p99 above
   the thresholds, with the numbers.
"""

from __future__ import annotations

import difflib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ansible_collections.asgi.deploy.plugins.module_utils.gate import misconfigured
from ansible_collections.asgi.deploy.plugins.module_utils.host import PYTHON_PROBE
from ansible_collections.asgi.deploy.plugins.module_utils.process import app_environment
from ansible_collections.asgi.deploy.plugins.plugin_utils.artifacts import BadInput, wheelhouse

COLLECTION = Path(__file__).resolve().parents[2]
LOCUSTFILE = COLLECTION / "roles/rollout/files/locustfile.py"
# Becomes gunicorn with the listening socket as fd 3, as systemd's socket activation hands it over.
LAUNCH = (
    "import os, sys; os.dup2(int(os.environ.pop('ASGI_CHECK_FD')), 3); os.environ['LISTEN_FDS'] = '1'; "
    "os.environ['LISTEN_PID'] = str(os.getpid()); os.execv(sys.argv[1], sys.argv[1:])"
)
COMPILE = re.compile(r"^#\s+(uv pip compile .*)$", re.M)


def uv():
    return shutil.which("uv") or str(Path(sys.executable).with_name("uv"))


def run(argv, cwd=None, env=None):
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=False)


def lock_problems(lockfile):
    """Why the lock is stale against the app's project (empty when it is fresh), with the relock command."""
    lockfile = Path(lockfile)
    if lockfile.name == "uv.lock":
        done = run([uv(), "lock", "--check", "--project", str(lockfile.parent)])
        if done.returncode != 0:
            said = (done.stderr or done.stdout).strip().splitlines()
            errors = [line.removeprefix("error: ") for line in said if line.startswith("error: ")]
            why = (errors or said or ["uv lock --check failed"])[-1]
            relock = f"uv lock --project {lockfile.parent}"
            return [f"the lock {lockfile} is stale against pyproject.toml: {why}; relock with: {relock}"]
        return []
    text = lockfile.read_text()
    found = COMPILE.search(text)
    if not found:
        return []  # a lock that does not say how it was made (pylock.toml, pip-compile's): the deploy's checks apply
    command = found.group(1).split()
    scratch = Path(tempfile.mkdtemp()) / lockfile.name
    try:
        shutil.copy(lockfile, scratch)
        argv = [uv(), *command[1:]]
        if "-o" in argv:
            argv[argv.index("-o") + 1] = str(scratch)
        elif "--output-file" in argv:
            argv[argv.index("--output-file") + 1] = str(scratch)
        else:
            argv += ["-o", str(scratch)]
        done = run([*argv, "--quiet"], cwd=lockfile.parent)
        if done.returncode != 0:
            return [
                f"cannot recompile {lockfile} with `{found.group(1)}`: {(done.stderr or done.stdout).strip()[-500:]}"
            ]
        changed = stale_lines(text, scratch.read_text())
    finally:
        shutil.rmtree(scratch.parent, ignore_errors=True)
    if changed:
        return [
            f"the lock {lockfile} is stale against its input ({', '.join(changed[:6])}); relock with: {found.group(1)}"
        ]
    return []


def stale_lines(old, new):
    """The pins a recompile adds (+) or drops (-)."""
    pins = re.compile(r"^([A-Za-z0-9][\w.-]*==\S+)", re.M)
    diff = difflib.ndiff(pins.findall(old), pins.findall(new))
    return [line[:2] + line[2:] for line in diff if line.startswith(("+ ", "- "))]


def local_target(python="python3"):
    done = run([shutil.which(python) or python, "-I", "-c", PYTHON_PROBE])
    if done.returncode != 0:
        raise BadInput(f"{python} does not run on this runner")
    return json.loads(done.stdout)


def build_venv(artifacts, target, release_dir):
    """The release's venv, from the offline wheelhouse a host of this Python would get."""
    house = wheelhouse(artifacts, target)
    requirements = release_dir / "requirements.txt"
    requirements.write_text(house["requirements"])
    venv = release_dir / "venv"
    for argv in (
        [uv(), "venv", "--quiet", "--python", shutil.which("python3") or "python3", str(venv)],
        [uv(), "pip", "sync", "--quiet", "--offline", "--no-index", "--require-hashes", "--find-links", house["path"],
         "--find-links", str(Path(artifacts["app_wheel"]["path"]).parent), "--python", str(venv / "bin/python"),
         str(requirements)],
    ):  # fmt: skip
        done = run(argv)
        if done.returncode != 0:
            raise BadInput(f"cannot build the venv: {(done.stderr or done.stdout).strip()[-1500:]}")
    return venv


def write_settings(where, files, secrets, via):
    """The settings set's non-unit files, and the secrets as the units hand them over: (settings, environment)."""
    settings = where / "settings"
    settings.mkdir()
    for name, spec in files.items():
        if not name.startswith(("units/", "credentials/")) and name != "secrets.env":
            (settings / name).write_text(spec["content"])
    if via == "environment_file":
        return settings, {str(k): str(v) for k, v in secrets.items()}
    credentials = where / "credentials"
    credentials.mkdir(mode=0o700)
    for name, value in secrets.items():
        (credentials / name).write_text(str(value))
    return settings, {"CREDENTIALS_DIRECTORY": str(credentials)} if secrets else {}


def run_steps(steps, environment, release_dir):
    """The build step and the before-start commands, as the app from the release: why one failed, or ''."""
    for name, command in steps:
        env = {**os.environ, **environment, **app_environment(str(release_dir), name)}
        env["PATH"] = f"{env['PATH']}:{os.environ.get('PATH', '')}"
        done = run(["/bin/sh", "-c", command], cwd=release_dir, env=env)
        if done.returncode != 0:
            said = (done.stdout + done.stderr).strip().splitlines()[-15:]
            return [f"the {name} `{command}` failed (exit {done.returncode}); its last lines:", *said]
    return []


def django_deploy_check(environment, release_dir):
    """Django's own deployment checklist (``check --deploy``) for a Django app (DJANGO_SETTINGS_MODULE set), as the
    app runs: ``(errors, warnings)`` as lines. Errors fail the check; warnings are said. Other apps: ``([], [])``."""
    if not environment.get("DJANGO_SETTINGS_MODULE"):
        return [], []
    env = {**os.environ, **environment, **app_environment(str(release_dir), "django check --deploy")}
    done = run(["/bin/sh", "-c", "python -m django check --deploy"], cwd=release_dir, env=env)
    said = [line for line in (done.stdout + done.stderr).strip().splitlines() if line.strip()]
    found = [line.strip() for line in said if re.match(r"^\s*\S*: \(\w+\.[EWC]\d+\)", line)]
    if done.returncode != 0:
        return ["Django's deployment checks (python -m django check --deploy) failed:", *said[-15:]], []
    return [], [line for line in found if re.search(r"\(\w+\.W\d+\)", line)]


def start(venv, settings, entrypoint, environment, release_dir):
    """Gunicorn on a free loopback port, the socket handed over as systemd does: (process, port)."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    port = listener.getsockname()[1]
    env = {**os.environ, **environment, "ASGI_CHECK_FD": str(listener.fileno())}
    env["RUNTIME_DIRECTORY"] = str(release_dir)
    argv = [str(venv / "bin/python"), "-c", LAUNCH, str(venv / "bin/gunicorn"), "--config",
            str(settings / "gunicorn.conf.py"), entrypoint]  # fmt: skip
    log = (release_dir / "app.log").open("w")
    proc = subprocess.Popen(argv, cwd=release_dir, env=env, pass_fds=[listener.fileno()], stdout=log, stderr=log)
    listener.close()
    return proc, port


def wait_ready(proc, port, path, headers, accept, timeout):
    """Until the app answers ``path`` with an accepted status: '' then, or why it did not."""
    deadline, last = time.monotonic() + timeout, "no answer yet"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return f"the app exited ({proc.returncode}) before it was ready ({last})"
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", path, headers={"Host": "localhost", **headers})
            reply = conn.getresponse()
            status, location = reply.status, reply.getheader("Location", "")
            conn.close()
            if status in accept:
                return ""
            last = f"{path} answered HTTP {status}"
            cause = misconfigured(status, path, headers, location)
            if cause:
                return cause
        except (OSError, http.client.HTTPException) as exc:
            last = f"{path}: {type(exc).__name__}"
        time.sleep(0.2)
    return f"the app did not answer {path} with {'/'.join(map(str, accept))} within {timeout}s ({last})"


def load(port, paths, users, seconds, headers):
    """``locust --headless`` on the app for ``seconds``: requests, failures, failure ratio, p99."""
    events = Path(tempfile.mkstemp(suffix=".jsonl")[1])
    env = {**os.environ, "LOAD_TARGETS": f"http://127.0.0.1:{port}", "LOAD_PATH": ",".join(paths),
           "LOAD_EVENTS": str(events), "LOAD_HEADERS": json.dumps({"Host": "localhost", **headers})}  # fmt: skip
    argv = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--only-summary",
            "-u", str(users), "-r", str(users), "--run-time", f"{seconds}s", "--stop-timeout", "5"]  # fmt: skip
    try:
        run(argv, env=env)
        rows = [json.loads(line) for line in events.read_text().splitlines() if line.strip()]
    finally:
        events.unlink(missing_ok=True)
    ms = sorted(r["ms"] for r in rows if r["ok"])
    failures = [r for r in rows if not r["ok"]]
    return {
        "requests": len(rows),
        "failures": len(failures),
        "failure_ratio": round(len(failures) / len(rows), 4) if rows else 1.0,
        "p99_ms": round(ms[min(len(ms) - 1, int(len(ms) * 0.99))], 1) if ms else None,
        "failure_samples": sorted({f"{r['path']}: {r['error']}" for r in failures})[:5],
    }


def stop(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
