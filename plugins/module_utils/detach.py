# Copyright: asgi.deploy maintainers
# MIT License (see LICENSE)
"""Work that must not stop half way when the controller goes away.

A module runs under the SSH session (and sudo) that started it: when the controller
dies, sshd hangs up that session and the module gets SIGHUP mid-step, whatever
pipelining or become settings the user has. ``detached`` runs the work in a child
in a session of its own, with no terminal and its standard streams on /dev/null,
and waits for it: the caller gets its result as usual, and if the caller is
killed, the child still finishes (the host flock, inherited, stays held until it
does, so the next run waits for it).
"""

from __future__ import annotations

import json
import os
import signal
import traceback


def detached(work, scope="", run=None):
    """Run ``work()`` (returning a JSON-able dict) in a child of its own session; return what it returned.

    With ``scope`` (a unit name ending .scope) and ``run`` (run_command), the child first moves into a transient
    scope of that name: out of the SSH session's cgroup, so that logind ending the session (KillUserProcesses) or
    a stop of the session scope never reaches it. The outcome says where it ran (``"scope"``, '' when the move was
    not possible: no systemd bus). An exception in the child comes back as ``{"crashed": traceback}``."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        os.close(read_fd)
        _run_child(work, write_fd, scope, run)
    os.close(write_fd)
    chunks = []
    with os.fdopen(read_fd, "rb") as stream:
        for chunk in iter(lambda: stream.read(65536), b""):
            chunks.append(chunk)
    os.waitpid(pid, 0)
    data = b"".join(chunks)
    if not data:
        return {"crashed": "the detached worker ended without a result"}
    return json.loads(data.decode("utf-8"))


def in_scope(scope, run):
    """Move this process into a new transient scope ``scope`` (systemd's StartTransientUnit with its PID)."""
    argv = [
        "busctl", "call", "--quiet", "org.freedesktop.systemd1", "/org/freedesktop/systemd1",
        "org.freedesktop.systemd1.Manager", "StartTransientUnit", "ssa(sv)a(sa(sv))", scope, "fail", "2",
        "PIDs", "au", "1", str(os.getpid()), "Description", "s", "asgi.deploy handover", "0",
    ]  # fmt: skip
    rc, _out, _err = run(argv)
    return scope if rc == 0 else ""


def _run_child(work, write_fd, scope="", run=None):
    try:
        os.setsid()
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        moved = in_scope(scope, run) if scope and run else ""
        try:
            outcome = work()
        except BaseException:  # the parent reports it; the child must still exit here
            outcome = {"crashed": traceback.format_exc()}
        outcome["scope"] = moved
        data = json.dumps(outcome, default=str).encode("utf-8")
        try:
            while data:
                data = data[os.write(write_fd, data) :]
        except OSError:
            pass  # the parent is gone: the work is done all the same
    finally:
        os._exit(0)
