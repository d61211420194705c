"""The deploy lock as a protocol: one run per host, take-over only of a named dead run (compare-and-swap
under the host flock), forced unlocks that name what they clear, and host-changing modules that refuse
a run that does not hold the lock."""

from __future__ import annotations

import json
import os
import threading

import pytest
from ansible_collections.asgi.deploy.plugins.module_utils import locking
from ansible_collections.asgi.deploy.plugins.module_utils.host import Busy, host_flock, read_text
from ansible_collections.asgi.deploy.tests.unit.plugins.fakes import Clock


def take(app, run, now=1000.0, **kwargs):
    return locking.take(
        app, run, actor="ops@laptop", operation="deploy", version="2.0.0", controller="ctl", pid=42, now=now, **kwargs
    )


def audit(app):
    return [json.loads(line) for line in read_text(app.audit).splitlines()]


def test_a_free_host_is_locked_with_who_when_and_from_where(app):
    assert take(app, "r1") == (True, None, 0.0)
    holder = locking.read_lock(app, now=1012.0)
    assert holder["run"] == "r1" and holder["pid"] == 42 and holder["controller"] == "ctl"
    assert holder["age_s"] == 12.0


def test_taking_our_own_lock_again_changes_nothing(app):
    take(app, "r1")
    assert take(app, "r1")[:2] == (False, None)


def test_a_lock_held_by_another_run_names_its_holder_age_and_the_ways_out(app):
    take(app, "r1")
    with pytest.raises(locking.LockHeld) as held:
        take(app, "r2", now=1090.0)
    assert "run r1 by ops@laptop (deploy 2.0.0; controller ctl pid 42), taken 90s ago" in str(held.value)
    assert "asgi_lock_wait" in str(held.value) and "asgi_force_unlock=<run>" in str(held.value)
    assert locking.read_lock(app)["run"] == "r1"


def test_a_take_over_replaces_only_the_named_run_and_leaves_an_audit_line(app):
    take(app, "r1")
    with pytest.raises(locking.LockHeld):
        take(app, "r3", take_over="r0")  # names another run: r1 is not replaced
    changed, previous = take(app, "r2", take_over="r1", host="web1")[:2]
    assert changed and previous["run"] == "r1"
    assert locking.read_lock(app)["run"] == "r2"
    events = audit(app)
    assert [e["event"] for e in events] == ["lock", "force_unlock", "lock"]
    forced = events[1]
    assert (forced["run"], forced["holder"]["run"], forced["host"], forced["reason"]) == (
        "r2",
        "r1",
        "web1",
        "dead run",
    )


def test_of_two_runs_taking_over_one_dead_run_exactly_one_wins(app):
    take(app, "dead")
    outcomes = []

    def contender(run):
        try:
            outcomes.append(take(app, run, take_over="dead")[0])
        except locking.LockHeld as held:
            outcomes.append(held.holder["run"])

    threads = [threading.Thread(target=contender, args=(f"r{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winner = locking.read_lock(app)["run"]
    assert outcomes.count(True) == 1 and sorted(o for o in outcomes if o is not True) == [winner] * 3
    assert [e["event"] for e in audit(app)].count("force_unlock") == 1


def test_a_take_over_waits_for_the_host_flock_a_dead_runs_work_still_holds(app):
    take(app, "dead")
    with host_flock(app), pytest.raises(Busy):
        take(app, "r2", take_over="dead", flock_wait_s=0)
    assert locking.read_lock(app)["run"] == "dead"


def test_a_run_can_wait_for_a_live_holder(app):
    take(app, "r1")
    clock = Clock()

    def sleep(seconds):
        clock.sleep(seconds)
        if clock.now >= 3:
            locking.unlock(app, "r1")

    changed, waited = locking.take(app, "r2", wait_s=10, clock=clock, sleep=sleep)[::2]
    assert changed and waited == 3.0 and locking.read_lock(app)["run"] == "r2"
    waiting = Clock()
    with pytest.raises(locking.LockHeld, match="it waited 2s"):
        locking.take(app, "r4", wait_s=2, clock=waiting, sleep=waiting.sleep)


def test_a_run_releases_only_its_own_lock(app):
    take(app, "r1")
    assert locking.unlock(app, "r2")[0] is False
    assert os.path.exists(app.lock)
    assert locking.unlock(app, "r1")[0] is True
    assert not os.path.exists(app.lock)
    assert [e["event"] for e in audit(app)] == ["lock", "unlock"]
    assert locking.unlock(app, "r1") == (False, None)


def test_a_forced_unlock_names_the_run_it_clears_or_all(app):
    take(app, "r1")
    assert locking.unlock(app, "me", force="r9")[0] is False  # another run named: r1 stays
    changed, holder = locking.unlock(app, "me", force="r1", actor="ops", host="web1")
    assert changed and holder["run"] == "r1"
    assert (audit(app)[-1]["event"], audit(app)[-1]["reason"]) == ("force_unlock", "force_unlock: the named run")
    take(app, "r2")
    assert locking.unlock(app, "me", force="all")[0] is True
    assert audit(app)[-1]["reason"] == "force_unlock: every holder (force_unlock=all)"


def test_an_unreadable_lock_still_counts_as_held(app):
    os.makedirs(app.root)
    with open(app.lock, "w") as stream:
        stream.write("garbage")
    with pytest.raises(locking.LockHeld, match="unreadable lock file"):
        take(app, "r1")


def test_a_module_that_changes_a_host_refuses_a_run_that_does_not_hold_its_lock(app):
    with pytest.raises(locking.NotLocked, match="nobody holds it"), locking.holding(app, "r1"):
        pass
    take(app, "r1")
    with pytest.raises(locking.NotLocked, match="held by run r1"), locking.holding(app, "r2"):
        pass
    with locking.holding(app, "r1"):
        pass


def test_a_dead_run_is_one_of_this_controller_whose_process_is_gone_and_only_when_every_process_could_be_seen():
    mine = {"run": "r9", "controller_id": "me", "pid": 12}
    assert locking.dead(mine, "me", [10, 11]) is True
    assert locking.dead(mine, "me", [12]) is False  # still running
    assert locking.dead({**mine, "controller_id": "other"}, "me", []) is False  # never another controller's
    assert locking.dead(mine, "", []) is False  # a controller with no identity judges nothing
    assert locking.dead(mine, "me", [], certain=False) is False  # hidepid: unknown is not dead
    assert locking.dead({**mine, "pid": "x"}, "me", []) is False
    assert locking.dead(None, "me", []) is False


def test_whose_lock_a_run_may_replace_is_the_one_named_or_a_dead_one():
    holder = {"run": "r1", "controller_id": "elsewhere", "pid": 1}
    assert locking.replaceable(holder) == ""  # alive or not, not ours to judge
    assert locking.replaceable(holder, "r1") == "r1"  # the user named it
    assert locking.replaceable(holder, "r2") == ""  # named another run: this one stays
    assert locking.replaceable(holder, "all") == "r1"
    assert locking.replaceable(None, "all") == ""
    assert locking.replaceable({**holder, "controller_id": "me"}, "", "me", [2]) == "r1"  # ours, and gone


def slice_take(app, pid, now=1000.0, **kwargs):
    """A take by one job slice of run s1 (they share the run id; each is its own ansible-playbook)."""
    return locking.take(app, "s1", actor="awx", operation="deploy", controller="ctl", controller_id="c", pid=pid,
                        now=now, **kwargs)  # fmt: skip


def test_a_job_slice_never_takes_or_releases_a_lock_another_slice_of_its_run_holds(app):
    assert slice_take(app, 41)[0] is True
    assert slice_take(app, 41)[:2] == (False, None)  # its own, again
    with pytest.raises(locking.LockHeld, match="held by another slice of this run"):
        slice_take(app, 42)
    assert locking.unlock(app, "s1", process=("c", 42))[0] is False
    assert locking.read_lock(app)["pid"] == 41
    assert locking.unlock(app, "s1", process=("c", 41))[0] is True


def test_a_dead_slices_lock_is_taken_over_by_a_rerun_of_the_slice_under_the_same_run_id(app):
    slice_take(app, 41)
    changed, previous = slice_take(app, 43, take_over="s1")[:2]
    assert changed and previous["pid"] == 41 and locking.read_lock(app)["pid"] == 43


def test_a_lock_without_a_process_is_its_runs_whatever_the_process():
    # Locks written before slices (no pid), or a caller that names no process: the run id alone decides.
    assert locking.ours({"run": "r1"}, "r1", ("c", 42))
    assert locking.ours({"run": "r1", "pid": 41, "controller_id": "c"}, "r1")
    assert not locking.ours({"run": "r1", "pid": 41, "controller_id": "c"}, "r1", ("c", 42))
    assert not locking.ours({"run": "r1", "pid": 42, "controller_id": "d"}, "r1", ("c", 42))
    assert not locking.ours(None, "r1") and not locking.ours({"run": ""}, "")
