# Copyright: asgi.deploy maintainers
# MIT License (see LICENSE)
"""Run a deploy hook (a migration, a smoke test) as the app runs: its user, environment, secrets and
sandbox, from a given release's venv, in a transient systemd unit.

The properties come from the unit of the settings set the release is about to run with (our own
template), so a hook sees exactly what the app will: the same environment file, the same credentials,
the same state directory.
"""

from __future__ import annotations

import os
import re
import subprocess
import time

from ansible_collections.asgi.deploy.plugins.module_utils.host import audit, read_text

# [Service] settings a hook inherits from the unit; the rest (how the service starts, stops, restarts,
# listens) is the service's alone.
INHERITED = (
    "User",
    "Group",
    "Environment",
    "EnvironmentFile",
    "LoadCredential",
    "StateDirectory",
    "CacheDirectory",
    "LogsDirectory",
    "ReadWritePaths",
    "UMask",
    "NoNewPrivileges",
    "ProtectSystem",
    "ProtectHome",
    "PrivateTmp",
    "PrivateDevices",
    "PrivateUsers",
    "RestrictAddressFamilies",
    "LimitNOFILE",
)
OUTPUT_TAIL = 4000


class HookFailed(Exception):
    def __init__(self, message, result):
        super().__init__(message)
        self.result = result


def unit_properties(unit_text):
    """``Key=Value`` settings of a unit's [Service] section that a hook inherits."""
    properties, section = [], ""
    for raw in unit_text.splitlines():
        line = raw.strip()
        if line.startswith("[") and line.endswith("]"):
            section = line
            continue
        if section != "[Service]" or not line or line.startswith("#") or "=" not in line:
            continue
        key = line.split("=", 1)[0]
        if key in INHERITED:
            properties.append(line)
    return properties


def hook_argv(app, name, release_dir, unit_text, command, extra_env=None):
    """The systemd-run command line that runs ``command`` (through /bin/sh) as the app would."""
    argv = ["systemd-run", "--quiet", "--wait", "--pipe", "--collect", "--service-type=exec"]
    argv += ["--unit", f"asgi-hook-{app.name}-{re.sub(r'[^a-z0-9]+', '-', name)}-{os.getpid()}"]
    for prop in unit_properties(unit_text):
        argv += ["-p", prop]
    venv_bin = os.path.join(release_dir, "venv", "bin")
    env = {
        "PATH": f"{venv_bin}:/usr/local/bin:/usr/bin:/bin",
        "ASGI_HOOK": name,
        "ASGI_RELEASE_ID": os.path.basename(release_dir),
        "ASGI_RELEASE_MANIFEST": os.path.join(release_dir, "release.json"),
        **(extra_env or {}),
    }
    for key, value in sorted(env.items()):
        argv += ["-p", f"Environment={key}={value}"]
    argv += ["-p", f"WorkingDirectory={release_dir}", "/bin/sh", "-c", command]
    return argv


def run_hook(app, name, release, settings, command, run=None, clock=time.monotonic, event=None, extra_env=None):
    """Run the hook; audit it; raise HookFailed (with the output's tail) when it fails."""
    run = run or subprocess.run
    release_dir = app.release_dir(release)
    unit = read_text(os.path.join(app.settings_dir(settings), "units", app.units["next"]), default=None)
    if unit is None:
        raise HookFailed(f"hook {name}: settings set {settings} is not staged on this host", {"hook": name})
    if not os.path.isfile(os.path.join(release_dir, "release.json")):
        raise HookFailed(f"hook {name}: release {release} is not built on this host", {"hook": name})
    began = clock()
    result = run(
        hook_argv(app, name, release_dir, unit, command, extra_env), capture_output=True, text=True, check=False
    )
    output = (result.stdout + result.stderr)[-OUTPUT_TAIL:]
    summary = {
        "hook": name,
        "release": release,
        "rc": result.returncode,
        "result": "success" if result.returncode == 0 else "failed",
        "duration_s": round(clock() - began, 2),
    }
    audit(app, {"event": "hook", **(event or {}), **summary})
    summary["output"] = output
    if result.returncode != 0:
        raise HookFailed(f"hook {name} failed (exit {result.returncode}) on release {release}:\n{output}", summary)
    return summary
