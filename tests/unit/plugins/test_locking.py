"""The deploy lock: one run per host, a named holder with an age, forced only with an audit line."""

from __future__ import annotations

import json
import os

import pytest
from ansible_collections.asgi.deploy.plugins.module_utils import locking
from ansible_collections.asgi.deploy.plugins.module_utils.host import read_text


def take(app, run, now=1000.0, **kwargs):
    return locking.take(
        app, run, actor="ops@laptop", operation="deploy", version="2.0.0", controller="ctl", pid=42, now=now, **kwargs
    )


def audit(app):
    return [json.loads(line) for line in read_text(app.audit).splitlines()]


def test_a_free_host_is_locked_with_who_when_and_from_where(app):
    assert take(app, "r1") == (True, None)
    holder = locking.read_lock(app, now=1012.0)
    assert holder["run"] == "r1" and holder["pid"] == 42 and holder["controller"] == "ctl"
    assert holder["age_s"] == 12.0


def test_taking_our_own_lock_again_changes_nothing(app):
    take(app, "r1")
    assert take(app, "r1") == (False, None)


def test_a_lock_held_by_another_run_names_its_holder_and_age(app):
    take(app, "r1")
    with pytest.raises(locking.LockHeld) as held:
        take(app, "r2", now=1090.0)
    assert "run r1 by ops@laptop (deploy 2.0.0; controller ctl pid 42), taken 90s ago" in str(held.value)
    assert "force_unlock=true" in str(held.value)
    assert locking.read_lock(app)["run"] == "r1"


def test_force_takes_over_and_leaves_an_audit_line_naming_the_old_holder(app):
    take(app, "r1")
    changed, previous = take(app, "r2", force=True, host="web1")
    assert changed and previous["run"] == "r1"
    assert locking.read_lock(app)["run"] == "r2"
    lines = audit(app)
    assert [line["event"] for line in lines] == ["lock", "force_unlock", "lock"]
    forced = lines[1]
    assert (forced["run"], forced["holder"]["run"], forced["host"], forced["reason"]) == ("r2", "r1", "web1", "forced")


def test_a_run_releases_only_its_own_lock(app):
    take(app, "r1")
    assert locking.release(app, "r2")[0] is False
    assert os.path.exists(app.lock)
    assert locking.release(app, "r1")[0] is True
    assert not os.path.exists(app.lock)
    assert [line["event"] for line in audit(app)] == ["lock", "unlock"]
    assert locking.release(app, "r1") == (False, None)


def test_force_release_clears_another_runs_lock_with_an_audit_line(app):
    take(app, "r1")
    changed, holder = locking.release(app, "r2", force=True, actor="ops", host="web1", reason="dead run")
    assert changed and holder["run"] == "r1"
    assert (audit(app)[-1]["event"], audit(app)[-1]["reason"]) == ("force_unlock", "dead run")


def test_an_unreadable_lock_still_counts_as_held(app):
    os.makedirs(app.root)
    with open(app.lock, "w") as stream:
        stream.write("garbage")
    with pytest.raises(locking.LockHeld, match="unreadable lock file"):
        take(app, "r1")


def test_losing_the_race_between_read_and_create_is_reported(app, monkeypatch):
    take(app, "r1")
    monkeypatch.setattr(
        locking,
        "read_lock",
        lambda *a: None if not hasattr(locking, "_seen") and not setattr(locking, "_seen", 1) else {"run": "r1"},
    )
    try:
        with pytest.raises(locking.LockHeld, match="taken meanwhile"):
            take(app, "r2")
    finally:
        del locking._seen
