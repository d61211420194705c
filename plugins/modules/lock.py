#!/usr/bin/python
# Copyright: asgi.deploy maintainers
# MIT License (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: lock
short_description: Take or release the per-host deploy lock of an app
version_added: 0.2.0
description:
  - The lock (C(<base>/<app>/deploy.lock)) records the run that holds it - run id, actor, operation, version,
    controller host and PID, and when it was taken - so a held lock names its holder and age.
  - Taking it is one exclusive create, so of two runs racing for a host exactly one wins.
  - A run releases only its own lock. O(force=true) takes over or clears anyone's, and appends a C(force_unlock)
    line naming the previous holder to the audit log (C(<base>/<app>/deploys.log)); taking and releasing the lock
    leave C(lock) and C(unlock) lines.
  - With O(state=present), also returns the host's state read under the lock (see M(asgi.deploy.state)).
author: asgi.deploy maintainers (!UNKNOWN)
extends_documentation_fragment:
  - asgi.deploy.app
options:
  state:
    description: C(present) takes the lock, C(absent) releases it.
    type: str
    choices: [present, absent]
    default: present
  run:
    description: Identifies this run; only the run that holds the lock releases it without O(force).
    type: str
    required: true
  actor:
    description: Who runs the deploy (C(user@controller)).
    type: str
    default: ""
  operation:
    description: What the run does (C(deploy), C(rollback)), recorded in the lock.
    type: str
    default: ""
  version:
    description: The version the run ships, recorded in the lock.
    type: str
    default: ""
  controller:
    description: Host name of the controller.
    type: str
    default: ""
  controller_id:
    description: Digest of the controller's machine id, so that a dead run's lock can be told from a live one.
    type: str
    default: ""
  pid:
    description: PID of C(ansible-playbook) on the controller.
    type: int
    default: 0
  host:
    description: The inventory name of the host, for the audit log.
    type: str
    default: ""
  force:
    description: Take over or clear a lock another run holds, with a C(force_unlock) audit line.
    type: bool
    default: false
  reason:
    description: Why a lock is forced (recorded in the audit line), for example C(dead run).
    type: str
    default: ""
  python:
    description: Interpreter the releases are built with (for the state returned with O(state=present)).
    type: path
    default: /usr/bin/python3
attributes:
  check_mode:
    support: full
    description: Reports whether the lock could be taken or released, and changes nothing.
  diff_mode:
    support: none
    description: The lock file is bookkeeping.
"""

EXAMPLES = r"""
- name: Take the deploy lock
  asgi.deploy.lock:
    app: billing
    run: "{{ run_id }}"
    actor: ops@laptop
    operation: deploy
    version: 1.4.0

- name: Clear a lock left by a dead run, with an audit line
  asgi.deploy.lock:
    app: billing
    state: absent
    run: "{{ run_id }}"
    force: true
"""

RETURN = r"""
holder:
  description: The holder found before this call (with C(age_s)), or null.
  returned: always
  type: dict
forced:
  description: Whether another run's lock was cleared.
  returned: always
  type: bool
host_state:
  description: The host's state read under the lock (as M(asgi.deploy.state) returns it).
  returned: when O(state=present)
  type: dict
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.asgi.deploy.plugins.module_utils.host import App, app_argument_spec
from ansible_collections.asgi.deploy.plugins.module_utils.host_state import read_state
from ansible_collections.asgi.deploy.plugins.module_utils.locking import LockHeld, describe, read_lock, release, take
from ansible_collections.asgi.deploy.plugins.module_utils.systemd import Systemd


def main():
    module = AnsibleModule(
        argument_spec=app_argument_spec(
            state=dict(type="str", choices=["present", "absent"], default="present"),
            run=dict(type="str", required=True),
            actor=dict(type="str", default=""),
            operation=dict(type="str", default=""),
            version=dict(type="str", default=""),
            controller=dict(type="str", default=""),
            controller_id=dict(type="str", default=""),
            pid=dict(type="int", default=0),
            host=dict(type="str", default=""),
            force=dict(type="bool", default=False),
            reason=dict(type="str", default=""),
            python=dict(type="path", default="/usr/bin/python3"),
        ),
        supports_check_mode=True,
    )
    p = module.params
    app = App(p["app"], p["base_dir"])
    if not p["run"]:
        module.fail_json(msg="lock: run must not be empty")
    if module.check_mode:
        holder = read_lock(app)
        ours = holder is not None and holder.get("run") == p["run"]
        if p["state"] == "present" and holder is not None and not ours and not p["force"]:
            module.fail_json(msg=f"deploy lock held by {describe(holder)}", holder=holder)
        changed = (
            (holder is None or not ours) if p["state"] == "present" else (holder is not None and (ours or p["force"]))
        )
        module.exit_json(changed=changed, holder=holder, forced=bool(holder and not ours and p["force"]))
    if p["state"] == "present":
        try:
            changed, holder = take(
                app,
                p["run"],
                actor=p["actor"],
                operation=p["operation"],
                version=p["version"],
                controller=p["controller"],
                controller_id=p["controller_id"],
                pid=p["pid"],
                force=p["force"],
                host=p["host"],
                reason=p["reason"],
            )
        except LockHeld as held:
            module.fail_json(msg="{}: {}".format(p["host"] or "host", held), holder=held.holder)
        except OSError as exc:
            module.fail_json(msg=f"cannot take the deploy lock {app.lock}: {os.strerror(exc.errno or 0) or exc}")
        state = read_state(app, Systemd(), p["python"])
        module.exit_json(changed=changed, holder=holder, forced=bool(holder), host_state=state)
    changed, holder = release(app, p["run"], force=p["force"], actor=p["actor"], host=p["host"], reason=p["reason"])
    module.exit_json(changed=changed, holder=holder, forced=bool(changed and holder and holder.get("run") != p["run"]))


if __name__ == "__main__":
    main()
