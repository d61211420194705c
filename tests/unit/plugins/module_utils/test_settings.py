"""Settings sets: whole or not at all, validated before they land, pruned when nothing uses them."""

from __future__ import annotations

import os
import stat

import pytest
from ansible_collections.asgi.deploy.plugins.module_utils import settings
from ansible_collections.asgi.deploy.plugins.module_utils.host import read_text
from ansible_collections.asgi.deploy.tests.unit.plugins.fakes import FakeRun, local_run, stage_settings

D1, D2 = "a" * 32, "b" * 32
FILES = {
    "gunicorn.conf.py": {"content": "workers = 2\n"},
    "units/demo.service": {"content": "[Service]\nExecStart=/bin/true\n", "mode": "0644"},
    "credentials/token": {"content": "s3cret", "secret": True},
}


def test_a_set_is_written_with_secrets_for_root_only(app):
    assert settings.stage(app, D1, FILES, local_run, gid=os.getgid(), verify=False)
    base = app.settings_dir(D1)
    assert read_text(os.path.join(base, "gunicorn.conf.py")) == "workers = 2\n"
    assert stat.S_IMODE(os.stat(os.path.join(base, "credentials/token")).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.join(base, "credentials")).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(os.path.join(base, "gunicorn.conf.py")).st_mode) == 0o640
    assert stat.S_IMODE(os.stat(base).st_mode) == 0o750
    assert not settings.stage(app, D1, FILES, local_run, gid=os.getgid(), verify=False)


def test_a_set_that_does_not_compile_never_lands(app):
    bad = {**FILES, "gunicorn.conf.py": {"content": "workers = (\n"}}
    with pytest.raises(settings.SettingsInvalid, match=r"gunicorn\.conf\.py"):
        settings.stage(app, D1, bad, local_run, gid=os.getgid(), verify=False)
    assert os.listdir(app.settings_root) == []


@pytest.mark.parametrize("directive", ["Nise=5", "MemoryMax=lots"])
def test_a_unit_with_a_directive_systemd_would_ignore_never_lands(app, directive):
    # The real systemd-analyze: it exits 0 on these, and only warns.
    bad = {**FILES, "units/demo.service": {"content": f"[Service]\nExecStart=/bin/true\n{directive}\n"}}
    with pytest.raises(settings.SettingsInvalid, match=directive.split("=")[0] + "|" + directive.split("=")[1]):
        settings.stage(app, D1, bad, local_run, gid=os.getgid(), verify=True)
    assert os.listdir(app.settings_root) == []


def test_a_valid_unit_passes_systemd_analyze(app):
    assert settings.stage(app, D1, FILES, local_run, gid=os.getgid(), verify=True)


def test_a_set_edited_by_hand_is_replaced_whole(app):
    settings.stage(app, D1, FILES, local_run, gid=os.getgid(), verify=False)
    with open(os.path.join(app.settings_dir(D1), "gunicorn.conf.py"), "w") as stream:
        stream.write("workers = 64\n")
    assert settings.stage(app, D1, FILES, local_run, gid=os.getgid(), verify=False)
    assert read_text(os.path.join(app.settings_dir(D1), "gunicorn.conf.py")) == "workers = 2\n"
    assert sorted(os.listdir(app.settings_root)) == [D1]


@pytest.mark.parametrize("name", ["/etc/passwd", "../x", "units//x"])
def test_file_names_cannot_leave_the_set(app, name):
    with pytest.raises(settings.SettingsInvalid, match="bad file name"):
        settings.stage(app, D1, {name: {"content": ""}}, local_run, verify=False)


def test_check_mode_writes_nothing(app):
    assert settings.stage(app, D1, FILES, local_run, check_mode=True)
    assert not os.path.exists(app.settings_root)


def test_a_bad_digest_is_refused(app):
    with pytest.raises(settings.SettingsInvalid, match="hex digest"):
        settings.stage(app, "../../etc", FILES, local_run, verify=False)


def test_prune_keeps_the_sets_the_units_use(app):
    for digest in (D1, D2, "c" * 32, "d" * 32):
        stage_settings(app, digest)
    os.makedirs(app.unit_dir)
    with open(app.unit_path("demo.service"), "w") as stream:
        stream.write(f"ExecStart=x --config {app.settings_dir(D1)}/gunicorn.conf.py\n")
    os.makedirs(os.path.join(app.settings_root, ".staging-x"))
    removed = settings.prune(app, keep=1, also_keep=[D2])
    assert set(os.listdir(app.settings_root)) >= {D1, D2}
    assert ".staging-x" in removed and len(os.listdir(app.settings_root)) == 3


def test_a_host_that_cannot_hand_credentials_to_the_user_is_refused_before_the_set_lands(app):
    run = FakeRun([(("systemd-run",), (1, "", "Permission denied"))])
    probe = settings.credential_probe("demo", "demo", run)
    with pytest.raises(settings.SettingsInvalid, match=r"cannot hand a credential to demo .*environment_file"):
        settings.stage(app, D1, FILES, local_run, gid=os.getgid(), verify=False, probe=probe)
    assert not os.path.exists(app.settings_dir(D1))
    [argv] = run.commands("systemd-run")
    assert "User=demo" in argv and "PrivateUsers=yes" in argv
    assert any(arg.startswith("LoadCredential=probe:") and arg.endswith("/credentials/token") for arg in argv)


def test_a_set_with_credentials_lands_when_the_probe_reads_one(app):
    probe = settings.credential_probe("demo", "demo", FakeRun())
    assert settings.stage(app, D1, FILES, local_run, gid=os.getgid(), verify=False, probe=probe)
    assert os.path.isdir(app.settings_dir(D1))


def test_a_settings_id_is_keyed_on_the_host_so_it_says_nothing_about_a_secret(app):
    assert settings.settings_id(app, "public", {"token": "s3cret"}) == ""  # no key yet: nothing staged with one
    made = settings.settings_id(app, "public", {"token": "s3cret"}, create=True)
    assert len(made) == 32 and stat.S_IMODE(os.stat(app.settings_key).st_mode) == 0o600
    assert settings.settings_id(app, "public", {"token": "s3cret"}) == made  # stable once the key exists
    assert settings.settings_id(app, "public", {"token": "other"}) != made  # a secret change is a new set
    assert settings.settings_id(app, "public2", {"token": "s3cret"}) != made
    os.unlink(app.settings_key)
    assert settings.settings_id(app, "public", {"token": "s3cret"}, create=True) != made  # another key, another id
