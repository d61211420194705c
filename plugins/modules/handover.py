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
  - Two symmetric instances, the slots C(<app>-blue.service) and C(<app>-green.service), share the app's listening
    socket; C(<app>.service) is a link to the live one, so C(systemctl status <app>), the socket's activation and the
    boot always name the slot that serves.
  - With O(strategy=handover) - start the idle slot from the release with the new settings on the shared socket, gate
    it, point C(current) at the release (C(previous) at the one before) and C(<app>.service) at that slot, and tell the
    old slot to drain. The new release starts once; the old slot stops accepting at once, closes its WebSockets with
    code 1012 and drains its other connections in the background within C(asgi_drain_timeout), while the rollout goes
    on. A handover that finds the idle slot still draining waits for it (bounded by its stop deadline, then kills it).
  - With O(strategy=restart) - switch C(current), restart the live slot in place, gate it (requests wait in the socket
    backlog).
  - On a host that runs nothing, installs the units, switches C(current), starts the blue slot and gates it.
  - On a host of the layout before slots (C(<app>.service) and C(<app>-next.service)), starts and gates a slot, stops
    the old units (their drain waited for, once), removes them and links C(<app>.service) to the slot.
  - Whether the host needs a change is the one assessment M(asgi.deploy.state) also reports (RV(reasons)) - a new
    release or settings, a failed or interrupted instance, main running other settings than the ones applied, unit
    files systemd has not loaded (they are loaded first), a venv whose interpreter is gone.
  - The gate waits for the instance's readiness path on its private probe socket, fails at the instance's first
    crash, fails at once on an answer only configuration explains (a redirect, 400, 404, naming the likely cause),
    and checks from systemd and C(/proc) which release (the main PID's working directory) and which settings (its
    C(ASGI_SETTINGS_DIGEST)) the instance runs. O(check_version=true) also asks the app's C(/version).
  - On any failure the host is put back exactly as it was (C(current), C(previous), the slot links, C(<app>.service),
    unit files; the old slot serving, the new one stopped) and the module fails naming the step, the check and the
    journal tail. A failed gate leaves the old slot untouched. A failed first deploy leaves the units stopped.
  - The switch runs detached from the SSH session, in a transient scope of its own (RV(scope)) - a controller that
    dies, or logind ending the session, never leaves a host half switched - and under the host flock, so the next
    run waits for it.
  - Appends one JSON line per handover (success or not) to C(<base>/<app>/deploys.log), in one write.
author: asgi.deploy maintainers (!UNKNOWN)
extends_documentation_fragment:
  - asgi.deploy.app
  - asgi.deploy.app.readiness
  - asgi.deploy.app.run
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
    description:
      - C(handover) (the idle slot started on the shared socket, the old one drained) or a socket-activated C(restart)
        of the live slot in place.
    type: str
    choices: [handover, restart]
    default: handover
  operation:
    description: What is recorded in the audit log.
    type: str
    choices: [deploy, rollback, revert, settings]
    default: deploy
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
  hook_timeout:
    description: Seconds O(after_switch) may run before it is stopped (and the host goes back).
    type: int
    default: 600
  hook_show_output:
    description: Keep the last lines of O(after_switch)'s output in the audit log and in a failure message.
    type: bool
    default: false
  front_door:
    description:
      - Once the new release is ready, also ask for the readiness path through this host's nginx over HTTPS, as a
        client of the app's first server name would (SNI, the certificate checked against the name; no DNS needed),
        so that a broken front door fails the handover, which goes back. Keys C(name), C(port) (default 443) and
        C(cafile) (a CA bundle on the host; empty for the system's).
    type: dict
    default: {}
  static_dir:
    description:
      - The release's static directory (a path in the release, C(*) allowed, e.g.
        C(venv/lib/python3*/site-packages/staticfiles)). When set, before the new release serves, the front door's
        C(<base>/<app>/assets/current) becomes its files plus the hashed files of every release kept (names it does
        not have; never overwritten), so that a page of either release finds its assets during the handover and
        after it. A failed handover puts the previous directory back.
    type: str
    default: ""
  run_started:
    description:
      - When the run started, by the controller's clock (seconds since the epoch), recorded in the audit line - the
        fleet's history orders runs by it, never by the hosts' clocks.
    type: float
    default: 0.0
  unlock:
    description:
      - Once the host is handed over, release the deploy lock O(run) holds on it (see M(asgi.deploy.lock)), in the
        same round trip. On failure the lock stays; the run's own clean-up releases it.
    type: bool
    default: false
attributes:
  check_mode:
    support: full
    description: Reports whether the host would be switched, how, and why.
  diff_mode:
    support: none
    description: Links and units, no file content to show.
"""

EXAMPLES = r"""
- name: Hand over to the release
  asgi.deploy.handover:
    app: billing
    release: 1.4.0-3f2a9c1e
    settings: "{{ settings_id }}"
    run: "{{ run_id }}"
    actor: ops@laptop
    host: "{{ inventory_hostname }}"
    readiness_headers:
      Host: billing.example.net
"""

RETURN = r"""
changed:
  description: Whether the host was switched.
  returned: always
  type: bool
change:
  description: What changed - C(release), C(settings), C(both), C(repair) (drift only), or empty.
  returned: always
  type: str
reasons:
  description: Why the host needed a change (see M(asgi.deploy.state)'s RV(asgi.deploy.state#module:assessment)).
  returned: when changed
  type: list
  elements: str
strategy:
  description:
    - The strategy used - C(handover), C(restart), C(initial) or C(upgrade) (from the layout before slots); empty when
      nothing changed.
  returned: always
  type: str
slot:
  description: The slot that runs the release now (C(blue) or C(green)).
  returned: when changed
  type: str
from:
  description: The release the host ran before (empty on a first deploy).
  returned: always
  type: str
to:
  description: The release the host runs now (or was to run).
  returned: always
  type: str
from_settings:
  description: The settings id main ran with before.
  returned: when changed
  type: str
to_settings:
  description: The settings id the host runs now (or was to run).
  returned: when changed
  type: str
result:
  description:
    - C(success), or on failure C(reverted) (the host is back as it was), C(failed) (a first deploy - its units are
      stopped) or C(revert_failed) (see RV(revert_error)).
  returned: when changed
  type: str
steps:
  description: Each step and the seconds it took, in order (C([name, seconds]) pairs).
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
  description:
    - The check that failed - C(start), C(readiness), C(configuration), C(release), C(settings), C(version),
      C(systemd) (a drain that would not end included), C(host), C(lock) or C(busy).
  returned: on failure
  type: str
error:
  description: What failed, in one sentence.
  returned: on failure
  type: str
revert_error:
  description: What could not be put back (empty when the revert completed).
  returned: on failure
  type: str
journal:
  description: Journal tail of the instance that failed, as a list of lines.
  returned: on failure
  type: list
  elements: str
scope:
  description:
    - The transient scope the switch ran in, out of the SSH session's (C(asgi-handover-<app>-<run>.scope)); empty when
      the host's systemd could not make one (the switch then ran in the module's session, detached from it).
  returned: success
  type: str
unlocked:
  description: Whether the deploy lock of O(run) was released.
  returned: when O(unlock=true)
  type: bool
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.asgi.deploy.plugins.module_utils.detach import detached
from ansible_collections.asgi.deploy.plugins.module_utils.gate import Gate
from ansible_collections.asgi.deploy.plugins.module_utils.handover import Handover, HandoverFailed
from ansible_collections.asgi.deploy.plugins.module_utils.host import RUN_ARGUMENT_SPEC, App, Busy, app_argument_spec
from ansible_collections.asgi.deploy.plugins.module_utils.locking import NotLocked, holding, unlock
from ansible_collections.asgi.deploy.plugins.module_utils.systemd import Systemd

ARGUMENT_SPEC = app_argument_spec(
    release=dict(type="str", required=True),
    settings=dict(type="str", required=True),
    strategy=dict(type="str", choices=["handover", "restart"], default="handover"),
    operation=dict(type="str", choices=["deploy", "rollback", "revert", "settings"], default="deploy"),
    **RUN_ARGUMENT_SPEC,
    readiness_path=dict(type="str", default="/readyz"),
    readiness_timeout=dict(type="int", default=60),
    readiness_headers=dict(type="dict", default={}),
    readiness_status=dict(type="list", elements="int", default=[200]),
    check_version=dict(type="bool", default=False),
    start_cpu_weight=dict(type="int", default=20),
    start_nice=dict(type="int", default=10),
    force=dict(type="bool", default=False),
    after_switch=dict(type="str", default=""),
    hook_timeout=dict(type="int", default=600),
    hook_show_output=dict(type="bool", default=False),
    static_dir=dict(type="str", default=""),
    front_door=dict(type="dict", default={}),
    unlock=dict(type="bool", default=False),
    run_started=dict(type="float", default=0.0),
)


def machine(module):
    p = module.params
    systemd = Systemd(module.run_command)
    gate = Gate(
        systemd,
        p["readiness_path"],
        p["readiness_timeout"],
        p["check_version"],
        headers={str(k): str(v) for k, v in p["readiness_headers"].items()},
        accept=p["readiness_status"],
    )
    return Handover(
        App(p["app"], p["base_dir"]),
        systemd,
        gate,
        p["release"],
        p["settings"],
        module.run_command,
        strategy=p["strategy"],
        operation=p["operation"],
        run=p["run"],
        actor=p["actor"],
        host=p["host"],
        run_started=p["run_started"],
        start_cpu_weight=p["start_cpu_weight"],
        start_nice=p["start_nice"],
        force=p["force"],
        after_switch=p["after_switch"],
        hook_timeout=p["hook_timeout"],
        hook_show_output=p["hook_show_output"],
        static_dir=p["static_dir"],
        front_door=front_door(p),
    )


def front_door(p):
    """The front-door gate's target, with the readiness path and statuses of the app's own gate."""
    door = p["front_door"] or {}
    if not door.get("name"):
        return {}
    return {"name": door["name"], "port": int(door.get("port") or 443), "cafile": door.get("cafile") or "",
            "path": p["readiness_path"], "statuses": p["readiness_status"]}  # fmt: skip


def switch(handover):
    """The switch, as a JSON-able outcome (it may run in a detached child)."""
    try:
        return {"ok": handover.run()}
    except HandoverFailed as failed:
        return {"msg": str(failed), **failed.result, "step": failed.step, "check": failed.check,
                "journal": failed.journal.splitlines()}  # fmt: skip


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    p = module.params
    handover = machine(module)
    if module.check_mode:
        prior = handover.snapshot()
        verdict = handover.plan(prior)
        module.exit_json(
            changed=verdict["needed"],
            change=verdict["change"] or ("repair" if verdict["needed"] else ""),
            reasons=verdict["reasons"],
            strategy=("initial" if verdict["first"] else p["strategy"]) if verdict["needed"] else "",
            to=p["release"],
            **{"from": prior["live"]},
        )
    try:
        with holding(handover.app, p["run"], p["flock_wait"]):
            # Detached: a controller that dies (SSH hung up) never stops a host half way through its switch.
            # In a scope of its own: nothing that ends the SSH session (logind, a stop of its scope) reaches it.
            scope = f"asgi-handover-{p['app']}-{p['run'] or 'run'}.scope"
            outcome = detached(lambda: switch(handover), scope=scope, run=module.run_command)
    except (Busy, NotLocked) as refused:
        module.fail_json(msg=str(refused), step="check", check="busy" if isinstance(refused, Busy) else "lock")
    if "crashed" in outcome:
        module.fail_json(
            msg="the handover crashed: " + outcome["crashed"].strip().splitlines()[-1], trace=outcome["crashed"]
        )
    if "ok" not in outcome:
        module.fail_json(**outcome)
    result = {**outcome["ok"], "scope": outcome.get("scope", "")}
    if p["unlock"]:
        result["unlocked"] = unlock(handover.app, p["run"], actor=p["actor"], host=p["host"])[0]
    module.exit_json(**result)


if __name__ == "__main__":
    main()
