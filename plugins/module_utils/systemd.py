# Copyright: asgi.deploy maintainers
# MIT License (see LICENSE)
"""The few systemd operations a deploy needs, through systemctl and journalctl.

Unit tests replace this class with a fake that models unit states; everything
that decides *what* to do lives elsewhere and only calls these verbs.
"""

from __future__ import annotations

import contextlib
import os
import time

UNIT_PROPERTIES = (
    "Id",
    "LoadState",
    "ActiveState",
    "SubState",
    "Result",
    "MainPID",
    "NRestarts",
    "InvocationID",
    "UnitFileState",
    "NeedDaemonReload",
    "TimeoutStopUSec",
)
# States in which a unit still has processes.
RUNNING = ("active", "activating", "reloading", "deactivating")
# Established TCP (/proc/net/tcp st 01) and connected Unix stream sockets (/proc/net/unix St 03).
TCP_ESTABLISHED, UNIX_CONNECTED = "01", "03"
# A Unix socket connected to the journal (every process's stdout) is no client.
NOT_CLIENTS = "/run/systemd/"


class SystemdError(Exception):
    pass


class Systemd:
    """``run`` is ``AnsibleModule.run_command`` (or a test's fake)."""

    def __init__(self, run, proc="/proc"):
        self.run, self.proc = run, proc

    def _run(self, *argv, check=True):
        rc, out, err = self.run(list(argv))
        if check and rc != 0:
            raise SystemdError("{} failed: {}".format(" ".join(argv), (err or out).strip()))
        return out

    def show(self, unit):
        out = self._run("systemctl", "show", unit, "-p", ",".join(UNIT_PROPERTIES), check=False)
        props = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
        props["MainPID"] = int(props.get("MainPID") or 0)
        props["NRestarts"] = int(props.get("NRestarts") or 0)
        return props

    def running(self, *units):
        """Which of ``units`` (exact names) are loaded and not dead (transient hook units, say)."""
        if not units:
            return []
        out = self._run("systemctl", "list-units", "--plain", "--no-legend", "--all", *units, check=False)
        rows = [line.split() for line in out.splitlines()]
        return [row[0] for row in rows if len(row) > 2 and row[2] in RUNNING and row[0] in units]

    def description(self, unit):
        return self._run("systemctl", "show", "-p", "Description", "--value", unit, check=False).strip()

    def daemon_reload(self):
        self._run("systemctl", "daemon-reload")

    def reset_failed(self, *units):
        # Refused for units that are not loaded or not failed: nothing to reset then.
        self._run("systemctl", "reset-failed", *units, check=False)

    def start(self, *units):
        self._run("systemctl", "start", *units)

    def stop_for_good(self, *units):
        """Stop with jobs nothing may replace until they are done.

        A socket with a connection queued (under load, or a readiness probe's) starts its service again as
        soon as the service dies, and that start brings back the sockets the service requires. systemctl
        makes one transaction per unit named: the first unit must take the others with it (our probe
        socket is PartOf= the listening socket, main Requires= it), or a start slips in between."""
        self._run("systemctl", "stop", "--job-mode=replace-irreversibly", *units)

    def stop_no_block(self, *units):
        """Queue the stop and return: the unit drains on its own."""
        self._run("systemctl", "stop", "--no-block", *units)

    def restart(self, *units):
        self._run("systemctl", "restart", *units)

    def enable(self, *units):
        self._run("systemctl", "enable", "--quiet", *units)

    def disable(self, *units):
        self._run("systemctl", "disable", "--quiet", *units, check=False)

    def kill(self, unit):
        """SIGKILL every process of ``unit``: ends a drain past its deadline."""
        self._run("systemctl", "kill", "--signal=SIGKILL", unit, check=False)

    def open_workers(self, unit, timeout_s, clock=time.monotonic, sleep=time.sleep):
        """Have Gunicorn replace the workers of ``unit`` (SIGHUP to its master: with preload_app, new workers fork
        without importing the app again) and wait until none of the old ones is left. Returns the seconds taken."""
        began = clock()
        pid = self.show(unit).get("MainPID", 0)
        if not pid:
            raise SystemdError(f"{unit} has no main process to open")
        old = set(self.descendants(pid))
        self._run("systemctl", "kill", "--kill-whom=main", "--signal=SIGHUP", unit)
        while True:
            now = set(self.descendants(pid))
            if now and not now & old:
                return round(clock() - began, 2)
            if clock() - began > timeout_s or self.show(unit).get("MainPID", 0) != pid:
                raise SystemdError(f"{unit}: its workers were not replaced within {timeout_s:.0f}s of a SIGHUP")
            sleep(0.05)

    def wait_stopped(self, unit, timeout_s, clock=time.monotonic, sleep=time.sleep):
        """Wait until ``unit`` has no processes left (a drain ended); past ``timeout_s`` kill what is left.
        Returns the seconds waited."""
        began = clock()
        killed = False
        while self.show(unit).get("ActiveState") in RUNNING:
            if clock() - began > timeout_s:
                if killed:
                    raise SystemdError(f"{unit} still runs {timeout_s:.0f}s after it was told to stop, and a kill")
                self.kill(unit)
                killed, began = True, clock()
            sleep(0.1)
        return round(clock() - began, 2)

    def stop_timeout_s(self, unit):
        """The unit's own stop deadline (TimeoutStopSec), in seconds."""
        return parse_usec(self.show(unit).get("TimeoutStopUSec", "")) or 90.0

    def set_cpu_weight(self, unit, weight):
        # --runtime: gone at the next boot, like the start it tunes.
        self._run("systemctl", "set-property", "--runtime", unit, f"CPUWeight={weight}", check=False)

    def renice(self, unit, niceness):
        """Set the niceness of an instance's processes (its master and the workers it forked so far).

        Workers forked later inherit the master's. Works with or without a cgroup cpu controller."""
        pid = self.show(unit).get("MainPID", 0)
        for each in [pid, *self.descendants(pid)] if pid else []:
            with contextlib.suppress(OSError):  # gone meanwhile
                os.setpriority(os.PRIO_PROCESS, each, niceness)

    def connections_of(self, pid):
        """Open client connections (established TCP, connected Unix stream) held by ``pid`` and its children: what
        a draining instance still serves."""
        if not pid:
            return 0
        inodes = set()
        for each in [pid, *self.descendants(pid)]:
            fds = os.path.join(self.proc, str(each), "fd")
            with contextlib.suppress(OSError):
                for fd in os.listdir(fds):
                    with contextlib.suppress(OSError):
                        target = os.readlink(os.path.join(fds, fd))
                        if target.startswith("socket:["):
                            inodes.add(target[8:-1])
        return len(inodes & self._connected_sockets())

    def _connected_sockets(self):
        """Inodes of established TCP connections, and of connected Unix stream sockets accepted on a named socket
        (an app's asgi_listen_unix; not the journal's, which every process's output is connected to)."""
        found = set()
        for name in ("tcp", "tcp6", "unix"):
            with contextlib.suppress(OSError), open(os.path.join(self.proc, "net", name), encoding="utf-8") as stream:
                for line in stream.readlines()[1:]:
                    cols = line.split()
                    if name != "unix" and len(cols) > 9 and cols[3] == TCP_ESTABLISHED:
                        found.add(cols[9])
                    elif (
                        name == "unix"
                        and len(cols) > 7
                        and cols[5] == UNIX_CONNECTED
                        and not cols[7].startswith(NOT_CLIENTS)
                    ):
                        found.add(cols[6])
        return found

    def descendants(self, pid):
        children = {}
        for entry in os.listdir(self.proc):
            if entry.isdigit():
                try:
                    with open(os.path.join(self.proc, entry, "stat"), encoding="utf-8") as stream:
                        ppid = int(stream.read().rsplit(")", 1)[1].split()[1])
                except (OSError, IndexError, ValueError):
                    continue
                children.setdefault(ppid, []).append(int(entry))
        found, todo = [], [pid]
        while todo:
            for child in children.get(todo.pop(), []):
                found.append(child)
                todo.append(child)
        return found

    def journal(self, unit, lines=40):
        return self._run(
            "journalctl", "--no-pager", "-o", "short-iso", "-n", str(lines), "-u", unit, check=False
        ).strip()

    def release_of(self, pid):
        """The release a process runs: its working directory, resolved (set by the unit, never by the app)."""
        if not pid:
            return ""
        try:
            cwd = os.readlink(os.path.join(self.proc, str(pid), "cwd"))
        except OSError:
            return ""
        parent, name = os.path.split(cwd.rstrip("/"))
        return name if os.path.basename(parent) == "releases" else ""

    def environ_of(self, pid):
        if not pid:
            return {}
        try:
            with open(os.path.join(self.proc, str(pid), "environ"), "rb") as stream:
                raw = stream.read()
        except OSError:
            return {}
        pairs = (item.decode("utf-8", "replace").split("=", 1) for item in raw.split(b"\0") if b"=" in item)
        return dict(pairs)


def parse_usec(text):
    """systemctl's time spans ("1min 30s", "20s", "500ms", "infinity") in seconds (0.0 when unreadable)."""
    units = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "min": 60.0, "h": 3600.0}
    total = 0.0
    for word in str(text).split():
        number = word.rstrip("abcdefghijklmnopqrstuvwxyz")
        unit = word[len(number) :] or "s"
        try:
            total += float(number) * units[unit]
        except (ValueError, KeyError):
            return 0.0
    return total
