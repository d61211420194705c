"""Filters that write unit files and read hook options: escaped as systemd reads them, decided in Python."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.asgi.deploy.plugins.filter import settings


def test_environment_lines_double_every_percent_sign_and_quote_as_systemd_unquotes():
    lines = settings.unit_environment({"PASSWORD": "p%40ss", "HOME_HINT": "%h", "Q": 'a"b\\c', "M": "two\nlines"})
    assert lines == [
        'Environment="HOME_HINT=%%h"',
        'Environment="M=two\\nlines"',
        'Environment="PASSWORD=p%%40ss"',
        'Environment="Q=a\\"b\\\\c"',
    ]


def test_an_environment_name_systemd_would_refuse_is_refused():
    with pytest.raises(AnsibleFilterError, match="not a valid environment variable name"):
        settings.unit_environment({"BAD-NAME": "x"})


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        ("python -m django migrate --noinput", {"command": "python -m django migrate --noinput", "tasks": ""}),
        ("./smoke.yml", {"command": "./smoke.yml", "tasks": ""}),  # a command, whatever its last word
        ("tasks: hooks/notify.yml", {"command": "", "tasks": "hooks/notify.yml"}),
        ("", {"command": "", "tasks": ""}),
    ],
)
def test_a_hook_is_a_task_file_only_when_it_says_so(value, kind):
    assert settings.hook(value) == kind


def test_the_roles_get_unit_names_and_paths_from_their_one_owner():
    layout = settings.layout("billing", "/srv")
    assert layout["units"]["green"] == "billing-green.service"
    assert layout["probes"]["blue"] == "/run/billing-blue-probe.sock"
    assert layout["units"]["app"] == "billing.service" and layout["slots"] == ["blue", "green"]
    assert layout["settings_root"] == "/etc/asgi-deploy/billing/settings"


def test_a_set_rendered_once_gets_each_hosts_id_in_every_file_and_keeps_the_modes():
    rendered = {
        "gunicorn.conf.py": {"content": "# settings set ID-HERE\n"},
        "units/demo-blue.service": {"mode": "0644", "content": "ExecStart=gunicorn --config /etc/s/ID-HERE/g.py\n"},
    }
    filled = settings.settings_with_id(rendered, "ID-HERE", "0123abcd")
    assert filled == {
        "gunicorn.conf.py": {"content": "# settings set 0123abcd\n"},
        "units/demo-blue.service": {"mode": "0644", "content": "ExecStart=gunicorn --config /etc/s/0123abcd/g.py\n"},
    }
    assert "ID-HERE" in rendered["gunicorn.conf.py"]["content"]
