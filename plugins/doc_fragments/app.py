# Copyright: asgi.deploy maintainers
# MIT License (see LICENSE)

from __future__ import annotations


class ModuleDocFragment:
    # The app every module works on: its name and where it lives on the host.
    DOCUMENTATION = r"""
options:
  app:
    description: Name of the app.
    type: str
    required: true
  base_dir:
    description: Directory holding the app's own directory C(<base_dir>/<app>/) (releases, C(current), the audit log).
    type: path
    default: /srv
"""

    # Who and what a line of the audit log names.
    AUDIT = r"""
options:
  run:
    description: The run id, for the audit log.
    type: str
    default: ""
  actor:
    description: Who runs it, for the audit log.
    type: str
    default: ""
  host:
    description: Inventory name of the host, for the audit log.
    type: str
    default: ""
"""
