"""The one readiness gate: ready, running what was asked, or failing at the first crash."""

from __future__ import annotations

import pytest
from ansible_collections.asgi.deploy.plugins.module_utils.gate import Gate, GateFailed, crashed
from ansible_collections.asgi.deploy.tests.unit.plugins.fakes import make_release

REL = "1.0.0-aaaa1111"


@pytest.fixture
def running(app, systemd):
    make_release(app, REL)
    systemd.unit("demo.service").update(
        ActiveState="active", SubState="running", MainPID=7, release=REL, settings="s1", InvocationID="i1"
    )
    return systemd


def gate(systemd, clock, answers, **kwargs):
    """A gate whose HTTP answers come from ``answers`` in turn (an exception is raised)."""
    queue = list(answers)

    def get(probe, path, headers=None):
        answer = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(answer, Exception):
            raise answer
        return (*answer, "") if len(answer) == 2 else answer

    return Gate(systemd, "/readyz", kwargs.pop("timeout", 5), clock=clock, sleep=clock.sleep, get=get, **kwargs)


def test_ready_after_a_few_refusals(running, clock):
    result = gate(running, clock, [ConnectionRefusedError(), (503, b""), (200, b"")]).wait(
        "demo.service", "/p", REL, "s1"
    )
    assert result["release"] == REL and result["ready_s"] == pytest.approx(0.1)


def test_not_ready_within_the_timeout_names_the_last_answer(running, clock):
    with pytest.raises(GateFailed) as failed:
        gate(running, clock, [(503, b"")], timeout=2).wait("demo.service", "/p", REL)
    assert failed.value.check == "readiness" and "answered HTTP 503" in str(failed.value)


def test_a_crash_fails_at_once_not_at_the_start_limit(running, clock):
    def crash_on_first_poll(probe, path, headers=None):
        running.unit("demo.service").update(NRestarts=1, SubState="auto-restart")
        raise ConnectionRefusedError()

    with pytest.raises(GateFailed) as failed:
        Gate(running, "/readyz", 60, clock=clock, sleep=clock.sleep, get=crash_on_first_poll).wait(
            "demo.service", "/p", REL
        )
    assert failed.value.check == "start" and clock.now < 1


def test_an_instance_running_another_release_fails(running, clock):
    with pytest.raises(GateFailed) as failed:
        gate(running, clock, [(200, b"")]).wait("demo.service", "/p", "2.0.0-bbbb2222")
    assert failed.value.check == "release" and REL in str(failed.value)


def test_an_instance_running_other_settings_fails(running, clock):
    with pytest.raises(GateFailed) as failed:
        gate(running, clock, [(200, b"")]).wait("demo.service", "/p", REL, "s2")
    assert failed.value.check == "settings"


def test_the_apps_version_is_checked_only_when_asked(running, clock):
    assert gate(running, clock, [(200, b'{"release_id": "other"}')]).wait("demo.service", "/p", REL)
    with pytest.raises(GateFailed) as failed:
        gate(running, clock, [(200, b'{"release_id": "other"}')], check_version=True).wait("demo.service", "/p", REL)
    assert failed.value.check == "version"
    assert gate(running, clock, [(200, (f'{{"release_id": "{REL}"}}').encode())], check_version=True).wait(
        "demo.service", "/p", REL
    )


@pytest.mark.parametrize(
    ("props", "why"),
    [
        ({"ActiveState": "failed", "Result": "exit-code"}, "failed (exit-code)"),
        ({"ActiveState": "active", "NRestarts": 1}, "crashed"),
        ({"ActiveState": "active", "InvocationID": "i2"}, "a new invocation"),
        ({"ActiveState": "inactive"}, "stopped"),
        ({"ActiveState": "active", "InvocationID": "i1"}, ""),
    ],
)
def test_what_counts_as_a_crash(props, why):
    assert (
        why in crashed(props, {"NRestarts": 0, "InvocationID": "i1"})
        if why
        else crashed(props, {"InvocationID": "i1"}) == ""
    )


@pytest.mark.parametrize(
    ("status", "location", "cause"),
    [
        (301, "https://localhost/readyz", "likely to HTTPS"),
        (400, "", "ALLOWED_HOSTS"),
        (404, "", "check asgi_readiness_path"),
    ],
)
def test_an_answer_only_configuration_explains_fails_at_once_naming_the_cause(running, clock, status, location, cause):
    with pytest.raises(GateFailed) as failed:
        gate(running, clock, [(status, b"", location)], timeout=60).wait("demo.service", "/p", REL)
    assert failed.value.check == "configuration" and cause in str(failed.value)
    assert clock.now < 1  # not the timeout


def test_the_probe_sends_the_headers_and_takes_the_statuses_it_is_given(running, clock):
    seen = []

    def get(probe, path, headers=None):
        seen.append(headers)
        return 204, b"", ""

    Gate(running, "/readyz", 5, headers={"Host": "billing.example.net"}, accept=(200, 204), clock=clock,
         sleep=clock.sleep, get=get).wait("demo.service", "/p", REL)  # fmt: skip
    assert seen[0] == {"Host": "billing.example.net"}
