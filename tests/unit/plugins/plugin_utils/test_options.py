"""Filters that render settings files, and the checks the plan makes before any host changes."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.asgi.deploy.plugins.filter.settings import (
    secret_files,
    systemd_environment_file,
    systemd_quote,
)
from ansible_collections.asgi.deploy.plugins.plugin_utils import options


@pytest.mark.parametrize(
    ("value", "quoted"),
    [
        ("plain", '"plain"'),
        ('a "quoted" \\ $HOME `cmd`', '"a \\"quoted\\" \\\\ \\$HOME \\`cmd\\`"'),
        ("-----BEGIN KEY-----\nabc\n-----END KEY-----\n", '"-----BEGIN KEY-----\nabc\n-----END KEY-----\n"'),
        ("päßwörd ✓", '"päßwörd ✓"'),
    ],
)
def test_values_are_quoted_the_way_systemd_reads_them(value, quoted):
    assert systemd_quote(value) == quoted


def test_an_environment_file_is_sorted_and_refuses_bad_names():
    assert systemd_environment_file({"B": "2", "A": "1"}) == 'A="1"\nB="2"\n'
    with pytest.raises(AnsibleFilterError, match="not a valid environment variable name"):
        systemd_environment_file({"BAD-NAME": "x"})


def test_secrets_become_credential_files_or_one_environment_file():
    assert secret_files({"db": "pw"}) == {"credentials/db": {"content": "pw", "secret": True}}
    assert secret_files({"DB": "pw"}, "environment_file") == {"secrets.env": {"content": 'DB="pw"\n', "secret": True}}
    assert secret_files({}) == {}


GOOD = {
    "asgi_app": "demo",
    "asgi_entrypoint": "demo_app.main:create_app()",
    "asgi_lockfile": "lock",
    "asgi_listen_tcp": ["0.0.0.0:8000", "[::]:8000"],
    "asgi_listen_unix": "",
    "asgi_readiness_path": "/",
    "service_timeout": 30,
    "asgi_drain_timeout": 30,
    "service_secrets": {"db.password": "x"},
    "service_secrets_via": "credentials",
    "release_keep": 5,
}


def test_good_options_pass():
    assert options.check(GOOD) == []


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"asgi_app": "Demo App"}, "asgi_app"),
        ({"asgi_entrypoint": "demo_app.main"}, "pkg.module:app"),
        ({"asgi_listen_tcp": ["8000"]}, "ADDRESS:PORT"),
        ({"asgi_listen_tcp": [], "asgi_listen_unix": ""}, "listen on something"),
        ({"asgi_listen_unix": "/var/x.sock"}, "under /run/"),
        ({"asgi_readiness_path": "readyz"}, "start with /"),
        ({"asgi_drain_timeout": 0}, "asgi_drain_timeout must be 1 second or more"),
        ({"service_secrets_via": "environment_file"}, "secret names must match"),
        ({"release_keep": 1}, "at least 2"),
        ({"asgi_lockfile": ""}, "set asgi_lockfile in the inventory"),
        ({"asgi_app": "billing-next"}, "ends like another app's units"),
        ({"asgi_app": "billing-probe"}, "ends like another app's units"),
        ({"asgi_app": "billing-green"}, "ends like another app's units"),
        ({"asgi_app": "journal"}, "the name of a system directory or user"),
        ({"asgi_app": "www-data"}, "the name of a system directory or user"),
        ({"asgi_app": "systemd-oomd"}, "the name of a system directory or user"),
        ({"asgi_base_dir": "/"}, "asgi_base_dir '/' is a system directory"),
        ({"asgi_base_dir": "/var/"}, "asgi_base_dir '/var' is a system directory"),
        ({"service_environment": {"BAD-NAME": "x"}}, "service_environment names must match"),
        ({"asgi_readiness_headers": {"Bad Header": "x"}}, "HTTP header names"),
        ({"release_owner": "demo"}, "must not be the service user demo"),
        ({"asgi_hook_timeout": -1}, "asgi_hook_timeout must be 0 (no limit) or a number of seconds"),
    ],
)
def test_each_bad_option_is_named(change, problem):
    problems = options.check({**GOOD, **change})
    assert any(problem in p for p in problems), problems


def test_the_settings_digest_follows_the_settings_but_not_the_build_inputs_and_never_shows_a_secret():
    base = options.settings_digest(GOOD, "t1")
    assert base == options.settings_digest(dict(GOOD), "t1")
    assert base != options.settings_digest({**GOOD, "service_timeout": 31}, "t1")
    assert base != options.settings_digest(GOOD, "t2")
    assert base == options.settings_digest({**GOOD, "asgi_lockfile": "other"}, "t1")
    # A hook shapes a run, not what the units run.
    assert base == options.settings_digest({**GOOD, "asgi_before_switch": "python -m app.migrate"}, "t1")
    # The public part names a secret but never depends on its value (each host keys it with the value).
    named = options.settings_digest({**GOOD, "service_secrets": {"api_token": "y"}}, "t1")
    assert base != named == options.settings_digest({**GOOD, "service_secrets": {"api_token": "z"}}, "t1")


def test_a_removed_option_is_named_with_what_to_do_instead():
    given = {"release_package_source": "index"}
    [problem] = options.removed(given.get)
    assert problem.startswith("release_package_source was removed in 0.2.0") and "--index-url" in problem


def test_every_role_spec_loads_and_the_templates_have_a_digest():
    for role in ("asgi", "release", "service", "rollout"):
        assert options.role_spec(role)
    assert len(options.templates_digest()) == 64
