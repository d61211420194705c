# Copyright: asgi.deploy maintainers
# MIT License (see LICENSE)
"""The controller's processes: which controller and PID a run is, whether the run that holds a lock is still
alive, and what a run that yields to it says.
"""

from __future__ import annotations

import hashlib
import os
import socket

from ansible_collections.asgi.deploy.plugins.module_utils import locking


def _read(path):
    try:
        with open(path, "rb") as stream:
            return stream.read().strip()
    except OSError:
        return b""


def controller_id(root="/"):
    """This controller: its machine id, boot id, host name and PID namespace. Two containers from one image
    (the same machine id), a clone, a reboot or another PID namespace are other controllers. Empty when the
    machine id is missing or empty: then no run of this controller is ever judged dead."""
    machine = _read(os.path.join(root, "etc/machine-id"))
    if not machine:
        return ""
    boot = _read(os.path.join(root, "proc/sys/kernel/random/boot_id"))
    try:
        namespace = os.readlink(os.path.join(root, "proc/self/ns/pid")).encode()
    except OSError:
        namespace = b""
    identity = b"|".join([machine, boot, socket.gethostname().encode(), namespace])
    return hashlib.sha256(identity).hexdigest()[:16]


def alive_runs(proc="/proc"):
    """This controller's ansible processes, as a run's lock records them: ``{controller_id, pids, certain}``.
    ``certain`` is false when some process could not be read (/proc mounted with hidepid, another user's process):
    then no run of this controller is judged dead, and a dead run's lock needs -e asgi_force_unlock=<run>."""
    pids, certain = [], not _hidepid(proc)
    for entry in os.listdir(proc):
        if not entry.isdigit():
            continue
        try:
            with open(os.path.join(proc, entry, "cmdline"), "rb") as stream:
                cmdline = stream.read()
        except FileNotFoundError:
            continue  # gone meanwhile
        except OSError:
            certain = False
            continue
        if b"ansible" in cmdline:
            pids.append(int(entry))
    return {"controller_id": controller_id(), "pids": sorted(pids), "certain": certain}


def _hidepid(proc):
    """Whether ``proc`` is mounted so that other users' processes are hidden (hidepid=1/2, invisible, noaccess)."""
    try:
        with open(os.path.join(proc, "self", "mountinfo"), encoding="utf-8") as stream:
            lines = stream.read().splitlines()
    except OSError:
        return False
    for line in lines:
        fields = line.split(" - ", 1)
        if len(fields) == 2 and fields[1].startswith("proc ") and " " + proc + " " in " " + fields[0] + " ":
            options = fields[1].split()[-1].split(",")
            return any(o.startswith("hidepid=") and o not in ("hidepid=0", "hidepid=off") for o in options)
    return False


def lock_message(holder):
    """What a run that yields says: who holds the host, and that nothing was changed by this run."""
    holder = holder or {}
    if holder.get("other_slice"):
        return (
            f"deploy lock held by another slice of this run: {locking.describe(holder)}; a host belongs to one "
            "slice only (give each job slice its own hosts)"
        )
    if holder.get("waited"):
        return (
            f"deploy lock held by {locking.describe(holder)}; it started after this run but did not let go within "
            f"{locking.LATER_RUN_WAIT_S}s (-e asgi_lock_wait=SECONDS waits longer)"
        )
    return f"deploy lock held by {locking.describe(holder)}; it started first and goes on"
