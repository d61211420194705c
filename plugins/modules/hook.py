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
    with that release's venv first on C(PATH) and C(ASGI_RELEASE_DIR), C(ASGI_RELEASE_ID), C(ASGI_HOOK) and
    C(ASGI_OPERATION) set.
  - A database migration run before any host switches sees exactly what the new release will; a smoke test after a
    switch runs against the release just handed over.
  - The unit is C(asgi-hook-<app>-<name>.service) - systemd refuses a second one while the first runs, so a
    migration a dead run left running is never run twice at once - and is stopped at O(timeout).
  - The command's output goes to the journal under that unit. The audit line (name, release, exit status, seconds)
    keeps the output's last lines, and a failure shows them, only with O(show_output=true) - a hook runs with the
    app's secrets in scope.
  - Runs under the host flock, and only for a run that holds the host's deploy lock.
author: asgi.deploy maintainers (!UNKNOWN)
extends_documentation_fragment:
  - asgi.deploy.app
  - asgi.deploy.app.run
options:
  name:
    description: The hook's name, for the unit, the audit log and the command's C(ASGI_HOOK).
    type: str
    required: true
    choices: [before_switch, after_switch, after_deploy, rollback_before_switch, exec]
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
    description: What the run does; the command gets it as C(ASGI_OPERATION).
    type: str
    choices: [deploy, rollback, exec, remove]
    default: deploy
  timeout:
    description: Seconds the command may run; then systemd stops it (C(RuntimeMaxSec)) and the hook fails.
    type: int
    default: 600
  show_output:
    description: Return the output's last lines (RV(output)), and show them in a failure message.
    type: bool
    default: false
  audit_output:
    description: Keep the output's last lines in the audit log too (by default, when O(show_output=true)).
    type: bool
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
    command: python -m django migrate --noinput
    release: 1.4.0-3f2a9c1e
    settings: "{{ settings_id }}"
    run: "{{ run_id }}"
    timeout: 900
"""

RETURN = r"""
rc:
  description: The command's exit status.
  returned: when run
  type: int
result:
  description: C(success), C(failed) or C(timeout).
  returned: when run
  type: str
unit:
  description: The transient unit the command ran in (its output is in the journal under it).
  returned: when run
  type: str
output:
  description: The last lines of what the command printed.
  returned: when run and O(show_output=true)
  type: str
duration_s:
  description: Seconds it took.
  returned: when run
  type: float
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.asgi.deploy.plugins.module_utils.hooks import HookFailed, run_hook
from ansible_collections.asgi.deploy.plugins.module_utils.host import (
    HOOKS,
    RUN_ARGUMENT_SPEC,
    App,
    Busy,
    app_argument_spec,
)
from ansible_collections.asgi.deploy.plugins.module_utils.locking import NotLocked, holding


def main():
    module = AnsibleModule(
        argument_spec=app_argument_spec(
            name=dict(type="str", required=True, choices=list(HOOKS)),
            command=dict(type="str", required=True),
            release=dict(type="str", required=True),
            settings=dict(type="str", required=True),
            operation=dict(type="str", choices=["deploy", "rollback", "exec", "remove"], default="deploy"),
            timeout=dict(type="int", default=600),
            show_output=dict(type="bool", default=False),
            audit_output=dict(type="bool"),
            **RUN_ARGUMENT_SPEC,
        ),
        supports_check_mode=True,
    )
    p = module.params
    if module.check_mode:
        module.exit_json(changed=True, msg=f"would run hook {p['name']}: {p['command']}")
    app = App(p["app"], p["base_dir"])
    try:
        with holding(app, p["run"], p["flock_wait"]):
            result = run_hook(
                app,
                p["name"],
                p["release"],
                p["settings"],
                p["command"],
                module.run_command,
                event={"run": p["run"], "actor": p["actor"], "host": p["host"]},
                extra_env={"ASGI_OPERATION": p["operation"]},
                timeout_s=p["timeout"],
                show_output=p["show_output"],
                audit_output=p["audit_output"],
            )
    except (Busy, NotLocked) as refused:
        module.fail_json(msg=str(refused))
    except HookFailed as failed:
        module.fail_json(msg=str(failed), **failed.result)
    module.exit_json(changed=True, **result)


if __name__ == "__main__":
    main()
