#!/usr/bin/python
# Copyright: asgi.deploy maintainers
# MIT License (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: traffic
short_description: Count an app's requests and server errors on a host over the last seconds, from its access log
version_added: 0.2.0
description:
  - Reads the Gunicorn access log lines that both slots (C(<app>-blue.service), C(<app>-green.service)) wrote to
    the journal over the last O(seconds), and counts the requests and the server errors (5xx) among them.
  - The canary check of a rollout (C(rollout_canary_check)) compares the hosts just switched with the hosts not yet
    switched with it.
  - Needs the access log on (C(service_access_log)) in a format where the status follows the quoted request line, as
    in the default C(service_access_log_format).
  - Changes nothing.
author: asgi.deploy maintainers (!UNKNOWN)
extends_documentation_fragment:
  - asgi.deploy.app
  - asgi.deploy.app.read_only
options:
  seconds:
    description: How far back to count.
    type: int
    default: 60
"""

EXAMPLES = r"""
- name: Count billing's errors over the last minute
  asgi.deploy.traffic:
    app: billing
    seconds: 60
"""

RETURN = r"""
requests:
  description: Requests answered.
  returned: always
  type: int
errors:
  description: Of those, answered with a 5xx status.
  returned: always
  type: int
"""

import re

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.asgi.deploy.plugins.module_utils.host import SLOTS, App, app_argument_spec

# `... "GET /path HTTP/1.1" 503 ...`: the status right after the quoted request line.
STATUS = re.compile(r'"[A-Z]+ \S+ HTTP/[0-9.]+" (\d{3})\b')


def count(lines):
    """(requests, server errors) among access log lines."""
    statuses = [int(match.group(1)) for match in map(STATUS.search, lines) if match]
    return len(statuses), sum(1 for status in statuses if status >= 500)


def main():
    module = AnsibleModule(
        argument_spec=app_argument_spec(seconds=dict(type="int", default=60)), supports_check_mode=True
    )
    p = module.params
    app = App(p["app"], p["base_dir"])
    argv = ["journalctl", "--no-pager", "-o", "cat", "--since", f"-{p['seconds']}s"]
    for slot in SLOTS:
        argv += ["-u", app.units[slot]]
    rc, out, err = module.run_command(argv)
    if rc != 0:
        module.fail_json(msg=f"traffic: journalctl failed: {(err or out).strip()}")
    requests, errors = count(out.splitlines())
    module.exit_json(changed=False, requests=requests, errors=errors)


if __name__ == "__main__":
    main()
