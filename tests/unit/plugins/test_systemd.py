"""The systemctl calls the modules make (the faults scenario runs them against real systemd)."""

import subprocess

import pytest
from ansible_collections.asgi.deploy.plugins.module_utils.systemd import Systemd, SystemdError


@pytest.fixture
def argvs(monkeypatch):
    seen = []

    def run(argv, **_):
        seen.append(argv)
        failed = "broken.service" in argv
        return subprocess.CompletedProcess(argv, 1 if failed else 0, "", "Job for broken.service canceled.")

    monkeypatch.setattr(subprocess, "run", run)
    return seen


def test_a_stop_for_good_queues_jobs_nothing_may_replace(argvs):
    Systemd().stop_for_good("demo.socket", "demo-probe.socket", "demo.service")
    assert argvs == [
        ["systemctl", "stop", "--job-mode=replace-irreversibly", "demo.socket", "demo-probe.socket", "demo.service"]
    ]


def test_a_cancelled_job_is_an_error_that_names_it(argvs):
    with pytest.raises(SystemdError, match=r"Job for broken\.service canceled"):
        Systemd().stop("broken.service")


def test_reset_failed_and_disable_tolerate_units_that_are_not_there(argvs):
    Systemd().reset_failed("broken.service")
    Systemd().disable("broken.service")
    assert [argv[1] for argv in argvs] == ["reset-failed", "disable"]
