#!/usr/bin/python
# Copyright: asgi.deploy maintainers
# MIT License (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: remove
short_description: Remove an app from a host - its units, releases, settings sets, console and user
version_added: 0.2.0
description:
  - Stops the app's units (the listening socket first, so that no connection starts the service again), disables and
    deletes them, then deletes C(<base>/<app>) (releases, wheelhouses, links), C(/etc/asgi-deploy/<app>) (settings
    sets and key), the C(asgi-<app>) console and the service user and group.
  - Keeps the app's state directory (C(/var/lib/<app>)) unless O(purge=true); with it, also the cache and logs
    directories.
  - Keeps the audit log - copied to C(/var/log/asgi-deploy/<app>.deploys.log) with a last C(remove) line - since
    nothing a fleet did may be lost.
  - Changes nothing unless O(run) holds the host's deploy lock.
author: asgi.deploy maintainers (!UNKNOWN)
extends_documentation_fragment:
  - asgi.deploy.app
  - asgi.deploy.app.run
options:
  user:
    description: The service user to remove (its group too).
    type: str
    required: true
  group:
    description: The service group.
    type: str
    required: true
  purge:
    description: Also delete the app's state, cache and logs directories.
    type: bool
    default: false
attributes:
  check_mode:
    support: full
    description: Says what would be removed.
  diff_mode:
    support: none
    description: Nothing to show.
"""

EXAMPLES = r"""
- name: Remove billing, keeping its state
  asgi.deploy.remove:
    app: billing
    user: billing
    group: billing
    run: "{{ run_id }}"
"""

RETURN = r"""
removed:
  description: What was removed (unit files, directories, the user).
  returned: always
  type: list
  elements: str
kept:
  description: What was kept (the state directory, the audit log's copy).
  returned: always
  type: list
  elements: str
"""

import os
import shutil

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.asgi.deploy.plugins.module_utils.host import (
    RUN_ARGUMENT_SPEC,
    App,
    Busy,
    app_argument_spec,
    audit,
    read_text,
    write_atomic,
)
from ansible_collections.asgi.deploy.plugins.module_utils.locking import NotLocked, holding
from ansible_collections.asgi.deploy.plugins.module_utils.systemd import Systemd

ARCHIVE = "/var/log/asgi-deploy"


def present(app, user, purge):
    """Everything of the app on this host that a removal deletes, and what it keeps."""
    wants = os.path.join(app.unit_dir, "multi-user.target.wants", app.units["app"])
    files = [app.unit_path(unit) for unit in app.all_units()] + [wants, app.console]
    dirs = [app.root, app.config] + [f"/var/{kind}/{app.name}" for kind in ("lib", "cache", "log") if purge]
    kept = [] if purge else [f"/var/lib/{app.name}"]
    return [p for p in files + dirs if os.path.lexists(p)], [p for p in kept if os.path.exists(p)]


def stop_units(app, systemd):
    # The units this host has (the layout before slots', or the slots'), the listening socket first: its stop
    # takes the instances and their probes in the same transaction.
    units = [u for u in app.all_units() if os.path.lexists(app.unit_path(u))]
    units.sort(key=lambda u: u != app.units["socket"])
    if units:
        systemd.stop_for_good(*units)
        systemd.reset_failed(*units)
    # What has an [Install] section: the socket, and <app>.service when it is a unit of its own (before slots).
    installed = [app.units["socket"]] + ([app.legacy_units["main"]] if app.live_slot() == "legacy" else [])
    systemd.disable(*[u for u in installed if os.path.lexists(app.unit_path(u))])


def archive_audit(app, actor, host, run):
    """The audit log outlives the app, with a last line saying who removed it."""
    audit(app, {"event": "remove", "run": run, "actor": actor, "host": host})
    target = os.path.join(ARCHIVE, f"{app.name}.deploys.log")
    write_atomic(target, read_text(target) + read_text(app.audit), 0o640)
    return target


def main():
    module = AnsibleModule(
        argument_spec=app_argument_spec(
            user=dict(type="str", required=True),
            group=dict(type="str", required=True),
            purge=dict(type="bool", default=False),
            **RUN_ARGUMENT_SPEC,
        ),
        supports_check_mode=True,
    )
    p = module.params
    app = App(p["app"], p["base_dir"])
    removed, kept = present(app, p["user"], p["purge"])
    if module.check_mode:
        module.exit_json(changed=bool(removed), removed=removed, kept=kept)
    try:
        with holding(app, p["run"], p["flock_wait"]):
            systemd = Systemd(module.run_command)
            stop_units(app, systemd)
            kept.append(archive_audit(app, p["actor"], p["host"], p["run"]))
            for path in removed:
                if os.path.isdir(path) and not os.path.islink(path):
                    shutil.rmtree(path)
                elif os.path.lexists(path):
                    os.unlink(path)
            systemd.daemon_reload()
    except (Busy, NotLocked) as refused:
        module.fail_json(msg=f"remove: {refused}")
    for command, name in (("userdel", p["user"]), ("groupdel", p["group"])):
        rc, out, err = module.run_command([command, name])
        if rc == 0:
            removed.append(f"{command[:-3]} {name}")
        elif rc not in (6,):  # 6: no such user or group
            module.fail_json(msg=f"remove: {command} {name} failed: {(err or out).strip()}", removed=removed)
    module.exit_json(changed=True, removed=removed, kept=kept)


if __name__ == "__main__":
    main()
