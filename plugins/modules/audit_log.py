#!/usr/bin/python
# Copyright: asgi.deploy maintainers
# MIT License (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: audit_log
short_description: Read an app's whole audit log on a host, and what its releases record
version_added: 0.2.0
description:
  - Returns every line of C(<base>/<app>/deploys.log) (and its rotated C(deploys.log.1)) - one JSON object per event
    of every run - and, for each kept release, what its C(release.json) records (version, commit, commit time, build
    time), for the C(asgi.deploy.report) playbook's metrics.
  - A line that is not a JSON object (torn, edited by hand) is skipped and counted, never fatal.
  - Changes nothing.
author: asgi.deploy maintainers (!UNKNOWN)
extends_documentation_fragment:
  - asgi.deploy.app
  - asgi.deploy.app.read_only
"""

EXAMPLES = r"""
- name: Read billing's audit log
  asgi.deploy.audit_log:
    app: billing
  register: billing_audit
"""

RETURN = r"""
events:
  description: The audit log's lines, oldest first.
  returned: always
  type: list
  elements: dict
corrupt:
  description: Lines skipped because they are not JSON objects.
  returned: always
  type: int
releases:
  description: Per kept release id - C(version), C(git_sha), C(commit_time), C(built_at).
  returned: always
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.asgi.deploy.plugins.module_utils.host import (
    App,
    app_argument_spec,
    list_releases,
    parse_audit,
    read_manifest,
    read_text,
)

RECORDED = ("version", "git_sha", "commit_time", "built_at")


def main():
    module = AnsibleModule(argument_spec=app_argument_spec(), supports_check_mode=True)
    app = App(module.params["app"], module.params["base_dir"])
    events, corrupt = parse_audit(read_text(app.audit + ".1").splitlines() + read_text(app.audit).splitlines())
    releases = {}
    for release in list_releases(app)[0]:
        manifest = read_manifest(app, release["id"]) or {}
        releases[release["id"]] = {key: manifest.get(key, "") for key in RECORDED}
    module.exit_json(changed=False, events=events, corrupt=corrupt, releases=releases)


if __name__ == "__main__":
    main()
