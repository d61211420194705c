#!/usr/bin/python
# Copyright: asgi.deploy maintainers
# MIT License (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: say
short_description: Print lines as they are, under any callback and result format, and optionally fail with them
version_added: 0.2.0
description:
  - Runs on the controller only (an action plugin).
  - Prints O(lines) to the display, one per line - a run's summary, the fleet's status, why a run stopped - so that
    they read the same under the default callback with C(callback_result_format=json) or C(yaml), and in AWX.
  - The result keeps the lines (RV(lines)) for a machine to read.
author: asgi.deploy maintainers (!UNKNOWN)
options:
  lines:
    description: The lines to print (a string is split at its newlines).
    type: raw
    required: true
  fail:
    description: Fail the task after printing; the failure's message is the first line.
    type: bool
    default: false
attributes:
  check_mode:
    support: full
    description: Prints the same.
  diff_mode:
    support: none
    description: Nothing to show.
"""

EXAMPLES = r"""
- name: Say what changed
  asgi.deploy.say:
    lines:
      - "deploy: 2 host(s) changed in 38 s:"
      - "  1.3.2-a -> 1.4.0-b (handover): web1 4.2 s, web2 4.0 s"
"""

RETURN = r"""
lines:
  description: The lines printed.
  returned: unless O(fail=true)
  type: list
  elements: str
msg:
  description: The first line, when O(fail=true).
  returned: when O(fail=true)
  type: str
"""
