#!/usr/bin/python
# Copyright: asgi.deploy maintainers
# MIT License (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: state
short_description: Read everything a deploy, rollback or status needs about an app on a host, in one round trip
version_added: 0.2.0
description:
  - Reads the releases (live, previous, next, kept, unfinished), the units of the main and the temporary instance
    (state, main PID and the release and settings that PID actually runs), the deploy lock with its holder and age,
    the settings digest main runs with, staged settings sets, wheelhouses and tools on the host, free space and the
    Python that releases are built with.
  - Also names signs of an interrupted run (a temporary instance left running, main on another release than
    C(current)).
  - With O(release), also says whether the host needs a change to run that release with O(settings), and why.
  - Changes nothing.
author: asgi.deploy maintainers (!UNKNOWN)
extends_documentation_fragment:
  - asgi.deploy.app
options:
  python:
    description: Interpreter the releases are built with, described in RV(python).
    type: path
    default: /usr/bin/python3
  release:
    description: A release id to compare the host with; sets RV(needs).
    type: str
    default: ""
  settings:
    description: The settings digest to compare the host with.
    type: str
    default: ""
  converge:
    description: Count the host as needing a change even when it runs O(release) with O(settings).
    type: bool
    default: false
  min_free_mb:
    description:
      - Fail, naming the problem, when the app directory's file system has less free space (MB); 0 checks nothing.
    type: int
    default: 0
  group:
    description:
      - Inventory group the host joins when it needs a change (see RV(needs)), so that later plays of a run can
        target only those hosts. Handled by the action plugin on the controller.
    type: str
    default: ""
attributes:
  check_mode:
    support: full
    description: Reads only.
  diff_mode:
    support: none
    description: Reads only.
"""

EXAMPLES = r"""
- name: Read the host
  asgi.deploy.state:
    app: billing
  register: billing_state

- name: Does the host need release 1.4.0-3f2a9c1e?
  asgi.deploy.state:
    app: billing
    release: 1.4.0-3f2a9c1e
    settings: "{{ billing_settings_digest }}"
"""

RETURN = r"""
live:
  description: The release C(current) points at, if that release is finished; empty when the host runs nothing.
  returned: always
  type: str
  sample: 1.4.0-3f2a9c1e
current:
  description: Target of the C(current) link, finished or not.
  returned: always
  type: str
previous:
  description: Target of the C(previous) link.
  returned: always
  type: str
next:
  description: Target of the C(next) link.
  returned: always
  type: str
settings:
  description: Digest of the settings main was last handed over with.
  returned: always
  type: str
main:
  description:
    - The main instance - unit, active and sub state, result, main PID, restarts, and the release and settings that
      PID runs.
  returned: always
  type: dict
next_instance:
  description: The temporary instance, as RV(main).
  returned: always
  type: dict
lock:
  description: The deploy lock holder (run, actor, operation, version, controller, pid, since, age_s), or null.
  returned: always
  type: dict
kept:
  description: Finished releases, oldest first (id, version, app_version, built_at, wheelhouse_key).
  returned: always
  type: list
  elements: dict
unfinished:
  description: Release directories without a manifest.
  returned: always
  type: list
  elements: str
settings_sets:
  description: Settings digests staged on the host.
  returned: always
  type: list
  elements: str
wheelhouses:
  description: Wheelhouse keys on the host.
  returned: always
  type: list
  elements: str
free_mb:
  description: Free space of the file system that holds the app directory, in MB.
  returned: always
  type: int
python:
  description: Version (C(python), C(full)), C(machine), C(glibc) and C(venv) of O(python); empty when it does not run.
  returned: always
  type: dict
recent:
  description: The last audit log lines (deploys, rollbacks, reverts, forced unlocks), oldest first.
  returned: always
  type: list
  elements: dict
interrupted:
  description: Signs that a run stopped half way through a handover.
  returned: always
  type: list
  elements: str
needs:
  description: Why the host must change to run O(release) with O(settings); empty when it need not.
  returned: when O(release) is set
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.asgi.deploy.plugins.module_utils.host import App, app_argument_spec
from ansible_collections.asgi.deploy.plugins.module_utils.host_state import needs, read_state
from ansible_collections.asgi.deploy.plugins.module_utils.systemd import Systemd


def main():
    module = AnsibleModule(
        argument_spec=app_argument_spec(
            python=dict(type="path", default="/usr/bin/python3"),
            release=dict(type="str", default=""),
            settings=dict(type="str", default=""),
            converge=dict(type="bool", default=False),
            min_free_mb=dict(type="int", default=0),
            group=dict(type="str", default=""),
        ),
        supports_check_mode=True,
    )
    params = module.params
    state = read_state(App(params["app"], params["base_dir"]), Systemd(), params["python"])
    if params["release"]:
        state["needs"] = needs(state, params["release"], params["settings"], params["converge"])
    if params["release"] and not state["python"]:
        module.fail_json(msg="{} does not run on this host (asgi_python)".format(params["python"]), **state)
    if params["min_free_mb"] and state["free_mb"] < params["min_free_mb"]:
        module.fail_json(
            msg=f"only {state['free_mb']} MB free under {state['root']} (rollout_min_free_mb: {params['min_free_mb']})",
            **state,
        )
    module.exit_json(changed=False, **state)


if __name__ == "__main__":
    main()
