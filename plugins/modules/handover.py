#!/usr/bin/python
# Copyright: asgi.deploy maintainers
# MIT License (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: handover
short_description: Switch an app on a host to a release and a settings set, health-gated, reverted on failure
version_added: 0.2.0
description:
  - The whole per-host switch as one state machine, in one round trip.
  - With O(strategy=handover) - start C(<app>-next.service) from the release with the new settings on the shared
    socket, gate it, point C(current) at the release (C(previous) at the one before), restart C(<app>.service)
    with the new settings while next serves, gate it, stop next.
  - With O(strategy=restart) - switch C(current), restart main, gate it (requests wait in the socket backlog).
  - On a host that runs nothing, installs and enables the units, switches C(current), starts main and gates it.
  - The gate waits for the instance's readiness path on its private probe socket, fails at the instance's first
    crash, and checks from systemd and C(/proc) which release (the main PID's working directory) and which settings
    (its C(ASGI_SETTINGS_DIGEST)) the instance runs. O(check_version=true) also asks the app's C(/version).
  - On any failure the host is put back exactly as it was (C(current), C(previous), C(next), unit files, units
    reset and running, next stopped) and the module fails naming the step, the check and the journal tail. A failed
    first deploy leaves the units stopped.
  - Appends one JSON line per handover (success or not) to C(<base>/<app>/deploys.log), in one write.
  - A host that already runs the release with the settings, healthy, is left alone unless O(force=true).
author: asgi.deploy maintainers (!UNKNOWN)
extends_documentation_fragment:
  - asgi.deploy.app
  - asgi.deploy.app.audit
options:
  release:
    description: The release to run (a finished release on the host).
    type: str
    required: true
  settings:
    description: The settings set to run (staged on the host by M(asgi.deploy.settings)).
    type: str
    required: true
  strategy:
    description: C(handover) (temporary instance on the shared socket) or a plain socket-activated C(restart).
    type: str
    choices: [handover, restart]
    default: handover
  operation:
    description: What is recorded in the audit log (C(deploy), C(rollback), C(recover)).
    type: str
    default: deploy
  readiness_path:
    description: Path that answers 200 once an instance can serve.
    type: str
    default: /readyz
  readiness_timeout:
    description: Seconds an instance gets to become ready.
    type: int
    default: 60
  check_version:
    description:
      - Also require the app's C(/version) to name the release (C(release_id)).
      - Off by default, since that needs app code.
    type: bool
    default: false
  start_cpu_weight:
    description:
      - C(CPUWeight) a starting instance gets until it passed its gate, so that the instance serving keeps the cores.
      - 100 is systemd's default; 0 leaves it alone.
    type: int
    default: 20
  start_nice:
    description:
      - Niceness a starting instance's processes get until it passed its gate (0 leaves it alone).
      - Unlike O(start_cpu_weight) it needs no cgroup cpu controller, so it works in containers too.
    type: int
    default: 10
  force:
    description: Hand over even when the host already runs the release with the settings.
    type: bool
    default: false
  after_switch:
    description:
      - A command run once the host switched and passed its gate (a smoke test), as the app runs and from the release
        (see M(asgi.deploy.hook)), with C(ASGI_OPERATION) set to O(operation). When it fails the host goes back as on a
        failed gate, and the step is C(after switch). Empty runs nothing.
    type: str
    default: ""
  unlock:
    description:
      - Once the host is handed over, release the deploy lock O(run) holds on it (see M(asgi.deploy.lock)), in the
        same round trip. On failure the lock stays; the run's own clean-up releases it.
    type: bool
    default: false
attributes:
  check_mode:
    support: full
    description: Reports whether the host would be switched, and how.
  diff_mode:
    support: none
    description: Links and units, no file content to show.
"""

EXAMPLES = r"""
- name: Hand over to the release
  asgi.deploy.handover:
    app: billing
    release: 1.4.0-3f2a9c1e
    settings: "{{ settings_digest }}"
    run: "{{ run_id }}"
    actor: ops@laptop
    host: "{{ inventory_hostname }}"
"""

RETURN = r"""
change:
  description: What changed - C(release), C(settings), C(both), C(repair), or empty.
  returned: always
  type: str
strategy:
  description: The strategy used - C(handover), C(restart) or C(initial).
  returned: always
  type: str
from:
  description: The release the host ran before.
  returned: always
  type: str
to:
  description: The release the host runs now.
  returned: always
  type: str
steps:
  description: Each step and the seconds it took, in order.
  returned: when changed
  type: list
  elements: list
duration_s:
  description: Seconds the whole handover took.
  returned: when changed
  type: float
step:
  description: The step that failed.
  returned: on failure
  type: str
check:
  description: The check that failed (C(start), C(readiness), C(release), C(settings), C(version), C(systemd)).
  returned: on failure
  type: str
journal:
  description: Journal tail of the instance that failed.
  returned: on failure
  type: str
unlocked:
  description: Whether the deploy lock of O(run) was released.
  returned: when O(unlock=true)
  type: bool
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.asgi.deploy.plugins.module_utils.gate import Gate
from ansible_collections.asgi.deploy.plugins.module_utils.handover import Handover, HandoverFailed, describe_change
from ansible_collections.asgi.deploy.plugins.module_utils.host import AUDIT_ARGUMENT_SPEC, App, app_argument_spec
from ansible_collections.asgi.deploy.plugins.module_utils.locking import release
from ansible_collections.asgi.deploy.plugins.module_utils.systemd import Systemd


def main():
    module = AnsibleModule(
        argument_spec=app_argument_spec(
            release=dict(type="str", required=True),
            settings=dict(type="str", required=True),
            strategy=dict(type="str", choices=["handover", "restart"], default="handover"),
            operation=dict(type="str", default="deploy"),
            **AUDIT_ARGUMENT_SPEC,
            readiness_path=dict(type="str", default="/readyz"),
            readiness_timeout=dict(type="int", default=60),
            check_version=dict(type="bool", default=False),
            start_cpu_weight=dict(type="int", default=20),
            start_nice=dict(type="int", default=10),
            force=dict(type="bool", default=False),
            after_switch=dict(type="str", default=""),
            unlock=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    p = module.params
    app, systemd = App(p["app"], p["base_dir"]), Systemd()
    gate = Gate(systemd, p["readiness_path"], p["readiness_timeout"], p["check_version"])
    machine = Handover(
        app,
        systemd,
        gate,
        p["release"],
        p["settings"],
        strategy=p["strategy"],
        operation=p["operation"],
        run=p["run"],
        actor=p["actor"],
        host=p["host"],
        start_cpu_weight=p["start_cpu_weight"],
        start_nice=p["start_nice"],
        force=p["force"],
        after_switch=p["after_switch"],
    )
    if module.check_mode:
        prior = machine.snapshot()
        first = machine.first(prior)
        change = describe_change(prior, p["release"], p["settings"], first)
        changed = bool(change) or p["force"] or not machine.healthy(prior)
        module.exit_json(
            changed=changed,
            change=change,
            strategy="initial" if first else p["strategy"],
            to=p["release"],
            **{"from": prior["current"]},
        )
    try:
        result = machine.run()
    except HandoverFailed as failed:
        details = dict(failed.result, step=failed.step, check=failed.check, journal=failed.journal)
        module.fail_json(msg=str(failed), **details)
    if p["unlock"] and p["run"]:
        result["unlocked"] = release(app, p["run"], actor=p["actor"], host=p["host"])[0]
    module.exit_json(**result)


if __name__ == "__main__":
    main()
