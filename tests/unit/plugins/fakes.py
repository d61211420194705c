"""A model of the systemd units of one app, for the host-side state machines.

It reads the unit files the code under test installs (WorkingDirectory and
ASGI_SETTINGS_DIGEST), resolves the release a start would run from the links
on disk and <app>.service through its link to a slot, and lets a test mark
releases as broken (a slot of a broken release crash-loops: systemd restarts
it) and drains as slow (a stopped slot stays deactivating until waited for).
"""

from __future__ import annotations

import itertools
import json
import os
import re
import sys

from ansible_collections.asgi.deploy.plugins.module_utils.host import SLOTS, App
from ansible_collections.asgi.deploy.plugins.module_utils.systemd import SystemdError

PIDS = itertools.count(1000)


def make_app(tmp_path, name="demo"):
    return App(
        name,
        str(tmp_path / "srv"),
        config_dir=str(tmp_path / "etc"),
        unit_dir=str(tmp_path / "units"),
        run_dir=str(tmp_path / "run"),
    )


class FakeRun:
    """``AnsibleModule.run_command`` as module_utils call it: records every argv; answers by the first rule
    whose prefix (a tuple of leading argv items, or a callable on the argv) matches: ``(rc, out, err)`` or a
    callable returning it. The host's Python probe answers as this interpreter would."""

    def __init__(self, rules=()):
        self.calls, self.rules = [], list(rules)

    def on(self, prefix, answer):
        self.rules.insert(0, (prefix, answer))
        return self

    def __call__(self, argv, **_):
        argv = list(argv)
        self.calls.append(argv)
        for prefix, answer in self.rules:
            hit = prefix(argv) if callable(prefix) else tuple(argv[: len(prefix)]) == tuple(prefix)
            if hit:
                return answer(argv) if callable(answer) else answer
        if len(argv) > 2 and argv[1:3] == ["-I", "-c"] and os.path.exists(argv[0]):
            info = {"python": "{}.{}".format(*sys.version_info[:2]), "full": "{}.{}.{}".format(*sys.version_info[:3]),
                    "machine": "x86_64", "glibc": "2.36", "sys_platform": "linux", "venv": True}  # fmt: skip
            return 0, json.dumps(info), ""
        return 0, "", ""

    def commands(self, name):
        return [argv for argv in self.calls if argv and argv[0] == name]


def local_run(argv, **_):
    """``run_command`` for real, for the few tests that run a real local tool (systemd-analyze)."""
    import subprocess

    done = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    return done.returncode, done.stdout, done.stderr


class FakeSystemd:
    def __init__(self, app, broken=(), unready=()):
        self.app = app
        self.broken, self.unready = set(broken), set(unready)
        self.units = {}
        self.enabled = set()
        self.calls = []
        self.reloads = 0
        self.fail_on = {}  # verb -> unit that makes it raise
        self.transient = []  # units of hooks running now
        self.slow_drain = False  # a stopped slot stays deactivating until waited for
        self.stuck = set()  # units that only a kill ends
        self.held = {}  # unit -> connections it holds
        self.descriptions = {}  # unit -> Description (a hook's names its run)

    def unit(self, name):
        return self.units.setdefault(
            name,
            {
                "ActiveState": "inactive",
                "SubState": "dead",
                "Result": "success",
                "MainPID": 0,
                "NRestarts": 0,
                "InvocationID": "",
                "release": "",
                "settings": "",
            },
        )

    def _check(self, verb, units):
        self.calls.append((verb, *units))
        if self.fail_on.get(verb) in units:
            raise SystemdError("systemctl {} {} failed".format(verb, " ".join(units)))

    def resolve(self, name):
        """A unit's name through its link (<app>.service names a slot)."""
        path = self.app.unit_path(name)
        return os.path.basename(os.readlink(path)) if os.path.islink(path) else name

    def show(self, name):
        name = self.resolve(name)
        u = dict(self.unit(name))
        u["Id"] = name
        u["LoadState"] = "loaded" if os.path.exists(self.app.unit_path(name)) else "not-found"
        u["UnitFileState"] = "enabled" if name in self.enabled else "disabled"
        u["NeedDaemonReload"] = "yes" if u.get("need_reload") else "no"
        u["TimeoutStopUSec"] = "40s"
        return u

    def description(self, unit):
        return self.descriptions.get(unit, "")

    def running(self, *units):
        return [name for name in self.transient if name in units]

    def _launch(self, name):
        u = self.unit(name)
        if not name.endswith(".service"):
            u.update(ActiveState="active", SubState="listening")
            return
        with open(self.app.unit_path(name)) as stream:
            text = stream.read()
        workdir = re.search(r"^WorkingDirectory=(\S+)", text, re.M).group(1)
        settings = re.search(r"ASGI_SETTINGS_DIGEST=(\S+)", text).group(1)
        release = os.path.basename(os.path.realpath(workdir))
        u.update(release=release, settings=settings, InvocationID=f"inv-{next(PIDS)}")
        # Started held (its probe socket only) when a handover said so.
        slot = next((s for s in SLOTS if self.app.units[s] == name), "")
        u["held"] = bool(slot) and os.path.exists(self.app.held[slot])
        if release in self.broken:
            u.update(
                ActiveState="activating",
                SubState="auto-restart",
                Result="exit-code",
                MainPID=0,
                NRestarts=u["NRestarts"] + 1,
            )
            return
        u.update(ActiveState="active", SubState="running", Result="success", MainPID=next(PIDS))

    def daemon_reload(self):
        self._check("daemon-reload", ())
        self.reloads += 1
        for u in self.units.values():
            u["need_reload"] = False

    def reset_failed(self, *units):
        self.calls.append(("reset-failed", *units))
        for name in units:
            u = self.unit(name)
            if u["ActiveState"] == "failed" or u["SubState"] == "auto-restart":
                u.update(ActiveState="inactive", SubState="dead", Result="success", MainPID=0, NRestarts=0)

    def start(self, *units):
        self._check("start", units)
        for name in map(self.resolve, units):
            u = self.unit(name)
            if u["SubState"] == "auto-restart":
                raise SystemdError(f"start {name}: unit is in start limit")
            if u["ActiveState"] != "active":
                self._launch(name)

    def restart(self, *units):
        self._check("restart", units)
        for name in map(self.resolve, units):
            if self.unit(name)["SubState"] == "auto-restart":
                raise SystemdError(f"restart {name} refused: start request repeated too quickly")
            self._launch(name)

    def _stop(self, verb, units):
        self._check(verb, units)
        for name in map(self.resolve, units):
            self.unit(name).update(ActiveState="inactive", SubState="dead", MainPID=0)

    def stop_for_good(self, *units):
        self._stop("stop-for-good", units)
        self.transient = [name for name in self.transient if name not in units]

    def stop_no_block(self, *units):
        if not self.slow_drain:
            return self._stop("stop", units)
        self._check("stop", units)
        for name in map(self.resolve, units):
            if self.unit(name)["ActiveState"] == "active":
                self.unit(name).update(ActiveState="deactivating", SubState="stop-sigterm")
        return None

    def wait_stopped(self, unit, timeout_s, clock=None, sleep=None):
        self.calls.append(("wait-stopped", unit, timeout_s))
        name = self.resolve(unit)
        if name in self.stuck:
            self.calls.append(("kill", name))
        if self.unit(name)["ActiveState"] == "deactivating":
            self.unit(name).update(ActiveState="inactive", SubState="dead", MainPID=0)
        return 0.0

    def stop_timeout_s(self, unit):
        return 40.0

    def open_workers(self, unit, timeout_s, clock=None, sleep=None):
        self._check("open", (unit,))
        self.unit(self.resolve(unit))["held"] = False
        return 0.0

    def connections_of(self, pid):
        u = self._by_pid(pid)
        return self.held.get(next((n for n, x in self.units.items() if x is u), ""), 0) if u else 0

    def enable(self, *units):
        self._check("enable", units)
        self.enabled.update(units)

    def disable(self, *units):
        self.calls.append(("disable", *units))
        self.enabled.difference_update(units)

    def set_cpu_weight(self, unit, weight):
        self.calls.append(("cpu-weight", unit, weight))

    def renice(self, unit, niceness):
        self.calls.append(("nice", unit, niceness))

    def journal(self, unit, lines=40):
        return f"journal of {unit}"

    def _by_pid(self, pid):
        return next((u for u in self.units.values() if pid and u["MainPID"] == pid), None)

    def release_of(self, pid):
        u = self._by_pid(pid)
        return u["release"] if u else ""

    def environ_of(self, pid):
        u = self._by_pid(pid)
        return {"ASGI_SETTINGS_DIGEST": u["settings"]} if u else {}

    def get(self, probe, path, headers=None):
        """The gate's HTTP GET: the instance behind ``probe`` answers when it runs a ready release."""
        probes = {path_: unit for unit, path_ in self.probe_paths().items()}
        u = self.unit(probes[probe])
        if u["ActiveState"] != "active":
            raise ConnectionRefusedError("connection refused")
        if u["release"] in self.unready:
            return 503, b'{"status": "starting"}', ""
        return 200, ('{{"release_id": "{}"}}'.format(u["release"])).encode(), ""

    def probe_paths(self):
        paths = {self.app.units[slot]: self.app.probes[slot] for slot in SLOTS}
        paths[self.app.legacy_units["main"]] = self.app.legacy_probes["main"]
        return paths


class Clock:
    """Monotonic time that moves only when the code sleeps."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


def make_release(app, release_id, version=None, built_at="2026-11-01T00:00:00Z", finished=True, key="k1"):
    path = os.path.join(app.releases, release_id)
    os.makedirs(os.path.join(path, "venv", "bin"), exist_ok=True)
    python = os.path.join(path, "venv", "bin", "python")
    if not os.path.lexists(python):
        os.symlink(sys.executable, python)  # as a venv links the system's
    if finished:
        with open(os.path.join(path, "release.json"), "w") as stream:
            stream.write(
                '{{"release_id": "{}", "version": "{}", "built_at": "{}", "wheelhouse_key": "{}"}}'.format(
                    release_id, version or release_id.split("-")[0], built_at, key
                )
            )
    return path


def unit_text(app, slot, digest, extra=""):
    root = os.path.join(app.root, slot)
    return f"[Service]\nWorkingDirectory={root}\nEnvironment=ASGI_SETTINGS_DIGEST={digest}\n{extra}"


def stage_settings(app, digest, socket="ListenStream=0.0.0.0:8000\n", probe=""):
    """A settings set as asgi.deploy.settings leaves it (units only: what the handover reads)."""
    units = os.path.join(app.settings_dir(digest), "units")
    os.makedirs(units, exist_ok=True)
    files = {app.units["socket"]: "[Socket]\n" + socket}
    for slot in SLOTS:
        files[app.units[slot]] = unit_text(app, slot, digest)
        files[app.units[f"{slot}_probe"]] = f"[Socket]\nListenStream={app.probes[slot]}\n{probe}"
    for name, text in files.items():
        with open(os.path.join(units, name), "w") as stream:
            stream.write(text)
    return digest


def legacy_host(app, release, digest):
    """A host of the layout before slots (0.2) running ``release``: <app>.service a unit of its own on current."""
    from ansible_collections.asgi.deploy.plugins.module_utils.host import swap_link

    swap_link(app.link("current"), release)
    os.makedirs(app.unit_dir, exist_ok=True)
    legacy = app.legacy_units
    texts = {
        legacy["main"]: f"[Service]\nWorkingDirectory={app.root}/current\nEnvironment=ASGI_SETTINGS_DIGEST={digest}\n",
        legacy["next"]: f"[Service]\nWorkingDirectory={app.root}/next\nEnvironment=ASGI_SETTINGS_DIGEST={digest}\n",
        legacy["main_probe"]: "[Socket]\n",
        legacy["next_probe"]: "[Socket]\n",
        app.units["socket"]: "[Socket]\nListenStream=0.0.0.0:8000\n",
    }
    for name, text in texts.items():
        with open(app.unit_path(name), "w") as stream:
            stream.write(text)
    with open(app.applied, "w") as stream:
        stream.write(digest + "\n")
