# Copyright: asgi.deploy maintainers
# MIT License (see LICENSE)
"""The per-host deploy lock: one run at a time, and who it is.

The lock file holds JSON ``{run, actor, operation, version, controller, controller_id, pid,
since}``. The protocol:

- taking it is one ``O_EXCL`` create, so of two runs racing for a host exactly one wins;
- taking over a dead run's lock names that run: under the host flock the lock is read again
  and replaced (an atomic rename) only if that run still holds it, so of two runs taking over
  the same dead run exactly one wins, and a live run's lock is never replaced;
- a run releases only its own lock; a forced unlock names the run it clears (or ``all``) and
  leaves a ``force_unlock`` line in the audit log;
- every module that changes a host checks, under the host flock, that its run holds the lock.
"""

from __future__ import annotations

import contextlib
import json
import os
import time

from ansible_collections.asgi.deploy.plugins.module_utils.host import audit, host_flock, now_iso, read_text

ALL = "all"
# How long a run's first round trip waits for a run that started after it to let go of a host. That run yields once
# its own first round trip shows it is the later one (seconds); one already past it finishes its handover first.
LATER_RUN_WAIT_S = 120


class LockHeld(Exception):
    def __init__(self, holder, message):
        super().__init__(message)
        self.holder = holder


class NotLocked(Exception):
    """A module that changes a host was called by a run that does not hold its lock."""


def read_lock(app, now=None):
    """The holder (with its age in seconds) or None. An unreadable lock still counts as held."""
    text = read_text(app.lock, default=None)
    if text is None:
        return None
    try:
        holder = json.loads(text)
        if not isinstance(holder, dict):
            raise ValueError
    except ValueError:
        holder = {"run": "", "actor": "unknown (unreadable lock file)"}
    since = holder.get("since")
    if not isinstance(since, (int, float)):
        try:
            since = os.stat(app.lock).st_mtime
        except OSError:
            since = None
    holder["age_s"] = round((now if now is not None else time.time()) - since, 1) if since else None
    return holder


def describe(holder):
    age = holder.get("age_s")
    ago = f"{age:.0f}s ago" if age is not None else "at an unknown time"
    what = " ".join(str(holder.get(k)) for k in ("operation", "version") if holder.get(k))
    where = "{} pid {}".format(holder.get("controller", "?"), holder.get("pid", "?"))
    return "run {} by {} ({}; controller {}), taken {}".format(
        holder.get("run") or "?", holder.get("actor", "?"), what or "?", where, ago
    )


def dead(holder, controller_id, alive, certain=True):
    """Whether ``holder`` is a run of this controller (``controller_id``) whose ansible-playbook is gone: its PID is
    not among ``alive`` (the controller's ansible processes). Never a run of another controller, never when this
    controller could not see every process (``certain`` false: /proc mounted with hidepid, a cmdline unreadable),
    and never for a controller with no identity."""
    if not holder or not controller_id or not certain:
        return False
    if holder.get("controller_id") != controller_id or not holder.get("run"):
        return False
    try:
        return int(holder.get("pid") or 0) not in {int(pid) for pid in alive}
    except (TypeError, ValueError):
        return False


def replaceable(holder, force="", controller_id="", alive=(), certain=True):
    """The run whose lock may be replaced: the one the user named (``force``: a run id, or ``all`` for whoever holds
    it), else a dead run of this controller (see ``dead``); '' for none. The one rule of take-overs."""
    if not holder:
        return ""
    if force == ALL:
        return holder.get("run") or ""
    if force:
        return force if holder.get("run") == force else ""
    return holder.get("run", "") if dead(holder, controller_id, alive, certain) else ""


def ours(holder, run, process=None):
    """Whether ``holder`` is this run: its run id, and - given ``process`` (controller id, PID) and a holder that
    names its own - the same ansible-playbook. Job slices share one run id; each slice's process is its own, so no
    slice ever counts another's lock as its own (the one rule, for take, unlock and check mode)."""
    if not holder or not run or holder.get("run") != run:
        return False
    if not process or not all(process) or not holder.get("pid") or not holder.get("controller_id"):
        return True
    try:
        return (holder.get("controller_id"), int(holder.get("pid"))) == (process[0], int(process[1]))
    except (TypeError, ValueError):
        return False


def started_key(run, started=None):
    """What orders two runs by start time: ``started`` (seconds, the controller's clock) where the lock records it,
    else the milliseconds a generated run id begins with (0 for any other id: such a holder counts as earlier)."""
    try:
        seconds = float(started or 0) or (int(run[:12], 16) / 1000 if len(run) == 16 else 0.0)
    except ValueError:
        seconds = 0.0
    return (seconds, run)


def later(holder, run, started=None):
    """Whether ``holder`` is another run that started after ``run`` (of two runs meeting on hosts, the later one
    yields and the earlier one waits for it: the one rule, for the lock module and the controller's round)."""
    if not holder or (holder.get("run") or "") == run:
        return False
    return started_key(holder.get("run") or "", holder.get("started")) > started_key(run, started)


def _record(run, now, **fields):
    return {"run": run, **fields, "since": round(now, 3), "since_iso": now_iso(now)}


def _write(app, record, exclusive):
    """Create the lock (``exclusive``: only if there is none) or replace it whole, atomically."""
    data = (json.dumps(record, sort_keys=True) + "\n").encode("utf-8")
    os.makedirs(app.root, exist_ok=True)
    path = app.lock if exclusive else f"{app.lock}.tmp-{os.getpid()}"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    if not exclusive:
        os.replace(path, app.lock)


def _event(event, run, actor, host, **more):
    return {"event": event, "run": run, "actor": actor, "host": host, **more}


def take(
    app,
    run,
    actor="",
    host="",
    take_over="",
    wait_s=0.0,
    flock_wait_s=300.0,
    now=None,
    clock=None,
    sleep=None,
    reason="dead run",
    **fields,
):
    """Take the lock for ``run``. Returns (changed, previous holder or None, seconds waited).

    ``take_over`` names a dead run whose lock may be replaced (see the module docstring); ``wait_s``
    waits that long for a live holder to let go. Raises LockHeld otherwise. ``fields`` (operation,
    version, controller, controller_id, pid) go into the lock."""
    clock, sleep = clock or time.monotonic, sleep or time.sleep
    began = clock()
    process = (fields.get("controller_id"), fields.get("pid"))
    while True:
        stamp = now if now is not None else time.time()
        holder = read_lock(app, stamp)
        if ours(holder, run, process):
            return False, None, round(clock() - began, 1)
        if holder is not None and holder.get("run") == run and take_over != run:
            raise LockHeld(holder, f"deploy lock held by another slice of this run: {describe(holder)}")
        if holder is None:
            try:
                _write(app, _record(run, stamp, actor=actor, **fields), exclusive=True)
            except FileExistsError:
                continue  # taken between our read and our create: read it again
            audit(app, _event("lock", run, actor, host, **_lock_fields(fields)), stamp)
            return True, None, round(clock() - began, 1)
        if take_over and holder.get("run") == take_over:
            with host_flock(app, flock_wait_s):
                again = read_lock(app, stamp)
                if again is not None and again.get("run") == take_over:
                    audit(app, _event("force_unlock", run, actor, host, holder=again, reason=reason), stamp)
                    _write(app, _record(run, stamp, actor=actor, **fields), exclusive=False)
                    audit(app, _event("lock", run, actor, host, **_lock_fields(fields)), stamp)
                    return True, again, round(clock() - began, 1)
            continue  # someone else took it over first: read who
        if clock() - began >= wait_s:
            hint = (
                f"; it waited {wait_s:.0f}s"
                if wait_s
                else "; -e asgi_lock_wait=SECONDS waits for it, -e asgi_force_unlock=<run> clears a dead run's lock"
            )
            raise LockHeld(holder, f"deploy lock held by {describe(holder)}{hint}")
        sleep(1.0)


def _lock_fields(fields):
    return {k: fields[k] for k in ("operation", "version") if k in fields}


def unlock(app, run, actor="", host="", force="", now=None, reason="", process=None):
    """Release the lock if ``run`` holds it (``process``: its controller id and PID, when another slice of the run
    may hold it); ``force`` names another run to clear (or ``all``).

    Returns (changed, holder found)."""
    holder = read_lock(app, now)
    if holder is None:
        return False, None
    mine = ours(holder, run, process)
    forced = bool(force) and not mine and (force == ALL or holder.get("run") == force)
    if not mine and not forced:
        return False, holder
    try:
        os.unlink(app.lock)
    except FileNotFoundError:
        return False, holder
    if mine:
        audit(app, _event("unlock", run, actor, host), now)
    else:
        scope = "every holder (force_unlock=all)" if force == ALL else "the named run"
        why = reason or f"force_unlock: {scope}"
        audit(app, _event("force_unlock", run, actor, host, holder=holder, reason=why), now)
    return True, holder


def require(app, run):
    """Raise NotLocked unless ``run`` holds this host's deploy lock (call it under the host flock)."""
    holder = read_lock(app)
    if not run or holder is None or holder.get("run") != run:
        held = f"it is held by {describe(holder)}" if holder else "nobody holds it"
        raise NotLocked(
            f"run {run or '(none)'} does not hold the deploy lock of {app.name} on this host ({held}): "
            "nothing was changed; take the lock first (asgi.deploy.lock)"
        )
    return holder


@contextlib.contextmanager
def holding(app, run, wait_s=300.0):
    """What every module that changes a host works under: the host flock (a build, hook or handover a dead
    run left running ends first), and proof that ``run`` holds the deploy lock. Raises Busy or NotLocked."""
    with host_flock(app, wait_s):
        require(app, run)
        yield
