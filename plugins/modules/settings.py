#!/usr/bin/python
# Copyright: asgi.deploy maintainers
# MIT License (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: settings
short_description: Stage an immutable settings set (units, Gunicorn config, environment, secrets) for an app
version_added: 0.2.0
description:
  - Writes C(/etc/asgi-deploy/<app>/settings/<digest>/) into a staging directory, validates it (Python files must
    compile, unit files must pass C(systemd-analyze verify)), and renames it into place, so a set is there whole or
    not at all. An existing set with the same content is left alone.
  - Files given with C(secret=true) are C(0600 root:root) in a C(0700) directory (systemd reads them); the others are
    readable by the service group.
  - Nothing starts using the set here - M(asgi.deploy.handover) installs its units, on the temporary instance first.
  - Removes sets that no installed unit uses, beyond the O(keep) newest.
author: asgi.deploy maintainers (!UNKNOWN)
extends_documentation_fragment:
  - asgi.deploy.app
options:
  digest:
    description: Digest naming the set (hex); the same inputs always give the same digest.
    type: str
    required: true
  files:
    description: Files of the set by relative path (units go under C(units/)).
    type: dict
    required: true
  group:
    description: Group that may read the non-secret files (the service group).
    type: str
    default: root
  keep:
    description: Unused sets kept besides the ones the units use.
    type: int
    default: 3
  verify:
    description: Run C(systemd-analyze verify) on the unit files.
    type: bool
    default: true
  user:
    description:
      - The service user. When the set has credentials (files under C(credentials/)), a transient unit checks that
        this host's systemd can hand one to this user (C(LoadCredential=)), so that a host that cannot fails here,
        before any switch, rather than at the app's first request.
    type: str
    default: ""
attributes:
  check_mode:
    support: full
    description: Reports whether the set would be written.
  diff_mode:
    support: full
    description: Shows the non-secret files that differ from the set main runs with.
"""

EXAMPLES = r"""
- name: Stage the settings set
  asgi.deploy.settings:
    app: billing
    digest: "{{ settings_digest }}"
    group: billing
    files:
      gunicorn.conf.py:
        content: "{{ lookup('ansible.builtin.template', 'gunicorn.conf.py.j2') }}"
      units/billing.service:
        content: "{{ lookup('ansible.builtin.template', 'app.service.j2') }}"
        mode: "0644"
      credentials/db_password:
        content: "{{ db_password }}"
        secret: true
  no_log: true
"""

RETURN = r"""
path:
  description: The directory of the set.
  returned: always
  type: str
  sample: /etc/asgi-deploy/billing/settings/3f2a9c1e0b7d4a11
pruned:
  description: Sets (and staging leftovers) removed.
  returned: always
  type: list
  elements: str
"""

import grp
import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.asgi.deploy.plugins.module_utils.host import App, app_argument_spec, read_text
from ansible_collections.asgi.deploy.plugins.module_utils.settings import (
    SettingsInvalid,
    credential_probe,
    prune,
    stage,
)


def diff_against_applied(app, files):
    applied = read_text(app.applied).strip()
    before_dir = app.settings_dir(applied) if applied else ""
    diffs = []
    for name, spec in sorted(files.items()):
        if spec.get("secret"):
            continue
        before = read_text(os.path.join(before_dir, name)) if before_dir else ""
        if before != spec["content"]:
            diffs.append(
                {
                    "before_header": name + " (running)",
                    "after_header": name + " (new)",
                    "before": before,
                    "after": spec["content"],
                }
            )
    return diffs


def main():
    module = AnsibleModule(
        argument_spec=app_argument_spec(
            digest=dict(type="str", required=True),
            files=dict(type="dict", required=True, no_log=True),
            group=dict(type="str", default="root"),
            keep=dict(type="int", default=3),
            verify=dict(type="bool", default=True),
            user=dict(type="str", default=""),
        ),
        supports_check_mode=True,
    )
    p = module.params
    app = App(p["app"], p["base_dir"])
    files = {}
    for name, spec in p["files"].items():
        spec = spec if isinstance(spec, dict) else {"content": spec}
        files[name] = {
            "content": str(spec.get("content", "")),
            "mode": str(spec.get("mode", "0640")),
            "secret": bool(spec.get("secret", False)),
        }
    try:
        gid = grp.getgrnam(p["group"]).gr_gid
    except KeyError:
        if not module.check_mode:
            module.fail_json(msg="settings: group {} does not exist (the release build creates it)".format(p["group"]))
        gid = 0
    diff = diff_against_applied(app, files) if module._diff else []
    try:
        probe = credential_probe(p["user"], p["group"]) if p["user"] else None
        changed = stage(app, p["digest"], files, gid=gid, verify=p["verify"], check_mode=module.check_mode, probe=probe)
    except SettingsInvalid as exc:
        module.fail_json(msg=f"settings: {exc}")
    pruned = prune(app, p["keep"], also_keep=[p["digest"]], check_mode=module.check_mode)
    result = dict(changed=changed or bool(pruned), path=app.settings_dir(p["digest"]), pruned=pruned)
    if diff and changed:
        result["diff"] = diff
    module.exit_json(**result)


if __name__ == "__main__":
    main()
