"""A handover outlives the process that started it: the controller's death never stops it half way."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

from ansible_collections.asgi.deploy.plugins.module_utils.detach import detached


def test_the_work_runs_in_its_own_session_and_its_result_comes_back():
    outcome = detached(lambda: {"sid": os.getsid(0), "pid": os.getpid()})
    assert outcome["pid"] != os.getpid() and outcome["sid"] == outcome["pid"]  # a session of its own


def test_a_crash_in_the_work_comes_back_as_its_traceback():
    def boom():
        raise RuntimeError("half way")

    assert "RuntimeError: half way" in detached(boom)["crashed"]


def collections_root():
    """The directory that holds ansible_collections/, however this test was started (pytest, ansible-test)."""
    import ansible_collections

    return os.path.dirname(next(p for p in ansible_collections.__path__ if os.path.isdir(os.path.join(p, "asgi"))))


def test_the_work_finishes_when_the_caller_is_killed_and_its_session_hung_up(tmp_path):
    done, started = tmp_path / "done", tmp_path / "started"
    script = textwrap.dedent(
        f"""
        import sys, time, pathlib
        sys.path.insert(0, {collections_root()!r})
        from ansible_collections.asgi.deploy.plugins.module_utils.detach import detached

        def work():
            pathlib.Path({str(started)!r}).touch()
            time.sleep(1.5)  # the switch, half way, when the caller dies
            pathlib.Path({str(done)!r}).write_text("finished")
            return {{}}

        detached(work)
        """
    )
    caller = subprocess.Popen([sys.executable, "-c", script], start_new_session=True)
    deadline = time.monotonic() + 20
    while not started.exists():
        assert time.monotonic() < deadline, "the work never started"
        time.sleep(0.02)
    os.killpg(caller.pid, signal.SIGHUP)  # what sshd does to the session of a controller that went away
    caller.kill()
    caller.wait()
    while not done.exists():
        assert time.monotonic() < deadline, "the work was stopped with its caller"
        time.sleep(0.05)
    assert done.read_text() == "finished"


def test_the_work_moves_into_a_scope_of_its_own_when_systemd_makes_one():
    from ansible_collections.asgi.deploy.tests.unit.plugins.fakes import FakeRun

    made = FakeRun()
    outcome = detached(lambda: {"ok": True}, scope="asgi-handover-demo-r1.scope", run=made)
    assert outcome == {"ok": True, "scope": "asgi-handover-demo-r1.scope"}
    refused = detached(lambda: {"ok": True}, scope="x.scope", run=FakeRun([(("busctl",), (1, "", "no bus"))]))
    assert refused["scope"] == ""
