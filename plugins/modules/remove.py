#!/usr/bin/python
# Copyright: asgi.deploy maintainers
# MIT License (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: remove
short_description: Remove an app from a host - what the collection made for it, and nothing else
version_added: 0.2.0
description:
  - Stops the app's units (the listening socket first, so that no connection starts the service again), disables and
    deletes them and the C(asgi-<app>) console (and its nginx front door, nginx reloaded), then deletes exactly what
    the collection recorded making for the app
    on this host (C(/etc/asgi-deploy/<app>/made.json), root-only) - C(<base>/<app>) (releases, wheelhouses, links),
    C(/etc/asgi-deploy/<app>) (settings sets and key), and the users and groups it created (the service user, the
    app's build identity).
  - A user another app still runs as is kept (it goes with the last app that uses it); a user or a directory the
    collection did not record making is never deleted. What is kept, and why, is returned (RV(kept)).
  - Keeps the app's state directory (C(/var/lib/<app>)) unless O(purge=true); with it, the state, cache and logs
    directories the app's units had systemd make go too - only those, and only when they belong to the app's user.
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
  description: What was removed (unit files, directories, users and groups).
  returned: always
  type: list
  elements: str
kept:
  description:
    - What was kept, each with why - the state directory (without purge), the audit log's copy, a user another app
      runs as, anything the collection did not record making.
  returned: always
  type: list
  elements: str
"""

import os
import pwd
import shutil
import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.asgi.deploy.plugins.module_utils.host import (
    RUN_ARGUMENT_SPEC,
    App,
    Busy,
    app_argument_spec,
    audit,
    read_made,
    read_text,
    record_made,
    write_atomic,
)
from ansible_collections.asgi.deploy.plugins.module_utils.locking import NotLocked, holding
from ansible_collections.asgi.deploy.plugins.module_utils.systemd import Systemd

ARCHIVE = "/var/log/asgi-deploy"


def plan(app, user, group, purge):
    """(files, dirs, users, groups, kept, handed): what a removal deletes - unit files and the console by their
    names, and of what the collection recorded making, what is the app's alone - what it keeps, with why, and the
    users and groups it hands over to an app that still uses them (that app's removal deletes them)."""
    wants = os.path.join(app.unit_dir, "multi-user.target.wants", app.units["app"])
    made, kept = read_made(app), []
    # Unit files and the console by their names; other files (the front door's nginx files) as recorded.
    named = [app.unit_path(unit) for unit in app.all_units()] + [wants, app.console]
    files = [p for p in dict.fromkeys(named + made["files"]) if os.path.lexists(p)]
    others = other_apps(app)
    dirs = []
    for path in made["dirs"]:
        if not os.path.lexists(path):
            continue
        if not path.startswith(STATE_ROOTS):
            dirs.append(path)
        elif not purge:
            kept.append(f"{path} (the app's state: -e asgi_purge=true deletes it)")
        elif not owned_by(path, user):
            kept.append(f"{path} (not {user}'s: the app's unit did not make it)")
        else:
            dirs.append(path)
    for path in [app.root, app.config, *(f"/var/{k}/{app.name}" for k in ("lib", "cache", "log") if purge)]:
        if os.path.lexists(path) and path not in made["dirs"]:
            kept.append(f"{path} (asgi.deploy has no record of making it)")
    users, groups, handed = [], [], []
    for kind, names, chosen in (("users", made["users"], users), ("groups", made["groups"], groups)):
        for name in names:
            sharing = sorted(other for other, theirs in others.items() if name in theirs["runs_as"] + theirs[kind])
            if sharing:
                kept.append(f"{kind[:-1]} {name} (still used by {', '.join(sharing)}; it goes with the last of them)")
                handed.append((sharing[0], kind, name))
            else:
                chosen.append(name)
    for name, kind in ((user, "users"), (group, "groups")):
        if name not in made[kind]:
            kept.append(f"{kind[:-1]} {name} (asgi.deploy did not create it)")
    return files, dirs, users, groups, kept, handed


# Where systemd makes an app's state, cache and logs directories.
STATE_ROOTS = ("/var/lib/", "/var/cache/", "/var/log/")


def processes_of(module, user, wait_s=30.0, clock=time.monotonic, sleep=time.sleep):
    """Processes ``user`` still runs (``pid unit command`` lines), once they had ``wait_s`` to end: a unit's last
    processes may outlive its stop job by a moment."""
    deadline = clock() + wait_s
    while True:
        rc, out, _err = module.run_command(["ps", "-o", "pid=,unit=,args=", "-u", user])
        left = [line.strip() for line in out.splitlines() if line.strip()] if rc == 0 else []
        if not left or clock() > deadline:
            return left
        sleep(0.5)


def other_apps(app):
    """What the collection made for every other app on this host (their users are not this removal's)."""
    found = {}
    root = os.path.dirname(app.config)
    for name in sorted(os.listdir(root)) if os.path.isdir(root) else []:
        if name != app.name and os.path.isfile(os.path.join(root, name, "made.json")):
            found[name] = read_made(App(name, os.path.dirname(app.root), config_dir=root))
    return found


def owned_by(path, user):
    try:
        return os.lstat(path).st_uid == pwd.getpwnam(user).pw_uid
    except (KeyError, OSError):
        return False


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


def reload_nginx(module):
    """The app's front door is gone from nginx's files: nginx forgets it too (a reload, when the rest passes)."""
    rc, _out, _err = module.run_command(["systemctl", "is-active", "--quiet", "nginx.service"])
    if rc == 0:
        rc, out, err = module.run_command(["nginx", "-t", "-q"])
        if rc == 0:
            rc, out, err = module.run_command(["systemctl", "reload", "nginx.service"])
        if rc != 0:
            module.warn(f"nginx was not reloaded after the app's front door went: {(err or out).strip()}")


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
    files, dirs, users, groups, kept, handed = plan(app, p["user"], p["group"], p["purge"])
    removed = files + dirs + [f"user {u}" for u in users] + [f"group {g}" for g in groups]
    if module.check_mode:
        module.exit_json(changed=bool(removed), removed=removed, kept=kept)
    try:
        with holding(app, p["run"], p["flock_wait"]):
            systemd = Systemd(module.run_command)
            stop_units(app, systemd)
            kept.append(archive_audit(app, p["actor"], p["host"], p["run"]) + " (the audit log, kept)")
            for path in files:
                if os.path.lexists(path):
                    os.unlink(path)
            for other, kind, name in handed:
                record_made(App(other, p["base_dir"], config_dir=os.path.dirname(app.config)), **{kind: [name]})
            for path in dirs:
                if os.path.isdir(path) and not os.path.islink(path):
                    shutil.rmtree(path)
                elif os.path.lexists(path):
                    os.unlink(path)
            systemd.daemon_reload()
            if any(path.startswith("/etc/nginx/") for path in files):
                reload_nginx(module)
    except (Busy, NotLocked) as refused:
        module.fail_json(msg=f"remove: {refused}")
    for name in users:
        left = processes_of(module, name)
        if left:
            module.fail_json(
                msg=f"remove: user {name} still runs processes after its units stopped (left as they are): "
                + "; ".join(left[:5]),
                removed=removed,
                kept=kept,
            )
    for command, names in (("userdel", users), ("groupdel", groups)):
        for name in names:
            rc, out, err = module.run_command([command, name])
            if rc not in (0, 6):  # 6: no such user or group (gone with its user)
                module.fail_json(msg=f"remove: {command} {name} failed: {(err or out).strip()}", removed=removed)
    module.exit_json(changed=True, removed=removed, kept=kept)


if __name__ == "__main__":
    main()
