# Copyright: asgi.deploy maintainers
# MIT License (see LICENSE)
"""Deploy hooks (a migration, a smoke test, a build step): a command run as the app runs - its user,
environment, secrets and sandbox - from a given release's venv, in a transient systemd unit.

The properties come from the unit of the settings set the release is about to run with (our own
template), so a hook sees exactly what the app will: the same environment file, the same credentials,
the same state directory.

A hook unit has one name per app and hook (systemd refuses a second one while the first runs), a
time limit (``RuntimeMaxSec``), and writes its output to the journal under that unit. The audit line
keeps the output's last lines only when the hook is marked safe to show: a hook runs with the app's
secrets in scope.
"""

from __future__ import annotations

import os
import re
import secrets
import time

from ansible_collections.asgi.deploy.plugins.module_utils.host import audit
from ansible_collections.asgi.deploy.plugins.module_utils.process import as_app, systemd_run, tail

FINISHED = re.compile(r"^Finished with result: (\S+)", re.M)
ALREADY_THERE = re.compile(r"already (exists|loaded)|fragment file")


class HookFailed(Exception):
    def __init__(self, message, result):
        super().__init__(message)
        self.result = result


def hook_argv(app, name, release_dir, unit_text, command, extra_env=None, timeout_s=0, token="", run_id=""):
    """The systemd-run command line that runs ``command`` (through /bin/sh) as the app would. Its description
    names the run (a forced unlock stops the named run's hooks only); ``timeout_s`` 0 sets no time limit."""
    limits = [f"RuntimeMaxSec={int(timeout_s)}"] if timeout_s else []
    fields = [f"LogExtraFields=ASGI_HOOK_RUN={token}"] if token else []
    fields += [f"Description={hook_description(app, name, run_id)}"] if run_id else []
    properties = as_app(unit_text, release_dir, name, extra_env, limits + fields)
    return systemd_run(properties, ["/bin/sh", "-c", command], unit=app.hook_unit(name), pipe=False, quiet=False)


def hook_description(app, name, run_id):
    return f"asgi.deploy hook {name} of {app.name} (run {run_id})"


def run_of(description):
    """The run a hook unit's description names ('' for none)."""
    found = re.search(r"\(run ([^)\s]+)\)$", description or "")
    return found.group(1) if found else ""


def journal_of(run, token):
    """What a hook printed: its lines in the journal, found by the field its unit tagged them with."""
    run(["journalctl", "--sync"])
    return run(["journalctl", "--no-pager", "-o", "cat", f"ASGI_HOOK_RUN={token}"])[1]


def run_hook(
    app,
    name,
    release,
    settings,
    command,
    run,
    event=None,
    extra_env=None,
    timeout_s=600,
    show_output=False,
    audit_output=None,
    clock=time.monotonic,
):
    """Run the hook; audit it; raise HookFailed when it fails (its output's last lines when safe to show)."""
    release_dir = app.release_dir(release)
    unit = app.unit_in_settings(settings)
    if not unit:
        raise HookFailed(f"hook {name}: settings set {settings} is not staged on this host", {"hook": name})
    if not os.path.isfile(os.path.join(release_dir, "release.json")):
        raise HookFailed(f"hook {name}: release {release} is not built on this host", {"hook": name})
    token = secrets.token_hex(8)
    began = clock()
    run_id = (event or {}).get("run", "")
    rc, _out, err = run(hook_argv(app, name, release_dir, unit, command, extra_env, timeout_s, token, run_id))
    finished = FINISHED.search(err or "")
    outcome = finished.group(1) if finished else ("success" if rc == 0 else "failed")
    summary = {
        "hook": name,
        "release": release,
        "rc": rc,
        "result": "success" if rc == 0 else ("timeout" if outcome == "timeout" else "failed"),
        "duration_s": round(clock() - began, 2),
        "unit": app.hook_unit(name),
    }
    output = tail(journal_of(run, token)) if show_output else ""
    audited = {"event": "hook", **(event or {}), **summary}
    if output and (show_output if audit_output is None else audit_output):
        audited["output"] = output
    audit(app, audited)
    if output:
        summary["output"] = output
    if rc == 0:
        return summary
    raise HookFailed(failure(summary, err, timeout_s, output), summary)


def failure(summary, err, timeout_s, output):
    name, unit = summary["hook"], summary["unit"]
    if ALREADY_THERE.search(err or ""):
        return f"hook {name} did not start: {unit} of an earlier run is still running (it ends within its time limit)"
    if summary["result"] == "timeout":
        head = f"hook {name} was stopped at its time limit ({timeout_s:.0f}s, asgi_hook_timeout)"
    else:
        head = f"hook {name} failed (exit {summary['rc']}) on release {summary['release']}"
    if output:
        return f"{head}; its last lines:\n{output}"
    return f"{head}; its output is in the host's journal: journalctl -u {unit} (asgi_hook_show_output shows it here)"
