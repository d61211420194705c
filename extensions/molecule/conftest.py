"""Fixtures shared by every scenario's Testinfra tests.

A failing test that is marked with ``@pytest.mark.units("x.service", ...)``
gets the journal tail of those units appended to its report, so a CI log
shows why a service misbehaved without another run.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import ClassVar

import pytest
import testinfra

# The collection's own /proc walk (pyproject puts .collections on the path); it runs no command.
from ansible_collections.asgi.deploy.plugins.module_utils.systemd import Systemd

JOURNAL_LINES = 60
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def journal(host, unit, lines=JOURNAL_LINES):
    cmd = host.run("journalctl --no-pager -o short-iso -n %s -u %s", str(lines), unit)
    return cmd.stdout


def _wait_for(predicate, timeout=30.0, interval=0.2, what="condition"):
    """Poll until ``predicate()`` is truthy; fail with ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


@pytest.fixture(scope="module")
def host(_testinfra_host):
    """Read the scenario's instances with ``podman exec``: from outside, as the tests should, and without
    running every command as an Ansible module (about a second each). The playbooks reach them over SSH."""
    backend = _testinfra_host.backend
    if backend.NAME == "ansible" and os.environ.get("MOLECULE_DRIVER_NAME") == "podman":
        return testinfra.get_host(f"podman://{backend.host}")
    return _testinfra_host


@pytest.fixture
def wait_for():
    """Poll a condition instead of sleeping: ``wait_for(pred, timeout, what=...)``."""
    return _wait_for


@pytest.fixture
def journal_of(host):
    return lambda unit, lines=JOURNAL_LINES: journal(host, unit, lines)


class Shell:
    """One ``podman exec -i NAME sh`` per host, kept open for the session: what the tests poll (a unit's state,
    a link) costs a shell command, not a container runtime call. A ``podman exec`` takes about 60 ms of CPU:
    polled every 50 ms it would take a core from the very run the test watches."""

    _open: ClassVar[dict[str, Shell]] = {}

    def __init__(self, name):
        self.name, self.proc = name, None

    @classmethod
    def of(cls, name):
        return cls._open.setdefault(name, cls(name))

    def run(self, command):
        """``command``'s output, stripped ("" while the host cannot be reached: say, restarting)."""
        for _ in range(2):
            if self.proc is None or self.proc.poll() is not None:
                self.proc = subprocess.Popen(
                    ["podman", "exec", "-i", self.name, "/bin/sh"],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                )  # fmt: skip
            marker = f"--end-{time.monotonic_ns()}--"
            try:
                self.proc.stdin.write(f"{command} </dev/null 2>/dev/null; echo; echo {marker}\n")
                self.proc.stdin.flush()
                lines = []
                while (line := self.proc.stdout.readline()) and line.strip() != marker:
                    lines.append(line)
                if line:
                    return "".join(lines).strip()
            except OSError:
                pass
            self.close()
        return ""

    def close(self):
        if self.proc is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None


@pytest.fixture(scope="session", autouse=True)
def _close_shells():
    yield
    for shell in Shell._open.values():
        shell.close()


def run_playbook(playbook, extra_vars=None, limit=None, args=(), env=None):
    """Run a playbook against this scenario's instances, as molecule would (``env`` over its environment).

    Returns the CompletedProcess (stdout and stderr merged); never raises on a
    failed play, since tests of bad input expect exactly that.
    """
    ephemeral = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])
    cmd = ["ansible-playbook", "-i", str(ephemeral / "inventory"), str(playbook)]
    if extra_vars:
        cmd += ["-e", json.dumps(extra_vars)]
    cmd += list(args)
    if limit:
        cmd += ["--limit", limit]
    # Molecule forces colour for its own runs; tests read this output as text.
    env = {**os.environ, "ANSIBLE_CONFIG": str(ephemeral / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1", "NO_COLOR": "1",
           **(env or {})}  # fmt: skip
    env.pop("ANSIBLE_FORCE_COLOR", None)
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False, timeout=600)
    result.stdout, result.stderr = ANSI.sub("", result.stdout), ANSI.sub("", result.stderr)
    return result


def state(pid):
    """The process's state letter (R, S, T stopped, Z zombie, ...), or "" when it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return ""


def alive(pid):
    """Running, not a zombie waiting for its (new) parent to reap it."""
    return state(pid) not in ("", "Z")


class Background:
    """An ansible-playbook run the test can watch (its output goes to a file) and SIGKILL, with every process
    it started, by PID."""

    def __init__(self, playbook, extra_vars=None, workdir=None, prefix=(), config=None):
        ephemeral = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])
        self.log = Path(workdir or ephemeral) / f"background-{time.monotonic_ns()}.log"
        cmd = [*prefix, "ansible-playbook", "-i", str(ephemeral / "inventory"), str(playbook)]
        if extra_vars:
            cmd += ["-e", json.dumps(extra_vars)]
        config = config or ephemeral / "ansible.cfg"
        env = {**os.environ, "ANSIBLE_CONFIG": str(config), "ANSIBLE_NOCOLOR": "1", "NO_COLOR": "1"}
        env.pop("ANSIBLE_FORCE_COLOR", None)
        self._out = self.log.open("w")
        self.proc = subprocess.Popen(cmd, env=env, stdout=self._out, stderr=subprocess.STDOUT, start_new_session=True)

    def output(self):
        return ANSI.sub("", self.log.read_text())

    def wait_for(self, text, timeout=300.0):
        """Wait until the playbook printed ``text`` (a task name, say); fail if it ended first."""

        def seen():
            if text in self.output():
                return True
            assert self.proc.poll() is None, f"the playbook ended before {text!r}:\n{self.output()[-3000:]}"
            return False

        return _wait_for(seen, timeout=timeout, interval=0.05, what=f"{text!r} on the playbook's output")

    def kill(self):
        """SIGKILL the playbook and every process it started (never anything else).

        Ansible forks a worker per task and host: one forked between a listing and the kill would outlive
        it (orphaned, out of reach, blocked on a pipe nobody reads). So every process is stopped first; a
        listing counts only once every process found before it has stopped (a stopped process forks
        nothing), and the stopping goes on until such a listing finds nothing new; then all are killed."""
        victims = {self.proc.pid}
        deadline = time.monotonic() + 30
        while True:
            for pid in victims:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGSTOP)
            assert time.monotonic() < deadline, f"could not stop the run's processes: {sorted(victims)}"
            if not all(state(pid) in ("T", "Z", "") for pid in victims):
                continue
            found = {self.proc.pid, *Systemd(run=None).descendants(self.proc.pid)}
            if found <= victims:
                break
            victims |= found
        victims = sorted(victims)
        for pid in victims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        self._out.close()
        return victims

    def wait(self, timeout=600):
        code = self.proc.wait(timeout=timeout)
        self._out.close()
        return code


@pytest.fixture(scope="session")
def playbook():
    """``playbook(path, extra_vars=None, limit=None, args=())``: see run_playbook."""
    return run_playbook


FILES = Path(__file__).resolve().parent / "files"


@pytest.fixture
def http_probe(host):
    """Run files/http_probe.py on the host; return its JSON result."""

    def probe(*args):
        code = (FILES / "http_probe.py").read_text()
        cmd = host.run("python3 -c %s " + " ".join(["%s"] * len(args)), code, *args)
        assert cmd.rc == 0, cmd.stderr
        return json.loads(cmd.stdout)

    return probe


def pytest_configure(config):
    config.addinivalue_line("markers", "units(*names): systemd units whose journal a failure shows")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    marker = item.get_closest_marker("units")
    host = getattr(item, "funcargs", {}).get("host")
    if report.when != "call" or not report.failed or marker is None or host is None:
        return
    for unit in marker.args:
        try:
            text = journal(host, unit)
        except Exception as exc:  # the host may be the thing that broke
            text = f"(journal unavailable: {exc})"
        report.sections.append((f"journal of {unit}", text))
