# Copyright: asgi.deploy maintainers
# MIT License (see LICENSE)
"""The per-host switch to a release and a settings set, as one state machine.

Strategies:

``handover``
    prepare next -> start next -> gate next -> switch current -> restart main
    -> gate main -> stop next. The temporary instance (``<app>-next.service``)
    serves the shared socket while main restarts, so no request waits.
``restart``
    switch current -> restart main -> gate main. Requests wait in the socket's
    backlog while main restarts.
``initial`` (chosen when the host runs nothing)
    install units -> switch current -> start main -> gate main.

With an after-switch hook (a smoke test), each ends with it: a hook that fails
is a failed gate. A changed listening socket is replaced last.

Settings are released like code: the new set's unit is what next starts with;
main gets it when ``current`` switches, and only after next passed the gate.

Every step is named once, in STEPS, with the instance whose journal a failure
shows and what going back from it takes. On any failure the host is put back
exactly as it was (links, unit files, units reset and running, next stopped),
and HandoverFailed names the step, the check and the journal tail.
"""

from __future__ import annotations

import os
import time
from collections import namedtuple

from ansible_collections.asgi.deploy.plugins.module_utils.gate import GateFailed
from ansible_collections.asgi.deploy.plugins.module_utils.hooks import HookFailed, run_hook
from ansible_collections.asgi.deploy.plugins.module_utils.host import (
    audit,
    link_target,
    read_manifest,
    read_text,
    swap_link,
    write_atomic,
)
from ansible_collections.asgi.deploy.plugins.module_utils.host_state import assess, read_state
from ansible_collections.asgi.deploy.plugins.module_utils.systemd import SystemdError

STRATEGIES = ("handover", "restart")
NORMAL_CPU_WEIGHT = 100

# What going back from a step takes (see Handover.revert).
UNINSTALL = "stop and remove the units"  # a first deploy: nothing ran before
LINKS = "restore current and previous"
UNITS = "restore the unit files"
SOCKETS = "restart the sockets"
MAIN = "restart main on what it ran"
NEXT = "stop next"

Step = namedtuple("Step", "instance undo")
INSTALL_UNITS, SWITCH_CURRENT, START_MAIN, GATE_MAIN = "install units", "switch current", "start main", "gate main"
PREPARE_NEXT, START_NEXT, GATE_NEXT, RESTART_MAIN = "prepare next", "start next", "gate next", "restart main"
STOP_NEXT, REPLACE_SOCKETS, AFTER_SWITCH = "stop next", "replace sockets", "after switch"
STEPS = {
    INSTALL_UNITS: Step("main", {UNINSTALL}),
    PREPARE_NEXT: Step("next", {UNITS, NEXT}),
    START_NEXT: Step("next", {NEXT}),
    GATE_NEXT: Step("next", {NEXT}),
    # current and main's unit switch together: main runs nothing but what current names.
    SWITCH_CURRENT: Step("main", {LINKS, UNITS}),
    START_MAIN: Step("main", {UNINSTALL}),
    RESTART_MAIN: Step("main", {MAIN}),
    GATE_MAIN: Step("main", {MAIN}),
    STOP_NEXT: Step("", set()),
    REPLACE_SOCKETS: Step("main", {UNITS, SOCKETS, MAIN}),
    AFTER_SWITCH: Step("", set()),
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
        start_cpu_weight=0,
        start_nice=0,
        force=False,
        after_switch="",
        hook_timeout=600,
        hook_show_output=False,
        clock=time.monotonic,
    ):
        if strategy not in STRATEGIES:
            raise ValueError("strategy must be one of {}".format(", ".join(STRATEGIES)))
        self.app, self.systemd, self.gate, self.run_command = app, systemd, gate, run_command
        self.release, self.settings, self.strategy = release, settings, strategy
        self.operation, self.run_id, self.actor, self.host = operation, run, actor, host
        self.start_cpu_weight, self.start_nice, self.force, self.clock = start_cpu_weight, start_nice, force, clock
        self.after_switch, self.hook_timeout, self.hook_show_output = after_switch, hook_timeout, hook_show_output
        # Ordered [name, seconds] pairs: the audit log keeps them in the order they ran.
        self.timings, self.step = [], ""
        self.unit_backup = {}

    # -- what the host looks like now -------------------------------------------------

    def snapshot(self):
        return read_state(self.app, self.systemd, self.run_command, full=False)

    def plan(self, prior):
        """The assessment of the host for this switch (also what check mode reports)."""
        return assess(prior, self.release, self.settings, self.force)

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
        wanted = read_text(os.path.join(self.app.settings_dir(self.settings), "units", name), default=None)
        if wanted is None:
            raise HandoverFailed(f"settings set {self.settings} has no unit {name}", self.step, "settings")
        return wanted

    def restore_units(self, names=None):
        restored = False
        for name, old in list(self.unit_backup.items()):
            if names is not None and name not in names:
                continue
            path = self.app.unit_path(name)
            if old is None:
                if os.path.exists(path):
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
        prior = self.snapshot()
        self.check_inputs()
        verdict = self.plan(prior)
        if not verdict["needed"]:
            return {"changed": False, "change": "", "strategy": "", "from": prior["current"], "to": self.release}
        first = verdict["first"]
        strategy = "initial" if first else self.strategy
        summary = {
            "changed": True,
            "change": verdict["change"] or "repair",
            "reasons": verdict["reasons"],
            "strategy": strategy,
            "from": prior["live"],
            "to": self.release,
            "from_settings": prior["settings"],
            "to_settings": self.settings,
        }
        try:
            if prior["reload_needed"]:
                # Unit files someone changed on disk and never loaded: load them before anything starts.
                self.systemd.daemon_reload()
            self.switch_units(prior, first)
            if self.after_switch:
                self.do(AFTER_SWITCH, self.after_switch_hook)
        except (GateFailed, SystemdError, HandoverFailed, HookFailed, OSError) as exc:
            raise self.failed(exc, prior, first, summary, began) from exc
        write_atomic(self.app.applied, self.settings + "\n", 0o644)
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

    def switch_units(self, prior, first):
        units = self.app.units
        if first:
            self.do(INSTALL_UNITS, self.install_units, list(units.values()))
            self.do(SWITCH_CURRENT, self.switch, prior)
            self.do(START_MAIN, self.start_main_first)
            self.do(GATE_MAIN, self.gate.wait, units["main"], self.app.probes["main"], self.release, self.settings)
            swap_link(self.app.link("next"), self.release)
            return
        if self.strategy == "handover":
            self.do(PREPARE_NEXT, self.prepare_next)
            self.do(START_NEXT, self.start_weighted, units["next"])
            self.do(GATE_NEXT, self.gate_weighted, units["next"], self.app.probes["next"])
        self.do(SWITCH_CURRENT, self.switch, prior)
        self.do(RESTART_MAIN, self.start_weighted, units["main"])
        self.do(GATE_MAIN, self.gate_weighted, units["main"], self.app.probes["main"])
        if self.strategy == "handover":
            # Main serves: next drains its last requests (within graceful_timeout) on its own.
            self.do(STOP_NEXT, self.systemd.stop_no_block, units["next"])
        changed = self.sockets_changed(prior)
        if changed or self.socket_files_drifted():
            self.do(REPLACE_SOCKETS, self.replace_sockets, changed)

    def failed(self, exc, prior, first, summary, began):
        """Put the host back, audit what happened and say it: the HandoverFailed to raise."""
        failed_step = self.step
        check = getattr(exc, "check", "systemd" if isinstance(exc, SystemdError) else "host")
        instance = STEPS.get(failed_step, Step("", set())).instance
        journal = self.systemd.journal(self.app.units[instance]) if instance else ""
        revert_error = self.revert(prior, first)
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

    def do(self, name, action, *args):
        self.step = name
        began = self.clock()
        result = action(*args)
        self.timings.append([name, round(self.clock() - began, 2)])
        return result

    def reached(self):
        return [pair[0] for pair in self.timings] + ([self.step] if self.step else [])

    def install_units(self, names):
        changed = [name for name in names if self.set_unit(name)]
        if changed:
            self.systemd.daemon_reload()
        self.systemd.enable(self.app.units["socket"], self.app.units["main_probe"], self.app.units["main"])

    def start_main_first(self):
        units = self.app.units
        self.systemd.reset_failed(units["main"])
        self.systemd.start(units["socket"], units["main_probe"])
        self.systemd.start(units["main"])

    def prepare_next(self):
        units = self.app.units
        swap_link(self.app.link("next"), self.release)
        if self.set_unit(units["next"]) | self.set_unit(units["next_probe"]):
            self.systemd.daemon_reload()
        # An instance left running by an interrupted run is not the one we gate.
        self.systemd.stop_for_good(units["next"], units["next_probe"])
        self.systemd.reset_failed(units["next"], units["next_probe"])

    def start_weighted(self, unit):
        # A starting instance imports the app on the cores that serve: it gets less CPU than the one serving
        # until it passed its gate (CPUWeight where the cpu controller is there, niceness everywhere).
        if self.start_cpu_weight:
            self.systemd.set_cpu_weight(unit, self.start_cpu_weight)
        self.systemd.reset_failed(unit)
        self.systemd.restart(unit)
        if self.start_nice:
            self.systemd.renice(unit, self.start_nice)

    def gate_weighted(self, unit, probe):
        result = self.gate.wait(unit, probe, self.release, self.settings)
        if self.start_cpu_weight:
            self.systemd.set_cpu_weight(unit, NORMAL_CPU_WEIGHT)
        if self.start_nice:
            self.systemd.renice(unit, 0)
        return result

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

    def switch(self, prior):
        """Point current (and previous) at the release and main's unit at the settings, together."""
        if prior["current"] and prior["current"] != self.release:
            swap_link(self.app.link("previous"), prior["current"])
        swap_link(self.app.link("current"), self.release)
        if self.set_unit(self.app.units["main"]):
            self.systemd.daemon_reload()

    def sockets_changed(self, prior):
        """The sockets this run reconfigures: their unit in the settings set against the one of the set main ran
        (what the listening socket was started from). A unit file edited by hand is not a new configuration: it
        is rewritten, and only restarted when the settings change it. Where the old set is unknown, the file on
        disk stands for it."""
        ran = prior["main"].get("settings") or prior["settings"]
        changed = []
        for name in (self.app.units["socket"], self.app.units["main_probe"]):
            before = read_text(os.path.join(self.app.settings_dir(ran), "units", name), default=None) if ran else None
            if before is None:
                before = read_text(self.app.unit_path(name), default=None)
            if before != self.wanted_unit(name):
                changed.append(name)
        return changed

    def socket_files_drifted(self):
        names = (self.app.units["socket"], self.app.units["main_probe"])
        return any(read_text(self.app.unit_path(name), default=None) != self.wanted_unit(name) for name in names)

    def replace_sockets(self, changed):
        """Listening sockets cannot move under a running service: the changed ones are replaced with a restart;
        files that only drifted are rewritten and loaded."""
        units = self.app.units
        for name in (units["socket"], units["main_probe"]):
            self.set_unit(name)
        self.systemd.daemon_reload()
        if not changed:
            return
        # Next, draining since the switch, would keep the old listening socket open: it ends first.
        self.systemd.stop_for_good(units["next"], units["next_probe"])
        # A restart, never a stop then a start: under load a connection starts main during its stop, which
        # cancels the stop job; a restart job absorbs that start. Restarting a socket restarts main with it
        # (Requires=). Only what changed: a listening socket left alone queues connections meanwhile.
        self.systemd.restart(*changed)
        self.systemd.start(units["main"])
        self.gate.wait(units["main"], self.app.probes["main"], self.release, self.settings)

    # -- going back -------------------------------------------------------------------

    def revert(self, prior, first):
        """Put links, unit files and units back as they were. Returns '' or what could not be restored."""
        errors = []

        def attempt(what, action, *args):
            try:
                action(*args)
            except (SystemdError, GateFailed, OSError) as exc:
                errors.append(f"{what}: {exc}")
                return False
            return True

        if first:
            self.uninstall(prior, attempt)
            return "; ".join(errors)
        undo = set().union(*(STEPS[name].undo for name in self.reached() if name in STEPS))
        self.restore(prior, undo, attempt)
        if errors:
            # Main did not come back: leave next serving if it passed its gate, and say so.
            if GATE_NEXT in [pair[0] for pair in self.timings]:
                errors.append("{} keeps serving {}".format(self.app.units["next"], self.release))
            return "; ".join(errors)
        units, systemd = self.app.units, self.systemd
        attempt(NEXT, systemd.stop_for_good, units["next"], units["next_probe"])
        attempt("reset next", systemd.reset_failed, units["next"], units["next_probe"])
        attempt("restore next", swap_link, self.app.link("next"), prior["next"] or prior["current"])
        return "; ".join(errors)

    def uninstall(self, prior, attempt):
        """Going back from a first deploy: stopped while their unit files are still there to name them; then
        the files go as they came. The listening socket first: its stop takes main and the probe socket in the
        same transaction, so a connection queued on either cannot start main again in between."""
        units, systemd = self.app.units, self.systemd
        attempt(UNINSTALL, systemd.stop_for_good, units["socket"], units["main_probe"], units["main"])
        attempt(
            "reset failed units",
            systemd.reset_failed,
            units["main"],
            units["next"],
            units["socket"],
            units["main_probe"],
        )
        attempt("disable the units", systemd.disable, units["main"], units["main_probe"], units["socket"])
        attempt(LINKS, self.restore_links, prior)
        if self.restore_units():
            attempt("reload systemd", systemd.daemon_reload)
        attempt("restore next", swap_link, self.app.link("next"), prior["next"])

    def restore(self, prior, undo, attempt):
        units, systemd, sockets = self.app.units, self.systemd, [self.app.units["socket"], self.app.units["main_probe"]]
        attempt(LINKS, self.restore_links, prior)
        if SOCKETS in undo:
            attempt("restore socket units", self.restore_units, sockets)
        if self.restore_units():
            attempt("reload systemd", systemd.daemon_reload)
        if SOCKETS in undo:
            # Restarts main with them (as in replace_sockets); the gated restart below brings it back on prior.
            attempt(SOCKETS, systemd.restart, *sockets)
        if MAIN in undo:
            # Next (when healthy) still serves the socket while main comes back.
            attempt("reset main", systemd.reset_failed, units["main"])
            if self.start_cpu_weight:
                attempt("restore the CPU weight", systemd.set_cpu_weight, units["main"], NORMAL_CPU_WEIGHT)
            if attempt(MAIN, systemd.restart, units["main"]):
                attempt(
                    "gate main on " + (prior["current"] or "nothing"),
                    self.gate.wait,
                    units["main"],
                    self.app.probes["main"],
                    prior["current"],
                    prior["settings"],
                )

    def restore_links(self, prior):
        if link_target(self.app.link("current")) != prior["current"]:
            swap_link(self.app.link("current"), prior["current"])
        if link_target(self.app.link("previous")) != prior["previous"]:
            swap_link(self.app.link("previous"), prior["previous"])

    # -- telling about it -------------------------------------------------------------

    AUDITED = (
        "from",
        "to",
        "from_settings",
        "to_settings",
        "change",
        "reasons",
        "strategy",
        "result",
        "step",
        "error",
        "revert_error",
        "duration_s",
        "steps",
    )

    def record(self, summary):
        event = {"event": self.operation, "run": self.run_id, "actor": self.actor, "host": self.host}
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
