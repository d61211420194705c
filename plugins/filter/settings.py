# Copyright: asgi.deploy maintainers
# MIT License (see LICENSE)
"""Filters that turn service options into files of a settings set, and the app's names and paths."""

from __future__ import annotations

import re

from ansible.errors import AnsibleFilterError
from ansible_collections.asgi.deploy.plugins.module_utils.host import App
from ansible_collections.asgi.deploy.plugins.module_utils.process import escape_specifiers

ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
TASKS_PREFIX = "tasks:"
# Inside double quotes systemd's environment file parser takes these after a backslash as themselves,
# and everything else (newlines, non-ASCII) as it is: any value survives byte for byte.
NEEDS_ESCAPE = ("\\", '"', "`", "$")


def systemd_quote(value):
    text = str(value)
    for char in NEEDS_ESCAPE:
        text = text.replace(char, "\\" + char)
    return f'"{text}"'


def systemd_environment_file(variables):
    """``NAME="value"`` lines in systemd's own quoting (EnvironmentFile=)."""
    lines = []
    for name, value in sorted(dict(variables).items()):
        if not ENV_NAME.match(str(name)):
            raise AnsibleFilterError(f"{name!r} is not a valid environment variable name")
        lines.append(f"{name}={systemd_quote(value)}\n")
    return "".join(lines)


def unit_environment(variables):
    """``Environment=`` lines for a unit file: quoted as systemd unquotes them, and ``%`` doubled, since systemd
    expands specifiers in unit files (``%h`` would become a home directory, ``p%40ss`` would be refused)."""
    lines = []
    for name, value in sorted(dict(variables).items()):
        if not ENV_NAME.match(str(name)):
            raise AnsibleFilterError(f"{name!r} is not a valid environment variable name")
        text = f"{name}={value}".replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        lines.append(f'Environment="{escape_specifiers(text)}"')
    return lines


def hook(value):
    """What a hook option says: ``{"command": ...}`` or, only when it says so with ``tasks:``, ``{"tasks": path}``."""
    text = str(value or "").strip()
    if text.startswith(TASKS_PREFIX):
        return {"command": "", "tasks": text[len(TASKS_PREFIX) :].strip()}
    return {"command": text, "tasks": ""}


def layout(name, base_dir="/srv"):
    """The app's unit names, probe sockets and directories: module_utils' App is their one owner."""
    return App(str(name), str(base_dir)).layout()


def secret_files(secrets, via="credentials"):
    """The settings-set files that carry ``secrets``: one credential file each, or one environment file."""
    secrets = dict(secrets or {})
    if not secrets:
        return {}
    if via == "environment_file":
        return {"secrets.env": {"content": systemd_environment_file(secrets), "secret": True}}
    return {f"credentials/{name}": {"content": str(value), "secret": True} for name, value in secrets.items()}


def settings_with_id(files, placeholder, settings_id):
    """A settings set rendered with ``placeholder`` for its id, with the id of one host's set in its place."""
    return {
        name: {**spec, "content": str(spec["content"]).replace(placeholder, settings_id)}
        for name, spec in files.items()
    }


class FilterModule:
    def filters(self):
        return {
            "systemd_environment_file": systemd_environment_file,
            "unit_environment": unit_environment,
            "secret_files": secret_files,
            "settings_with_id": settings_with_id,
            "hook": hook,
            "layout": layout,
        }
