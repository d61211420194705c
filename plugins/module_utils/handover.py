# Copyright: asgi.deploy maintainers
# MIT License (see LICENSE)
"""The per-host switch to a release and a settings set, as one state machine.

Two symmetric instances, the slots ``<app>-blue.service`` and ``<app>-green.service``, can serve the one listening
socket; ``<app>.service`` is a link to the live one (``systemctl status <app>``, the socket's activation, the
boot). Strategies:

``handover``
    wait for the idle slot's last drain -> prepare the idle slot (its link, its units from the new settings)
    -> start it -> gate it -> switch (current, previous, ``<app>.service``) -> drain the old slot. The new release
    starts once; the old slot stops accepting at once and drains its connections in the background, within its
    own stop deadline (asgi_drain_timeout), while the rollout goes on.
``restart``
    prepare the live slot -> switch -> restart it -> gate it. Requests wait in the socket's backlog meanwhile.
``initial`` (chosen when the host runs nothing)
    install units -> switch -> start blue -> gate it.
``upgrade`` (chosen on a host of the layout before slots: ``<app>.service`` a unit of its own)
    as ``handover``, with the old units retired (stopped, their drain waited for once, removed) before the switch.

With an after-switch hook (a smoke test), each ends with it: a hook that fails is a failed gate. A changed
listening socket is replaced last.

STEPS names every step once, with the instance whose journal a failure shows and the undo that going back from it
takes. On any failure the undos of the steps reached run in reverse order, so the host is put back exactly as it
was, and HandoverFailed names the step, the check and the journal tail.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections import namedtuple

from ansible_collections.asgi.deploy.plugins.module_utils import assets
from ansible_collections.asgi.deploy.plugins.module_utils.front_door import FrontDoorFailed, check_through
from ansible_collections.asgi.deploy.plugins.module_utils.gate import GateFailed
from ansible_collections.asgi.deploy.plugins.module_utils.hooks import HookFailed, run_hook
from ansible_collections.asgi.deploy.plugins.module_utils.host import (
    SLOTS,
    audit,
    link_target,
    other_slot,
    point_link,
    read_manifest,
    read_text,
    swap_link,
    write_atomic,
)
from ansible_collections.asgi.deploy.plugins.module_utils.host_state import assess, read_state
from ansible_collections.asgi.deploy.plugins.module_utils.systemd import RUNNING, SystemdError

STRATEGIES = ("handover", "restart")
NORMAL_CPU_WEIGHT = 100
# Beyond a unit's own stop deadline, how long a wait for its drain goes on before it is killed.
DRAIN_MARGIN_S = 5.0
WANTS = "multi-user.target.wants"

# instance: whose journal a failure at the step shows ("idle", "live" or ""); undo: the Handover method that
# takes the host back from it (run in reverse order of the steps reached).
Step = namedtuple("Step", "instance undo")
WAIT_DRAIN, PREPARE, START, GATE = "wait for the last drain", "prepare", "start", "gate"
SWITCH, DRAIN, RESTART, INSTALL = "switch", "drain", "restart", "install units"
RETIRE, REPLACE_SOCKETS, AFTER_SWITCH = "retire the old layout", "replace sockets", "after switch"
ASSETS, FRONT_DOOR, OPEN = "bridge static files", "front door", "open"
STEPS = {
    WAIT_DRAIN: Step("idle", None),
    INSTALL: Step("idle", "uninstall"),
    PREPARE: Step("idle", "unprepare"),
    ASSETS: Step("", "unbridge"),
    START: Step("idle", "stop_idle"),
    GATE: Step("idle", None),
    OPEN: Step("idle", None),
    FRONT_DOOR: Step("idle", None),
    RETIRE: Step("live", "unretire"),
    SWITCH: Step("", "unswitch"),
    RESTART: Step("idle", "restart_back"),
    DRAIN: Step("live", "undrain"),
    REPLACE_SOCKETS: Step("idle", "restore_sockets"),
    AFTER_SWITCH: Step("", None),
}


class HandoverFailed(Exception):
    def __init__(self, message, step, check, journal="", result=None):
        super().__init__(message)
        self.step, self.check, self.journal, self.result = step, check, journal, result or {}


class Handover:
    def __init__(
        self,
        app,
        systemd,
        gate,
        release,
        settings,
        run_command,
        strategy="handover",
        operation="deploy",
        run="",
        actor="",
        host="",
        run_started=0.0,
        start_cpu_weight=0,
        start_nice=0,
        force=False,
        after_switch="",
        hook_timeout=600,
        hook_show_output=False,
        static_dir="",
        front_door=None,
        clock=time.monotonic,
        sleep=time.sleep,
    ):
        if strategy not in STRATEGIES:
            raise ValueError("strategy must be one of {}".format(", ".join(STRATEGIES)))
        self.app, self.systemd, self.gate, self.run_command = app, systemd, gate, run_command
        self.release, self.settings, self.strategy = release, settings, strategy
        self.operation, self.run_id, self.actor, self.host = operation, run, actor, host
        # The controller's clock at the run's start: the audited history orders runs by it, never by hosts' clocks.
        self.run_started = run_started
        self.start_cpu_weight, self.start_nice, self.force = start_cpu_weight, start_nice, force
        self.clock, self.sleep = clock, sleep
        self.after_switch, self.hook_timeout, self.hook_show_output = after_switch, hook_timeout, hook_show_output
        # The release's static files, bridged for the front door before the new release serves (module_utils/assets).
        self.static_dir, self.assets_made, self.assets_before = static_dir, "", ""
        # {name, port, cafile, path, statuses}: once ready, the app must answer through the host's nginx too.
        self.front_door = front_door or {}
        # Ordered [name, seconds] pairs: the audit log keeps them in the order they ran.
        self.timings, self.step = [], ""
        # Unit files as they were before this run wrote them (None: there was none).
        self.unit_backup = {}
        self.prior, self.live, self.idle, self.idle_served = {}, "", "", False
        self.link_before, self.legacy_backup, self.socket_restarted, self.errors = "", {}, False, []

    # -- what the host looks like now -------------------------------------------------

    def snapshot(self):
        return read_state(self.app, self.systemd, self.run_command, full=False)

    def plan(self, prior):
        """The assessment of the host for this switch (also what check mode reports)."""
        return assess(prior, self.release, self.settings, self.force)

    def mode(self, prior, verdict):
        if verdict["first"]:
            return "initial"
        if prior["live_slot"] == "legacy":
            return "upgrade"
        return self.strategy

    # -- unit files -------------------------------------------------------------------

    def set_unit(self, name):
        """Install unit ``name`` from the settings set; True when the file changed."""
        wanted = self.wanted_unit(name)
        path = self.app.unit_path(name)
        old = read_text(path, default=None)
        if old == wanted:
            return False
        self.unit_backup.setdefault(name, old)
        write_atomic(path, wanted, 0o644)
        return True

    def wanted_unit(self, name):
        wanted = self.app.unit_in_settings(self.settings, name)
        if not wanted:
            raise HandoverFailed(f"settings set {self.settings} has no unit {name}", self.step, "settings")
        return wanted

    def restore_units(self, names=None):
        restored = False
        for name, old in list(self.unit_backup.items()):
            if names is not None and name not in names:
                continue
            path = self.app.unit_path(name)
            if old is None:
                if os.path.lexists(path):
                    os.unlink(path)
            else:
                write_atomic(path, old, 0o644)
            del self.unit_backup[name]
            restored = True
        return restored

    # -- the machine ------------------------------------------------------------------

    def run(self):
        """The switch. The caller holds the host flock and has checked that its run holds the lock."""
        began = self.clock()
        prior = self.prior = self.snapshot()
        self.check_inputs()
        verdict = self.plan(prior)
        if not verdict["needed"]:
            return {"changed": False, "change": "", "strategy": "", "from": prior["current"], "to": self.release}
        mode = self.mode(prior, verdict)
        self.live = prior["live_slot"] if prior["live_slot"] in SLOTS else ""
        self.idle = self.live if mode == "restart" else other_slot(self.live)
        summary = {
            "changed": True,
            "change": verdict["change"] or "repair",
            "reasons": verdict["reasons"],
            "strategy": mode,
            "from": prior["live"],
            "to": self.release,
            "from_settings": prior["settings"],
            "to_settings": self.settings,
            "slot": self.idle,
        }
        try:
            if prior["reload_needed"]:
                # Unit files someone changed on disk and never loaded: load them before anything starts.
                self.systemd.daemon_reload()
            getattr(self, "switch_" + mode)()
            changed = self.sockets_changed()
            if changed or self.socket_files_drifted():
                self.do(REPLACE_SOCKETS, self.replace_sockets, changed)
            if self.after_switch:
                self.do(AFTER_SWITCH, self.after_switch_hook)
        except (GateFailed, SystemdError, HandoverFailed, HookFailed, OSError) as exc:
            raise self.failed(exc, summary, began) from exc
        write_atomic(self.app.applied, self.settings + "\n", 0o644)
        if self.static_dir:
            assets.prune(self.app)
        summary.update(result="success", steps=self.timings, duration_s=round(self.clock() - began, 2))
        self.record(summary)
        return summary

    def check_inputs(self):
        if read_manifest(self.app, self.release) is None:
            raise HandoverFailed(
                f"release {self.release} is not built on this host (no release.json)", "check", "release"
            )
        if not os.path.isdir(os.path.join(self.app.settings_dir(self.settings), "units")):
            raise HandoverFailed(f"settings set {self.settings} is not staged on this host", "check", "settings")

    def switch_initial(self):
        self.do(INSTALL, self.install_units)
        self.bridge()
        self.do(SWITCH, self.switch)
        self.do(START, self.start_first)
        self.gate_and_open()

    def switch_handover(self):
        self.do(WAIT_DRAIN, self.wait_drained, self.idle)
        self.prepare_and_start()
        self.do(SWITCH, self.switch)
        # The old slot stops accepting at once and drains on its own: the run does not wait for it.
        self.do(DRAIN, self.systemd.stop_no_block, self.app.units[self.live])

    def switch_upgrade(self):
        self.prepare_and_start()
        # The old units go before the link that replaces <app>.service's own file is made (once, on the path).
        self.do(RETIRE, self.retire_legacy)
        self.do(SWITCH, self.switch)

    def switch_restart(self):
        self.do(PREPARE, self.prepare_idle)
        self.bridge()
        self.do(SWITCH, self.switch)
        self.do(RESTART, self.start_weighted, self.app.units[self.idle])
        self.gate_and_open()

    def prepare_and_start(self):
        """The idle slot on the new release and settings, its static files bridged, started held, gated, opened."""
        self.do(PREPARE, self.prepare_idle)
        self.bridge()
        self.do(START, self.start_weighted, self.app.units[self.idle])
        self.gate_and_open()

    def gate_and_open(self):
        """Gated on its probe socket, then opened to clients, then (with a front door) through nginx."""
        self.do(GATE, self.gate_idle)
        self.do(OPEN, self.open_idle)
        self.check_front_door()

    def check_front_door(self):
        if self.front_door:
            self.do(FRONT_DOOR, self.through_front_door)

    def through_front_door(self):
        door = self.front_door
        try:
            check_through(door["name"], door["port"], door["path"], door["statuses"], door.get("cafile", ""))
        except FrontDoorFailed as exc:
            raise HandoverFailed(str(exc), FRONT_DOOR, "front door") from None

    def bridge(self):
        """Before the new release serves anything, the front door's static files are its own plus the hashed files
        of every release kept: a page of either release finds its assets during the handover and after it."""
        if self.static_dir:
            self.do(ASSETS, self.bridge_assets)

    def bridge_assets(self):
        try:
            self.assets_made, self.assets_before = assets.bridge(self.app, self.release, self.static_dir)
        except assets.AssetsFailed as exc:
            raise HandoverFailed(str(exc), ASSETS, "assets") from None

    def unbridge(self):
        if self.assets_made:  # nothing was made current when the bridge itself failed
            assets.unbridge(self.app, self.assets_made, self.assets_before)

    def do(self, name, action, *args):
        self.step = name
        began = self.clock()
        result = action(*args)
        self.timings.append([name, round(self.clock() - began, 2)])
        return result

    def reached(self):
        """The steps done, and the one that failed, in order."""
        return [pair[0] for pair in self.timings] + ([self.step] if self.step and self.step not in self.done() else [])

    def done(self):
        return [pair[0] for pair in self.timings]

    # -- the steps --------------------------------------------------------------------

    def wait_drained(self, slot):
        """The idle slot may still drain the connections of the last handover: a host never has two draining
        instances. Bounded by the slot's own stop deadline; past it (and a margin), what is left is killed."""
        unit = self.app.units[slot]
        if self.systemd.show(unit).get("ActiveState") not in RUNNING:
            return 0.0
        if not self.prior["slots"][slot]["draining"]:
            # Left running by a run that died between start and switch: it serves, so it drains too.
            self.systemd.stop_no_block(unit)
        timeout = self.systemd.stop_timeout_s(unit) + DRAIN_MARGIN_S
        return self.systemd.wait_stopped(unit, timeout, clock=self.clock, sleep=self.sleep)

    def install_units(self):
        """A first deploy: the socket, both slots and their probes, <app>.service linked to blue, enabled."""
        units = self.app.units
        for name in (units["socket"], *self.app.slot_units("blue"), *self.app.slot_units("green")):
            self.set_unit(name)
        swap_link(self.app.link(self.idle), self.release)
        self.systemd.daemon_reload()
        self.systemd.enable(units["socket"])

    def start_first(self):
        units = self.app.units
        self.hold(self.idle)
        self.systemd.reset_failed(units[self.idle])
        self.systemd.start(units["socket"])
        self.systemd.start(units[self.idle])

    def prepare_idle(self):
        """The idle slot's link names the release and its units come from the new settings set."""
        service, probe = self.app.slot_units(self.idle)
        self.link_before = link_target(self.app.link(self.idle))
        swap_link(self.app.link(self.idle), self.release)
        if self.set_unit(service) | self.set_unit(probe):
            self.systemd.daemon_reload()
        if self.idle != self.live:
            self.systemd.reset_failed(service, probe)

    def start_weighted(self, unit):
        # A starting instance imports the app on the cores that serve: it gets less CPU than the one serving
        # until it passed its gate (CPUWeight where the cpu controller is there, niceness everywhere).
        if self.start_cpu_weight:
            self.systemd.set_cpu_weight(unit, self.start_cpu_weight)
        self.hold(self.idle)
        self.systemd.reset_failed(unit)
        self.systemd.restart(unit)
        if self.start_nice:
            self.systemd.renice(unit, self.start_nice)

    def gate_idle(self):
        unit = self.app.units[self.idle]
        result = self.gate.wait(unit, self.app.probes[self.idle], self.release, self.settings)
        if self.start_cpu_weight:
            self.systemd.set_cpu_weight(unit, NORMAL_CPU_WEIGHT)
        if self.start_nice:
            self.systemd.renice(unit, 0)
        return result

    def hold(self, slot):
        """The slot about to start serves its probe socket only, not the app's, until ``open_idle``: a release
        that never gets ready never answers a client."""
        write_atomic(self.app.held[slot], self.run_id + "\n", 0o644)

    def unhold(self, slot):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.app.held[slot])

    def open_idle(self):
        """Gated: the new slot's workers take the app's socket too (new workers fork from the master, which
        already imported the app: no second import with preload_app)."""
        unit = self.app.units[self.idle]
        self.unhold(self.idle)
        self.idle_served = True
        return self.systemd.open_workers(unit, self.systemd.stop_timeout_s(unit) + DRAIN_MARGIN_S, self.clock,
                                         self.sleep)  # fmt: skip

    def switch(self):
        """Point current (and previous) at the release and <app>.service at the slot that runs it, together."""
        prior = self.prior
        if prior["current"] and prior["current"] != self.release:
            swap_link(self.app.link("previous"), prior["current"])
        swap_link(self.app.link("current"), self.release)
        if self.app.live_slot() != self.idle:
            self.point_app(self.idle)

    def point_app(self, slot):
        """<app>.service (and its place in the boot) names ``slot``: the socket starts it, systemctl shows it."""
        units = self.app.units
        point_link(self.app.unit_path(units["app"]), units[slot] if slot else "")
        wants = os.path.join(self.app.unit_dir, WANTS, units["app"])
        os.makedirs(os.path.dirname(wants), exist_ok=True)
        point_link(wants, os.path.join("..", units["app"]) if slot else "")
        self.systemd.daemon_reload()

    def retire_legacy(self):
        """The layout before slots: stop its temporary instance and probe, then <app>.service itself (its drain
        is waited for, this once: its unit file is about to become the link to the live slot), and remove their
        files. The link replaces the file in one rename, so <app>.service never goes missing in between."""
        legacy, systemd = self.app.legacy_units, self.systemd
        self.legacy_backup = {name: read_text(self.app.unit_path(name), default=None) for name in legacy.values()}
        systemd.stop_for_good(legacy["next"], legacy["next_probe"])
        timeout = systemd.stop_timeout_s(legacy["main"]) + DRAIN_MARGIN_S
        systemd.stop_no_block(legacy["main"])
        systemd.wait_stopped(legacy["main"], timeout, clock=self.clock, sleep=self.sleep)
        systemd.stop_for_good(legacy["main_probe"])
        # Its Also= takes the listening socket's enablement too: enabled again below.
        systemd.disable(legacy["main"])
        for name in (legacy["next"], legacy["next_probe"], legacy["main_probe"]):
            path = self.app.unit_path(name)
            if os.path.lexists(path):
                os.unlink(path)
        self.point_app(self.idle)
        systemd.enable(self.app.units["socket"])

    def sockets_changed(self):
        """The listening socket, when this run reconfigures it: its unit in the settings set against the one of
        the set the serving instance ran (what the socket was started from). A unit file edited by hand is not a
        new configuration: it is rewritten, and only restarted when the settings change it. Where the old set is
        unknown, the file on disk stands for it."""
        prior = self.prior
        ran = prior["serving"].get("settings") or prior["settings"]
        name = self.app.units["socket"]
        before = self.app.unit_in_settings(ran, name) if ran else ""
        if not before:
            before = read_text(self.app.unit_path(name), default=None)
        return [name] if before != self.wanted_unit(name) else []

    def socket_files_drifted(self):
        name = self.app.units["socket"]
        return read_text(self.app.unit_path(name), default=None) != self.wanted_unit(name)

    def replace_sockets(self, changed):
        """A listening socket cannot move under a running service: a changed one is replaced with a restart (which
        restarts the live slot with it, Requires=); a file that only drifted is rewritten and loaded."""
        units = self.app.units
        self.set_unit(units["socket"])
        self.systemd.daemon_reload()
        if not changed:
            return
        # A draining slot would keep the old socket open: it ends first.
        if self.live and self.live != self.idle:
            self.systemd.stop_for_good(units[self.live])
        # A restart, never a stop then a start: under load a connection starts the service during the stop, which
        # cancels the stop job; a restart job absorbs that start.
        self.socket_restarted = True
        self.systemd.restart(units["socket"])
        self.systemd.start(units[self.idle])
        self.gate.wait(units[self.idle], self.app.probes[self.idle], self.release, self.settings)

    def after_switch_hook(self):
        # Part of the gate: a smoke test that fails takes the host back like a failed readiness check.
        return run_hook(
            self.app,
            "after_switch",
            self.release,
            self.settings,
            self.after_switch,
            self.run_command,
            event={"run": self.run_id, "actor": self.actor, "host": self.host},
            extra_env={"ASGI_OPERATION": self.operation},
            timeout_s=self.hook_timeout,
            show_output=self.hook_show_output,
        )

    # -- going back -------------------------------------------------------------------

    def failed(self, exc, summary, began):
        """Put the host back, audit what happened and say it: the HandoverFailed to raise."""
        failed_step = self.step
        check = getattr(exc, "check", "systemd" if isinstance(exc, SystemdError) else "host")
        instance = {"idle": self.idle, "live": self.live}.get(STEPS.get(failed_step, Step("", None)).instance, "")
        unit = self.app.units.get(instance) if instance else ""
        if failed_step == RETIRE:
            unit = self.app.legacy_units["main"]
        journal = self.systemd.journal(unit) if unit else ""
        first = summary["strategy"] == "initial"
        revert_error = self.revert()
        summary.update(
            result="revert_failed" if revert_error else ("failed" if first else "reverted"),
            step=failed_step,
            error=str(exc),
            revert_error=revert_error,
            steps=self.timings,
            duration_s=round(self.clock() - began, 2),
        )
        self.record(summary)
        return HandoverFailed(self.failure_message(summary, first), failed_step, check, journal, summary)

    def revert(self):
        """Undo the steps reached, last first. Returns '' or what could not be restored."""
        self.errors = []
        for name in reversed(self.reached()):
            undo = STEPS.get(name, Step("", None)).undo
            if undo:
                getattr(self, undo)()
        return "; ".join(self.errors)

    def attempt(self, what, action, *args):
        try:
            action(*args)
        except (SystemdError, GateFailed, OSError) as exc:
            self.errors.append(f"{what}: {exc}")
            return False
        return True

    def uninstall(self):
        """Going back from a first deploy: stopped while their unit files are still there to name them (the
        listening socket first: its stop takes the slot with it, Requires=), then the files go as they came."""
        units, systemd = self.app.units, self.systemd
        self.attempt("stop the units", systemd.stop_for_good, units["socket"], *self.app.slot_units(self.idle))
        self.attempt("reset failed units", systemd.reset_failed, units[self.idle], units["socket"])
        self.attempt("disable the socket", systemd.disable, units["socket"])
        self.attempt("restore the links", self.restore_links)
        self.attempt("remove the app's unit link", self.point_app, "")
        if self.restore_units():
            self.attempt("reload systemd", systemd.daemon_reload)
        self.attempt("restore the slot link", swap_link, self.app.link(self.idle), "")

    def unprepare(self):
        service, probe = self.app.slot_units(self.idle)
        self.attempt("restore the idle slot's units", self.restore_units, [service, probe])
        self.attempt("reload systemd", self.systemd.daemon_reload)
        self.attempt("restore the idle slot's link", swap_link, self.app.link(self.idle), self.link_before)

    def stop_idle(self):
        """The new slot goes: at once when it never served; drained (in the background) when it did."""
        service, probe = self.app.slot_units(self.idle)
        self.unhold(self.idle)
        if self.idle == self.live:
            return
        if self.idle_served:
            self.attempt("drain the new slot", self.systemd.stop_no_block, service)
        else:
            self.attempt("stop the new slot", self.systemd.stop_for_good, service, probe)
            self.attempt("reset the new slot", self.systemd.reset_failed, service, probe)

    def unswitch(self):
        self.attempt("restore current and previous", self.restore_links)
        if self.app.live_slot() != (self.prior["live_slot"] or ""):
            back = self.prior["live_slot"] if self.prior["live_slot"] in SLOTS else ""
            self.attempt("restore the app's unit link", self.point_app, back)

    def undrain(self):
        """The old slot was told to drain: it starts again (once its stop ended) on what it ran, gated."""
        self.bring_back(self.live)

    def restart_back(self):
        """A restart in place that failed: the live slot restarts on what it ran (undo of prepare restores the
        files first, since undos run last step first: here they are restored before the start)."""
        service, probe = self.app.slot_units(self.idle)
        self.attempt("restore the slot's units", self.restore_units, [service, probe])
        self.attempt("restore the slot's link", swap_link, self.app.link(self.idle), self.prior["current"])
        self.attempt("reload systemd", self.systemd.daemon_reload)
        self.attempt("restore the links", self.restore_links)
        self.bring_back(self.idle)

    def bring_back(self, slot):
        unit = self.app.units[slot]
        self.unhold(slot)  # what served before serves again at once
        self.attempt("reset " + unit, self.systemd.reset_failed, unit)
        if self.start_cpu_weight:
            self.attempt("restore the CPU weight", self.systemd.set_cpu_weight, unit, NORMAL_CPU_WEIGHT)
        # A restart: the slot may still be stopping (a drain), or running something else (a restart in place).
        if self.attempt("start " + unit, self.systemd.restart, unit):
            self.attempt(
                "gate {} on {}".format(unit, self.prior["current"] or "nothing"),
                self.gate.wait,
                unit,
                self.app.probes[slot],
                self.prior["current"],
                self.prior["settings"],
            )

    def unretire(self):
        """Back to the layout before slots: its unit files, loaded, and its main instance started and gated."""
        legacy = self.app.legacy_units
        self.attempt("remove the app's unit link", self.point_app, "")
        for name, text in self.legacy_backup.items():
            if text is not None:
                self.attempt("restore " + name, write_atomic, self.app.unit_path(name), text, 0o644)
        self.attempt("reload systemd", self.systemd.daemon_reload)
        self.attempt("enable " + legacy["main"], self.systemd.enable, legacy["main"])
        if self.attempt("start " + legacy["main"], self.systemd.restart, legacy["main"]):
            self.attempt(
                "gate " + legacy["main"],
                self.gate.wait,
                legacy["main"],
                self.app.legacy_probes["main"],
                self.prior["current"],
                self.prior["settings"],
            )

    def restore_sockets(self):
        name = self.app.units["socket"]
        if not self.restore_units([name]):
            return
        self.attempt("reload systemd", self.systemd.daemon_reload)
        if self.socket_restarted:
            # Restarts the slots with it; the undos after this one start the slot that served, gated.
            self.attempt("restart " + name, self.systemd.restart, name)

    def restore_links(self):
        if link_target(self.app.link("current")) != self.prior["current"]:
            swap_link(self.app.link("current"), self.prior["current"])
        if link_target(self.app.link("previous")) != self.prior["previous"]:
            swap_link(self.app.link("previous"), self.prior["previous"])

    # -- telling about it -------------------------------------------------------------

    AUDITED = (
        "from",
        "to",
        "from_settings",
        "to_settings",
        "change",
        "reasons",
        "strategy",
        "slot",
        "result",
        "step",
        "error",
        "revert_error",
        "duration_s",
        "steps",
    )

    def record(self, summary):
        event = {"event": self.operation, "run": self.run_id, "actor": self.actor, "host": self.host}
        if self.run_started:
            event["run_started"] = self.run_started
        event.update({key: summary[key] for key in self.AUDITED if summary.get(key) not in (None, "", [])})
        event.setdefault("from", "")
        audit(self.app, event)

    def failure_message(self, summary, first):
        where = "{} of {} failed on {} at {}: {}.".format(
            self.operation, self.release, self.host or "this host", summary["step"], summary["error"]
        )
        if summary["revert_error"]:
            return "{} The revert did not complete: {}.".format(where, summary["revert_error"])
        if first:
            return f"{where} This was the host's first deploy: its units are stopped and nothing is live."
        return "{} The host is back on {} with its previous settings.".format(where, summary["from"])
