# Copyright: asgi.deploy maintainers
# MIT License (see LICENSE)
"""The app's console: a command, Python or a shell, run as the app runs.

    asgi-<app>                     python, in the live release's venv
    asgi-<app> shell               django-admin shell when the release has Django, else python
    asgi-<app> COMMAND [ARG...]    any command, e.g. asgi-billing django-admin createsuperuser

It runs in a transient unit with the app's unit's user, environment, credentials, state
directory and sandbox, from the live release's directory, through a terminal when it has one
(``ssh -t web1 sudo asgi-billing shell``) and through pipes when it has not (scripts, tests).
Shipped in each settings set beside asgi_process.py (the collection's module_utils/process.py);
/usr/local/bin/asgi-<app> runs the one of the settings main runs with.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.realpath(__file__)))

from asgi_process import as_app, systemd_run, unit_name


def command_of(argv, venv_bin):
    if not argv or argv[0] == "python":
        return [os.path.join(venv_bin, "python"), *argv[1:]]
    if argv[0] == "shell":
        admin = os.path.join(venv_bin, "django-admin")
        return [admin, "shell", *argv[1:]] if os.path.exists(admin) else [os.path.join(venv_bin, "python")]
    return list(argv)


def main(argv):
    if argv[:1] in (["-h"], ["--help"]):
        print(__doc__)
        return 0
    app, root = os.environ["ASGI_CONSOLE_APP"], os.environ["ASGI_CONSOLE_ROOT"]
    here = os.path.dirname(os.path.realpath(__file__))
    # The slots' units differ only in their slot: either says how the app runs.
    with open(os.path.join(here, "units", f"{app}-blue.service"), encoding="utf-8") as stream:
        unit = stream.read()
    release_dir = os.path.realpath(os.path.join(root, "current"))
    command = command_of(argv, os.path.join(release_dir, "venv", "bin"))
    interactive = sys.stdin.isatty() and sys.stdout.isatty()
    properties = as_app(unit, release_dir, "console", {"ASGI_OPERATION": "console"})
    run = systemd_run(properties, command, unit=unit_name("asgi-console", app, os.getpid()), pty=interactive)
    os.execvp(run[0], run)  # noqa: S606 (becomes systemd-run, which keeps the terminal)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
