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
  - Writes C(/etc/asgi-deploy/<app>/settings/<id>/) into a staging directory, validates it (Python files must
    compile, unit files must pass C(systemd-analyze verify) without a warning systemd would ignore a directive
    for), and renames it into place, so a set is there whole or not at all. An existing set with the same content is
    left alone.
  - Files given with C(secret=true) are C(0600 root:root) in a C(0700) directory (systemd reads them); the others are
    readable by the service group. When the set has credentials, a transient unit first checks that this host's
    systemd can hand one to the service user.
  - Creates the service user and group when missing (an unprivileged system user with no home and no shell), and the
    app's console C(/usr/local/bin/asgi-<app>) - python, a shell or any command run as the app runs, from the live
    release with the settings main runs with (C(ssh -t web1 sudo asgi-billing shell)).
  - Nothing starts using the set here - M(asgi.deploy.handover) installs its units, on the temporary instance first.
  - Removes sets that no installed unit uses, beyond the O(keep) newest.
  - Changes nothing unless O(run) holds the host's deploy lock.
author: asgi.deploy maintainers (!UNKNOWN)
extends_documentation_fragment:
  - asgi.deploy.app
  - asgi.deploy.app.run
options:
  digest:
    description: The id naming the set (hex, see M(asgi.deploy.lock)'s RV(asgi.deploy.lock#module:settings_id)).
    type: str
    required: true
  files:
    description:
      - Files of the set by relative path (units go under C(units/)), each a dict with C(content), and optionally
        C(mode) (default C(0640)) and C(secret).
    type: dict
    required: true
  user:
    description: The service user, created when missing; the credential check runs as it.
    type: str
    required: true
  group:
    description: The service group, created when missing; it may read the non-secret files.
    type: str
    required: true
  keep:
    description: Unused sets kept besides the ones the units use.
    type: int
    default: 3
  verify:
    description: Run C(systemd-analyze verify) on the unit files.
    type: bool
    default: true
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
    digest: "{{ settings_id }}"
    run: "{{ run_id }}"
    user: billing
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
user_created:
  description: Whether the service user or group was created.
  returned: always
  type: bool
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.asgi.deploy.plugins.module_utils.host import (
    RUN_ARGUMENT_SPEC,
    App,
    Busy,
    app_argument_spec,
    read_text,
)
from ansible_collections.asgi.deploy.plugins.module_utils.locking import NotLocked, holding
from ansible_collections.asgi.deploy.plugins.module_utils.process import CommandFailed
from ansible_collections.asgi.deploy.plugins.module_utils.settings import (
    SettingsInvalid,
    normalised,
    prune,
    stage,
    write_set,
)

ARGUMENT_SPEC = app_argument_spec(
    digest=dict(type="str", required=True),
    files=dict(type="dict", required=True, no_log=True),
    user=dict(type="str", required=True),
    group=dict(type="str", required=True),
    keep=dict(type="int", default=3),
    verify=dict(type="bool", default=True),
    **RUN_ARGUMENT_SPEC,
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
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    p = module.params
    app = App(p["app"], p["base_dir"])
    files = normalised(p["files"])
    diff = diff_against_applied(app, files) if module._diff else []
    if module.check_mode:
        changed = stage(app, p["digest"], files, module.run_command, check_mode=True)
        pruned = prune(app, p["keep"], also_keep=[p["digest"]], check_mode=True)
        created = False
    else:
        try:
            with holding(app, p["run"], p["flock_wait"]):
                changed, created, pruned = write_set(
                    app, p["digest"], files, p["user"], p["group"], module.run_command, p["keep"], p["verify"]
                )
        except (Busy, NotLocked, CommandFailed) as refused:
            module.fail_json(msg=f"settings: {refused}")
        except SettingsInvalid as exc:
            module.fail_json(msg=f"settings: {exc}")
    result = dict(changed=changed or created or bool(pruned), path=app.settings_dir(p["digest"]), pruned=pruned)
    if diff and changed:
        result["diff"] = diff
    module.exit_json(user_created=created, **result)


if __name__ == "__main__":
    main()
