# Copyright: asgi.deploy maintainers
# MIT License (see LICENSE)
"""The per-host deploy lock: one run at a time, and who it is.

The lock file holds JSON ``{run, actor, operation, version, controller, pid,
since}``. Taking it is one ``O_EXCL`` create, so of two runs racing for a host
exactly one wins. A run releases only its own lock; ``force`` clears anyone's,
and leaves a ``force_unlock`` line naming the holder in the audit log.
"""

from __future__ import annotations

import json
import os
import time

from ansible_collections.asgi.deploy.plugins.module_utils.host import audit, now_iso, read_text


class LockHeld(Exception):
    def __init__(self, holder, message):
        super().__init__(message)
        self.holder = holder


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


def _create(app, record):
    os.makedirs(app.root, exist_ok=True)
    fd = os.open(app.lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        os.write(fd, (json.dumps(record, sort_keys=True) + "\n").encode("utf-8"))
    finally:
        os.close(fd)


def take(
    app,
    run,
    actor="",
    operation="",
    version="",
    controller="",
    pid=0,
    force=False,
    host="",
    reason="",
    now=None,
    controller_id="",
):
    """Take the lock for ``run``. Returns (changed, previous holder or None).

    Raises LockHeld when another run holds it and ``force`` is false. Taking it,
    and taking it over, each leave a line in the audit log.
    """
    now = now if now is not None else time.time()
    record = {
        "run": run,
        "actor": actor,
        "operation": operation,
        "version": version,
        "controller": controller,
        "controller_id": controller_id,
        "pid": pid,
        "since": round(now, 3),
        "since_iso": now_iso(now),
    }
    holder = read_lock(app, now)
    if holder is not None and holder.get("run") == run:
        return False, None
    if holder is not None:
        if not force:
            raise LockHeld(
                holder,
                f"deploy lock held by {describe(holder)}; if that run is dead, run again with -e force_unlock=true",
            )
        audit(app, _forced(run, actor, host, holder, reason), now)
        os.unlink(app.lock)
    try:
        _create(app, record)
    except FileExistsError:
        # Another run took it between our read and our create.
        holder = read_lock(app, now)
        raise LockHeld(holder, f"deploy lock taken meanwhile by {describe(holder)}") from None
    audit(
        app,
        {"event": "lock", "run": run, "actor": actor, "host": host, "operation": operation, "version": version},
        now,
    )
    return True, holder


def _forced(run, actor, host, holder, reason):
    return {
        "event": "force_unlock",
        "run": run,
        "actor": actor,
        "host": host,
        "holder": holder,
        "reason": reason or "forced",
    }


def release(app, run, force=False, actor="", host="", reason="", now=None):
    """Release the lock if ``run`` holds it (or any holder with ``force``). Returns (changed, holder)."""
    holder = read_lock(app, now)
    if holder is None:
        return False, None
    ours = holder.get("run") == run
    if not ours and not force:
        return False, holder
    try:
        os.unlink(app.lock)
    except FileNotFoundError:
        return False, holder
    event = (
        {"event": "unlock", "run": run, "actor": actor, "host": host}
        if ours
        else _forced(run, actor, host, holder, reason)
    )
    audit(app, event, now)
    return True, holder
