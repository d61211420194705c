# Copyright: asgi.deploy maintainers
# MIT License (see LICENSE)
"""Running programs on a host, one way: Ansible's.

Everything in module_utils that runs a program takes ``run``, a callable with the
signature of ``AnsibleModule.run_command`` (``run(argv, data=None, environ_update=None,
cwd=None) -> (rc, stdout, stderr)``): the module passes its own, unit tests pass a fake.

``systemd_run`` is the one place that turns unit properties into a transient unit, and
``as_app`` the one that makes it run as the app's unit would (the import check, the build
step, deploy hooks, the credential probe, one-off commands and the console all go through
them). The console runs on the host without Ansible: this file is shipped beside it in each
settings set, so it uses the standard library only.
"""

from __future__ import annotations

import os
import re

TAIL_LINES = 25
TAIL_CHARS = 4000


class CommandFailed(Exception):
    def __init__(self, what, rc, output):
        self.what, self.rc, self.output = what, rc, output
        super().__init__(f"{what} failed (exit {rc}): {tail(output)}")


def tail(text, lines=TAIL_LINES, chars=TAIL_CHARS):
    """The end of a program's output, where a traceback's exception is; never cut mid-line."""
    kept = (text or "").strip().splitlines()[-lines:]
    while kept and len("\n".join(kept)) > chars:
        kept.pop(0)
    return "\n".join(kept)


def last_line(text):
    """The last non-empty line of some output: for a Python traceback, the exception itself."""
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1] if lines else ""


def check(run, argv, what="", **kwargs):
    """Run ``argv``; its stdout, or CommandFailed naming ``what`` with the output's last lines."""
    rc, out, err = run(list(argv), **kwargs)
    if rc != 0:
        raise CommandFailed(what or argv[0].rsplit("/", 1)[-1], rc, (out or "") + (err or ""))
    return out


# systemd expands specifiers (%h, %n, ...) in unit files but not in `systemd-run -p` values.
def escape_specifiers(value):
    return str(value).replace("%", "%%")


def unescape_specifiers(value):
    return str(value).replace("%%", "%")


# [Service] settings a transient unit inherits from the app's unit; the rest (how the service starts,
# stops, restarts, listens) is the service's alone.
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
    "MemoryMax",
    "TasksMax",
)


def unit_properties(unit_text, inherited=INHERITED):
    """``Key=Value`` settings of a unit file's [Service] section that a transient unit inherits, ready for
    ``systemd-run -p`` (unit-file specifier escapes undone)."""
    properties, section = [], ""
    for raw in unit_text.splitlines():
        line = raw.strip()
        if line.startswith("[") and line.endswith("]"):
            section = line
            continue
        if section != "[Service]" or not line or line.startswith("#") or "=" not in line:
            continue
        if line.split("=", 1)[0] in inherited:
            properties.append(unescape_specifiers(line))
    return properties


def app_environment(release_dir, name, extra_env=None):
    """What a command run as the app gets besides the unit's environment: the release's venv first on PATH,
    and which release it is."""
    venv_bin = os.path.join(release_dir, "venv", "bin")
    return {
        "PATH": f"{venv_bin}:/usr/local/bin:/usr/bin:/bin",
        "ASGI_HOOK": name,
        "ASGI_RELEASE_ID": os.path.basename(release_dir),
        "ASGI_RELEASE_DIR": release_dir,
        "ASGI_RELEASE_MANIFEST": os.path.join(release_dir, "release.json"),
        **(extra_env or {}),
    }


def as_app(unit_text, release_dir, name, extra_env=None, extra_properties=()):
    """The properties that make a transient unit run as the app's unit would, from ``release_dir``."""
    properties = unit_properties(unit_text)
    properties += [
        f"Environment={key}={value}" for key, value in sorted(app_environment(release_dir, name, extra_env).items())
    ]
    return [*properties, f"WorkingDirectory={release_dir}", *extra_properties]


UNIT_NAME = re.compile(r"[^A-Za-z0-9:_.-]+")


def unit_name(*parts):
    """A transient unit name made of ``parts`` (anything systemd would refuse becomes a dash)."""
    return UNIT_NAME.sub("-", "-".join(str(p) for p in parts if p)).strip("-") + ".service"


def systemd_run(properties, argv, unit="", wait=True, pipe=True, pty=False, quiet=True):
    """The ``systemd-run`` command line that runs ``argv`` in a transient service with ``properties``.

    ``wait`` returns with the command's exit status; ``pipe`` connects its output to ours (else it goes
    to the journal); ``pty`` gives it a terminal (an interactive console); without ``quiet`` systemd-run
    says how the unit ended ("Finished with result: timeout"). The unit is collected when it ends, failed
    or not. Type=simple: with exec, a command that exits at once can fail its start job, and systemd-run
    then exits 1 whatever the command's status was."""
    command = ["systemd-run", "--collect", "--service-type=simple"] + (["--quiet"] if quiet else [])
    if wait and not pty:
        command.append("--wait")
    if pty:
        command.append("--pty")
    elif pipe:
        command.append("--pipe")
    if unit:
        command += ["--unit", unit]
    for prop in properties:
        command += ["-p", prop]
    return command + list(argv)
