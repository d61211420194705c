#!/usr/bin/python
# Copyright: asgi.deploy maintainers
# MIT License (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: logs
short_description: Read an app's journal on a host - both instances and its hooks - for a merged view across hosts
version_added: 0.2.0
description:
  - Reads the journal of both slots (C(<app>-blue.service), C(<app>-green.service)) and the app's deploy hooks
    (C(asgi-hook-<app>-<hook>)),
    since a time, keeping the lines that match a pattern, at most a number of lines (the newest).
  - Returns each entry with its time (microseconds since the epoch), unit and message, so that the controller can
    merge the hosts in time order (the C(asgi.deploy.logs) playbook does).
  - Changes nothing.
author: asgi.deploy maintainers (!UNKNOWN)
extends_documentation_fragment:
  - asgi.deploy.app
  - asgi.deploy.app.read_only
options:
  since:
    description: What C(journalctl --since) takes - C(-1h), C(today), C(2026-11-29 10:00).
    type: str
    default: -1h
  grep:
    description: A regular expression the message must match (Python syntax); empty keeps every line.
    type: str
    default: ""
  lines:
    description: At most this many entries, the newest.
    type: int
    default: 200
"""

EXAMPLES = r"""
- name: The last hour of billing's journal, errors only
  asgi.deploy.logs:
    app: billing
    since: -1h
    grep: "ERROR|Traceback"
"""

RETURN = r"""
entries:
  description: The entries, oldest first - C(t) (microseconds since the epoch), C(unit), C(message).
  returned: always
  type: list
  elements: dict
"""

import json
import re

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.asgi.deploy.plugins.module_utils.host import SLOTS, App, app_argument_spec


def entries(out, pattern, lines):
    """The journal's JSON lines as entries, filtered, the newest ``lines`` of them."""
    found = []
    for raw in out.splitlines():
        try:
            record = json.loads(raw)
        except ValueError:
            continue
        message = record.get("MESSAGE", "")
        if isinstance(message, list):  # journald's form for a message that is not UTF-8
            message = bytes(message).decode("utf-8", "replace")
        if pattern and not pattern.search(message):
            continue
        unit = record.get("_SYSTEMD_UNIT") or record.get("UNIT") or ""
        found.append({"t": int(record.get("__REALTIME_TIMESTAMP", 0)), "unit": unit, "message": message})
    return found[-lines:] if lines else found


def main():
    module = AnsibleModule(
        argument_spec=app_argument_spec(
            since=dict(type="str", default="-1h"),
            grep=dict(type="str", default=""),
            lines=dict(type="int", default=200),
        ),
        supports_check_mode=True,
    )
    p = module.params
    try:
        pattern = re.compile(p["grep"]) if p["grep"] else None
    except re.error as exc:
        module.fail_json(msg=f"logs: grep {p['grep']!r} is not a regular expression: {exc}")
    app = App(p["app"], p["base_dir"])
    # Both slots (and the units of the layout before slots), and the hooks: the app, whichever instance served.
    legacy = [app.legacy_units["main"], app.legacy_units["next"]]
    units = [app.units[slot] for slot in SLOTS] + legacy + app.hook_units()
    argv = ["journalctl", "--no-pager", "-o", "json", "--since", p["since"]]
    for unit in units:
        argv += ["-u", unit]
    rc, out, err = module.run_command(argv)
    if rc != 0:
        module.fail_json(msg=f"logs: journalctl failed: {(err or out).strip()}")
    module.exit_json(changed=False, entries=entries(out, pattern, p["lines"]))


if __name__ == "__main__":
    main()
