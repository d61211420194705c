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
    install units -> switch current -> start -> gate main.

With an after-switch hook (a smoke test), each ends with it: a hook that fails
is a failed gate.

Settings are released like code: the new set's unit is what next starts with;
main gets it only after next passed the gate. Listening socket changes cannot
be tried on next (the socket is shared): they are applied last, with a restart.

On any failure the host is put back exactly as it was (links, unit files,
units reset and running, next stopped), and HandoverFailed names the step, the
check and the journal tail of the instance that failed.
"""

from __future__ import annotations

import os
import time

from ansible_collections.asgi.deploy.plugins.module_utils.gate import GateFailed
from ansible_collections.asgi.deploy.plugins.module_utils.hooks import HookFailed, run_hook
from ansible_collections.asgi.deploy.plugins.module_utils.host import (
    Busy,
    audit,
    link_target,
    operation_lock,
    read_manifest,
    read_text,
    swap_link,
    write_atomic,
)
from ansible_collections.asgi.deploy.plugins.module_utils.systemd import SystemdError

STRATEGIES = ("handover", "restart")
NORMAL_CPU_WEIGHT = 100


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
        strategy="handover",
        operation="deploy",
        run="",
        actor="",
        host="",
        start_cpu_weight=0,
        start_nice=0,
        force=False,
        after_switch="",
        run_command=None,
        clock=time.monotonic,
    ):
        if strategy not in STRATEGIES:
            raise ValueError("strategy must be one of {}".format(", ".join(STRATEGIES)))
        self.app, self.systemd, self.gate = app, systemd, gate
        self.release, self.settings, self.strategy = release, settings, strategy
        self.operation, self.run_id, self.actor, self.host = operation, run, actor, host
        self.start_cpu_weight, self.start_nice, self.force, self.clock = start_cpu_weight, start_nice, force, clock
        self.after_switch, self.run_command = after_switch, run_command
        # Ordered (name, seconds) pairs: the audit log keeps them in the order they ran.
        self.timings, self.step, self.done = [], "", []
        self.unit_backup = {}

    # -- what the host looks like now -------------------------------------------------

    def snapshot(self):
        app = self.app
        return {
            "current": link_target(app.link("current")),
            "previous": link_target(app.link("previous")),
            "next": link_target(app.link("next")),
            "settings": read_text(app.applied).strip(),
            "main": self.systemd.show(app.units["main"]),
            "next_active": self.systemd.show(app.units["next"]).get("ActiveState", ""),
        }

    def first(self, prior):
        """Nothing runs here yet: no finished live release, or its units were never installed."""
        return (
            not prior["current"]
            or read_manifest(self.app, prior["current"]) is None
            or not os.path.isfile(self.app.unit_path(self.app.units["main"]))
        )

    def healthy(self, prior):
        main = prior["main"]
        if main.get("ActiveState") == "failed" or main.get("SubState") == "auto-restart":
            return False
        if prior["next_active"] in ("active", "activating", "reloading"):
            return False
        running = self.systemd.release_of(main.get("MainPID", 0))
        return not running or running == prior["current"]

    def set_unit(self, name):
        """Install unit ``name`` from the settings set; True when the file changed."""
        wanted = read_text(os.path.join(self.app.settings_dir(self.settings), "units", name), default=None)
        if wanted is None:
            raise HandoverFailed(f"settings set {self.settings} has no unit {name}", self.step, "settings")
        path = self.app.unit_path(name)
        old = read_text(path, default=None)
        if old == wanted:
            return False
        self.unit_backup.setdefault(name, old)
        write_atomic(path, wanted, 0o644)
        return True

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

    def run(self, wait_s=300.0):
        """The switch, under the host's operation lock (a handover a dead controller left running ends first)."""
        try:
            with operation_lock(self.app, wait_s):
                return self._run()
        except Busy as busy:
            raise HandoverFailed(str(busy), "check", "busy") from None

    def _run(self):
        began = self.clock()
        prior = self.snapshot()
        if read_manifest(self.app, self.release) is None:
            raise HandoverFailed(
                f"release {self.release} is not built on this host (no release.json)", "check", "release"
            )
        if not os.path.isdir(os.path.join(self.app.settings_dir(self.settings), "units")):
            raise HandoverFailed(f"settings set {self.settings} is not staged on this host", "check", "settings")
        first = self.first(prior)
        change = describe_change(prior, self.release, self.settings, first)
        if not change and self.healthy(prior) and not self.force:
            return {"changed": False, "change": "", "strategy": "", "from": prior["current"], "to": self.release}
        strategy = "initial" if first else self.strategy
        summary = {
            "changed": True,
            "change": change or "repair",
            "strategy": strategy,
            "from": prior["current"] if prior["current"] and read_manifest(self.app, prior["current"]) else "",
            "to": self.release,
            "from_settings": prior["settings"],
            "to_settings": self.settings,
        }
        try:
            if first:
                self.initial(prior)
            else:
                if strategy == "handover":
                    self.handover(prior)
                else:
                    self.switch_and_restart_main(prior)
                self.sockets()
            if self.after_switch:
                self.do("after switch", self.after_switch_hook)
        except (GateFailed, SystemdError, HandoverFailed, HookFailed, OSError) as exc:
            failed_step, check = (
                self.step,
                getattr(exc, "check", "systemd" if isinstance(exc, SystemdError) else "host"),
            )
            unit = self.failing_unit(failed_step)
            journal = self.systemd.journal(unit) if unit else ""
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
            raise HandoverFailed(self.failure_message(summary, first), failed_step, check, journal, summary) from exc
        write_atomic(self.app.applied, self.settings + "\n", 0o644)
        summary.update(result="success", steps=self.timings, duration_s=round(self.clock() - began, 2))
        self.record(summary)
        return summary

    def do(self, name, action, *args):
        self.step = name
        began = self.clock()
        result = action(*args)
        self.timings.append([name, round(self.clock() - began, 2)])
        self.done.append(name)
        return result

    def initial(self, prior):
        app, units = self.app, self.app.units
        self.do("install units", self.install_units, list(units.values()))
        self.do("switch current", self.switch, prior)
        self.do("start main", self.start_main_first)
        self.do("gate main", self.gate.wait, units["main"], app.probes["main"], self.release, self.settings)
        swap_link(app.link("next"), self.release)

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

    def handover(self, prior):
        app, units = self.app, self.app.units
        self.do("prepare next", self.prepare_next)
        self.do("start next", self.start_weighted, units["next"])
        self.do("gate next", self.gate_weighted, units["next"], app.probes["next"])
        self.switch_and_restart_main(prior)
        # Main serves: next drains its last requests (within graceful_timeout) on its own.
        self.do("stop next", self.systemd.stop_no_block, units["next"])

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
        event = {"run": self.run_id, "actor": self.actor, "host": self.host}
        return run_hook(
            self.app,
            "after_switch",
            self.release,
            self.settings,
            self.after_switch,
            run=self.run_command,
            event=event,
            extra_env={"ASGI_OPERATION": self.operation},
        )

    def switch_and_restart_main(self, prior):
        app, units = self.app, self.app.units
        self.do("switch current", self.switch, prior)
        self.do("restart main", self.restart_main)
        self.do("gate main", self.gate_weighted, units["main"], app.probes["main"])

    def switch(self, prior):
        if prior["current"] and prior["current"] != self.release:
            swap_link(self.app.link("previous"), prior["current"])
        swap_link(self.app.link("current"), self.release)

    def restart_main(self):
        if self.set_unit(self.app.units["main"]):
            self.systemd.daemon_reload()
        self.start_weighted(self.app.units["main"])

    def sockets(self):
        """Listening sockets cannot move under a running service: replace them with a restart."""
        units = self.app.units
        names = [units["socket"], units["main_probe"]]
        self.step = "replace sockets"
        changed = [name for name in names if self.set_unit(name)]
        if not changed:
            return
        began = self.clock()
        self.systemd.daemon_reload()
        # Next, draining since the switch, would keep the old listening socket open: it ends first.
        self.systemd.stop_for_good(units["next"], units["next_probe"])
        # A restart, never a stop then a start: under load a connection starts main during its stop, which
        # cancels the stop job; a restart job absorbs that start. Restarting a socket restarts main with it
        # (Requires=). Only what changed: a listening socket left alone queues connections meanwhile.
        self.systemd.restart(*changed)
        self.systemd.start(units["main"])
        self.gate.wait(units["main"], self.app.probes["main"], self.release, self.settings)
        self.timings.append(["replace sockets", round(self.clock() - began, 2)])
        self.done.append("replace sockets")

    # -- going back -------------------------------------------------------------------

    def failing_unit(self, step):
        if step in ("prepare next", "start next", "gate next"):
            return self.app.units["next"]
        if step in ("start main", "restart main", "gate main", "replace sockets", "switch current"):
            return self.app.units["main"]
        return ""

    def revert(self, prior, first):
        """Put links, unit files and units back as they were. Returns '' or what could not be restored."""
        app, units, systemd = self.app, self.app.units, self.systemd
        errors = []

        def attempt(what, action, *args):
            try:
                action(*args)
            except (SystemdError, GateFailed, OSError) as exc:
                errors.append(f"{what}: {exc}")

        reached = set(self.done) | {self.step}
        socket_step = "replace sockets" in reached
        if first:
            # Stopped while their unit files are still there to name them; then the files go as they came.
            # The listening socket first: its stop takes main and the probe socket in the same transaction,
            # so a connection queued on either cannot start main again in between.
            attempt("stop the units", systemd.stop_for_good, units["socket"], units["main_probe"], units["main"])
            attempt(
                "reset failed units",
                systemd.reset_failed,
                units["main"],
                units["next"],
                units["socket"],
                units["main_probe"],
            )
            attempt("disable the units", systemd.disable, units["main"], units["main_probe"], units["socket"])
            attempt("restore current and previous", self.restore_links, prior)
            if self.restore_units():
                attempt("reload systemd", systemd.daemon_reload)
            attempt("restore next", swap_link, app.link("next"), prior["next"])
            return "; ".join(errors)
        attempt("restore current and previous", self.restore_links, prior)
        if socket_step:
            attempt("restore socket units", self.restore_units, [units["socket"], units["main_probe"]])
        if self.restore_units():
            attempt("reload systemd", systemd.daemon_reload)
        if socket_step:
            # Restarts main with them (as in sockets()); the gated restart below brings it back on prior.
            attempt("restart sockets", systemd.restart, units["socket"], units["main_probe"])
        if reached & {"restart main", "gate main", "replace sockets"}:
            # Next (when healthy) still serves the socket while main comes back.
            attempt("reset main", systemd.reset_failed, units["main"])
            if self.start_cpu_weight:
                attempt("restore the CPU weight", systemd.set_cpu_weight, units["main"], NORMAL_CPU_WEIGHT)
            attempt("restart main", systemd.restart, units["main"])
            if not errors:
                attempt(
                    "gate main on " + (prior["current"] or "nothing"),
                    self.gate.wait,
                    units["main"],
                    app.probes["main"],
                    prior["current"],
                    prior["settings"],
                )
        if errors:
            # Main did not come back: leave next serving if it passed its gate, and say so.
            if "gate next" in self.done:
                errors.append("{} keeps serving {}".format(units["next"], self.release))
            return "; ".join(errors)
        attempt("stop next", systemd.stop_for_good, units["next"], units["next_probe"])
        attempt("reset next", systemd.reset_failed, units["next"], units["next_probe"])
        attempt("restore next", swap_link, app.link("next"), prior["next"] or prior["current"])
        return "; ".join(errors)

    def restore_links(self, prior):
        if link_target(self.app.link("current")) != prior["current"]:
            swap_link(self.app.link("current"), prior["current"])
        if link_target(self.app.link("previous")) != prior["previous"]:
            swap_link(self.app.link("previous"), prior["previous"])

    # -- telling about it -------------------------------------------------------------

    def record(self, summary):
        event = {
            "event": self.operation,
            "run": self.run_id,
            "actor": self.actor,
            "host": self.host,
        }
        for key in (
            "from",
            "to",
            "from_settings",
            "to_settings",
            "change",
            "strategy",
            "result",
            "step",
            "error",
            "revert_error",
            "duration_s",
            "steps",
        ):
            if summary.get(key) not in (None, ""):
                event[key] = summary[key]
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


def describe_change(prior, release, settings, first):
    if first:
        return "both"
    release_changed = prior["current"] != release
    settings_changed = prior["settings"] != settings
    if release_changed and settings_changed:
        return "both"
    if release_changed:
        return "release"
    if settings_changed:
        return "settings"
    return ""
