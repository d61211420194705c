#!/usr/bin/python
# Copyright: asgi.deploy maintainers
# MIT License (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: hook
short_description: Run a deploy hook as the app runs - its user, environment, secrets and sandbox, from a release's venv
version_added: 0.2.0
description:
  - Runs O(command) through C(/bin/sh) in a transient systemd unit with the settings the app's unit of the settings
    set O(settings) has - user and group, environment and environment file, credentials (C(LoadCredential=)),
    state, cache and logs directories, writable paths and the sandbox - in the directory of release O(release),
    with that release's venv first on C(PATH).
  - A database migration run before any host switches sees exactly what the new release will; a smoke test after a
    switch runs against the release just handed over.
  - Appends a C(hook) line (name, release, exit status, seconds) to the audit log, and fails with the output's tail
    when the command fails.
author: asgi.deploy maintainers (!UNKNOWN)
extends_documentation_fragment:
  - asgi.deploy.app
  - asgi.deploy.app.audit
options:
  name:
    description: The hook's name, for the unit, the audit log and the command's C(ASGI_HOOK).
    type: str
    required: true
  command:
    description: The command, run by C(/bin/sh -c).
    type: str
    required: true
  release:
    description: The release to run it from (built on the host).
    type: str
    required: true
  settings:
    description: The settings set whose unit it takes the app's environment from (staged on the host).
    type: str
    required: true
  operation:
    description: What the run does (C(deploy), C(rollback)); the command gets it as C(ASGI_OPERATION).
    type: str
    default: deploy
attributes:
  check_mode:
    support: full
    description: Says it would run the hook, and runs nothing.
  diff_mode:
    support: none
    description: Nothing to show.
"""

EXAMPLES = r"""
- name: Migrate the database from the new release, before any host switches
  asgi.deploy.hook:
    app: billing
    name: before_switch
    command: python -m billing.migrate
    release: 1.4.0-3f2a9c1e
    settings: "{{ settings_digest }}"
"""

RETURN = r"""
rc:
  description: The command's exit status.
  returned: when run
  type: int
output:
  description: The tail of what the command printed (stdout and stderr).
  returned: when run
  type: str
duration_s:
  description: Seconds it took.
  returned: when run
  type: float
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.asgi.deploy.plugins.module_utils.hooks import HookFailed, run_hook
from ansible_collections.asgi.deploy.plugins.module_utils.host import AUDIT_ARGUMENT_SPEC, App, app_argument_spec


def main():
    module = AnsibleModule(
        argument_spec=app_argument_spec(
            name=dict(type="str", required=True),
            command=dict(type="str", required=True),
            release=dict(type="str", required=True),
            settings=dict(type="str", required=True),
            operation=dict(type="str", default="deploy"),
            **AUDIT_ARGUMENT_SPEC,
        ),
        supports_check_mode=True,
    )
    p = module.params
    if module.check_mode:
        module.exit_json(changed=True, msg=f"would run hook {p['name']}: {p['command']}")
    event = {"run": p["run"], "actor": p["actor"], "host": p["host"]}
    try:
        result = run_hook(
            App(p["app"], p["base_dir"]),
            p["name"],
            p["release"],
            p["settings"],
            p["command"],
            event=event,
            extra_env={"ASGI_OPERATION": p["operation"]},
        )
    except HookFailed as failed:
        module.fail_json(msg=str(failed), **failed.result)
    module.exit_json(changed=True, **result)


if __name__ == "__main__":
    main()
