"""Building a release on a host: the wheelhouse checked, the manifest last, nothing half built left."""

from __future__ import annotations

import hashlib
import io
import json
import os
import sys
import tarfile
import zipfile

import pytest
from ansible_collections.asgi.deploy.plugins.module_utils import build
from ansible_collections.asgi.deploy.plugins.module_utils.host import read_text, swap_link, write_atomic
from ansible_collections.asgi.deploy.tests.unit.plugins.fakes import FakeRun, make_app, make_release


def wheelhouse_tar(path, files, sums=None):
    with tarfile.open(path, "w") as tar:
        listed = (
            sums
            if sums is not None
            else "".join(f"{hashlib.sha256(data).hexdigest()}  {name}\n" for name, data in files.items())
        )
        for name, data in {**files, "SHA256SUMS": listed.encode()}.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return str(path)


def test_a_wheelhouse_is_unpacked_whole_and_checked(tmp_path):
    target = tmp_path / "wheels/k1"
    tarball = wheelhouse_tar(tmp_path / "w.tar", {"a-1.0-py3-none-any.whl": b"wheel"})
    build.unpack_wheelhouse(tarball, str(target), str(tmp_path / "store"))
    assert sorted(os.listdir(target)) == ["SHA256SUMS", "a-1.0-py3-none-any.whl"]
    assert [n for n in os.listdir(tmp_path / "wheels") if n.startswith(".")] == []
    assert os.listdir(tmp_path / "store") == [hashlib.sha256(b"wheel").hexdigest()]


def test_a_wheelhouse_takes_the_wheels_it_was_not_sent_from_the_store_and_shares_them(tmp_path):
    store = str(tmp_path / "store")
    first = {"a-1.0-py3-none-any.whl": b"a1", "b-1.0-py3-none-any.whl": b"b1"}
    build.unpack_wheelhouse(wheelhouse_tar(tmp_path / "1.tar", first), str(tmp_path / "wheels/k1"), store)
    both = {"a-1.0-py3-none-any.whl": b"a1", "b-2.0-py3-none-any.whl": b"b2"}
    sums = "".join(f"{hashlib.sha256(data).hexdigest()}  {name}\n" for name, data in both.items())
    sent = {"b-2.0-py3-none-any.whl": b"b2"}
    build.unpack_wheelhouse(wheelhouse_tar(tmp_path / "2.tar", sent, sums), str(tmp_path / "wheels/k2"), store)
    assert sorted(os.listdir(tmp_path / "wheels/k2")) == ["SHA256SUMS", *sorted(both)]
    kept = os.stat(tmp_path / "wheels/k1/a-1.0-py3-none-any.whl")
    assert os.stat(tmp_path / "wheels/k2/a-1.0-py3-none-any.whl").st_ino == kept.st_ino
    assert kept.st_nlink == 3
    assert len(os.listdir(store)) == 3
    # k1 pruned: the next wheelhouse put in place drops the stored wheels only k1 linked to (b 1.0), not a stranger.
    build.remove_tree(str(tmp_path / "wheels/k1"))
    with open(os.path.join(store, "notes"), "w") as stranger:
        stranger.write("not a wheel")
    build.unpack_wheelhouse(wheelhouse_tar(tmp_path / "3.tar", {}, sums), str(tmp_path / "wheels/k3"), store)
    assert sorted(os.listdir(store)) == sorted([*(hashlib.sha256(d).hexdigest() for d in both.values()), "notes"])


def test_a_wheel_neither_sent_nor_stored_fails_the_unpack_and_leaves_nothing(tmp_path):
    sums = f"{hashlib.sha256(b'a1').hexdigest()}  a-1.0-py3-none-any.whl\n"
    with pytest.raises(build.BuildFailed, match="neither shipped nor in the wheel store"):
        build.unpack_wheelhouse(
            wheelhouse_tar(tmp_path / "w.tar", {}, sums), str(tmp_path / "wheels/k1"), str(tmp_path / "store")
        )
    assert os.listdir(tmp_path / "wheels") == []


def test_a_corrupt_stored_wheel_fails_the_unpack_once_and_is_shipped_again(tmp_path):
    store = str(tmp_path / "store")
    wheels = {"a-1.0-py3-none-any.whl": b"a1"}
    build.unpack_wheelhouse(wheelhouse_tar(tmp_path / "1.tar", wheels), str(tmp_path / "wheels/k1"), store)
    with open(tmp_path / "wheels/k1/a-1.0-py3-none-any.whl", "ab") as wheel:
        wheel.write(b"x")  # the wheelhouse's link: the stored wheel is the same file
    sums = f"{hashlib.sha256(b'a1').hexdigest()}  a-1.0-py3-none-any.whl\n"
    with pytest.raises(build.BuildFailed, match="was corrupt and is removed: run again"):
        build.unpack_wheelhouse(wheelhouse_tar(tmp_path / "2.tar", {}, sums), str(tmp_path / "wheels/k2"), store)
    assert os.listdir(store) == []
    build.unpack_wheelhouse(wheelhouse_tar(tmp_path / "3.tar", wheels), str(tmp_path / "wheels/k2"), store)
    assert os.listdir(store) == [hashlib.sha256(b"a1").hexdigest()]


def test_a_corrupt_wheel_in_the_wheelhouse_is_refused_and_kept_out_of_the_store(tmp_path):
    sums = "%s  a-1.0-py3-none-any.whl\n" % ("0" * 64)
    with pytest.raises(build.BuildFailed, match="does not match its SHA256SUMS"):
        build.unpack_wheelhouse(
            wheelhouse_tar(tmp_path / "w.tar", {"a-1.0-py3-none-any.whl": b"wheel"}, sums),
            str(tmp_path / "wheels/k1"),
            str(tmp_path / "store"),
        )
    assert os.listdir(tmp_path / "wheels") == []
    assert os.listdir(tmp_path / "store") == []


def test_a_wheelhouse_member_with_a_path_is_refused(tmp_path):
    with tarfile.open(tmp_path / "w.tar", "w") as tar:
        info = tarfile.TarInfo("../evil.whl")
        tar.addfile(info, io.BytesIO(b""))
    with pytest.raises(build.BuildFailed, match="unexpected member"):
        build.unpack_wheelhouse(str(tmp_path / "w.tar"), str(tmp_path / "wheels/k1"), str(tmp_path / "store"))


def test_uv_comes_out_of_its_wheel(tmp_path):
    wheel = tmp_path / "uv-0.9.0-py3-none-manylinux_2_17_x86_64.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("uv-0.9.0.data/scripts/uv", b"#!uv")
    path = build.install_uv(str(wheel), str(tmp_path / "tools/uv-0.9.0"), "0.9.0")
    assert read_text(path) == "#!uv" and os.access(path, os.X_OK)
    assert build.find_wheel(str(tmp_path), "uv") == str(wheel)


class Recorder(FakeRun):
    """systemd-run as a build sees it: records each sandboxed command; ``fail_step`` fails; ``venv`` makes one."""

    def __init__(self, fail_step=None, output=""):
        super().__init__()
        self.fail_step, self.output = fail_step, output

    def __call__(self, argv, **kwargs):
        self.calls.append(list(argv))
        unit = argv[argv.index("--unit") + 1] if "--unit" in argv else ""
        if self.fail_step and self.fail_step.replace(" ", "-") in unit:
            return 1, "", self.output or f"{self.fail_step} failed"
        if "venv" in argv[:3] or argv[-2:-1] == ["venv"]:
            os.makedirs(os.path.join(argv[-1], "bin"), exist_ok=True)
        return 0, "", ""

    def step(self, name):
        return next(argv for argv in self.calls if f"-{name.replace(' ', '-')}-" in argv[argv.index("--unit") + 1])


def builder(app, run, **kwargs):
    return build.Builder(
        app, "1.0.0-aaaa1111", {"release_id": "1.0.0-aaaa1111"}, "demo==1.0\n", run, niceness=10, **kwargs
    )


def uv_wheelhouse(tmp_path):
    wheel = tmp_path / "demo-1.0-py3-none-any.whl"
    wheel.write_bytes(b"app")
    uv_wheel = tmp_path / "wheels/uv-0.9.0-py3-none-any.whl"
    uv_wheel.parent.mkdir()
    with zipfile.ZipFile(uv_wheel, "w") as archive:
        archive.writestr("uv-0.9.0.data/scripts/uv", b"#!uv")
    return wheel, uv_wheel.parent


def test_a_build_runs_as_the_build_identity_offline_niced_hash_checked_and_the_manifest_comes_last(app, tmp_path):
    wheel, wheels = uv_wheelhouse(tmp_path)
    run = Recorder()
    b = builder(app, run)
    b.build(str(wheel), str(wheels), uv_version="0.9.0", uid=os.getuid(), gid=os.getgid())
    assert not os.path.exists(os.path.join(b.dir, "release.json"))
    install = run.step("install")
    for prop in ("User=asgi-build-demo", "ProtectProc=invisible", "PrivateNetwork=yes", "ProtectSystem=strict",
                 f"ReadWritePaths={b.dir}", "Nice=10", "IOSchedulingClass=idle",
                 "Environment=SOURCE_DATE_EPOCH=315532800"):  # fmt: skip
        assert prop in install, prop
    assert {"--require-hashes", "--offline", "--no-index", "--compile-bytecode", "--no-config"} <= set(install)
    assert [argv[argv.index("--unit") + 1].split("-")[3] for argv in run.calls] == ["venv", "install", "check"]
    b.seal(os.getuid(), os.getgid())
    b.finish()
    assert json.loads(read_text(os.path.join(b.dir, "release.json")))["release_id"] == "1.0.0-aaaa1111"
    assert oct(os.stat(b.dir).st_mode & 0o022) == "0o0"


def test_a_wheel_sent_inside_the_module_call_lands_in_the_release_by_its_name_only(app, tmp_path):
    wheels = uv_wheelhouse(tmp_path)[1]
    b = builder(app, Recorder())
    b.build("../../etc/demo-1.0-py3-none-any.whl", str(wheels), uv_version="0.9.0", uid=os.getuid(),
            gid=os.getgid(), app_wheel_data=b"inline app")  # fmt: skip
    assert os.listdir(os.path.join(b.dir, "dist")) == ["demo-1.0-py3-none-any.whl"]
    assert read_text(os.path.join(b.dir, "dist", "demo-1.0-py3-none-any.whl")) == "inline app"


def test_a_failed_install_removes_the_unfinished_release(app, tmp_path):
    wheel = tmp_path / "demo-1.0-py3-none-any.whl"
    wheel.write_bytes(b"app")
    b = builder(app, Recorder(fail_step="venv"), installer="pip")
    with pytest.raises(build.BuildFailed, match="venv failed"):
        b.build(str(wheel), str(tmp_path), uid=os.getuid(), gid=os.getgid())
    assert not os.path.exists(b.dir)


UNIT = (
    '[Service]\nUser=demo\nGroup=demo\nEnvironment="SECRET_KEY_FILE=x"\nLoadCredential=k:/etc/x\nStateDirectory=demo\n'
)


def test_the_build_step_has_the_units_environment_but_not_its_user_nor_its_directories(app, tmp_path):
    run = Recorder()
    os.makedirs(builder(app, run).dir)
    builder(app, run).build_step("python -m django collectstatic --noinput", UNIT)
    argv = run.step("build step")
    assert "User=asgi-build-demo" in argv and "User=demo" not in argv and "StateDirectory=demo" not in argv
    assert 'Environment="SECRET_KEY_FILE=x"' in argv and "LoadCredential=k:/etc/x" in argv
    assert argv[-3:] == ["/bin/sh", "-c", "python -m django collectstatic --noinput"]


def test_the_import_check_runs_as_the_unit_runs_it(app):
    run = Recorder()
    builder(app, run).import_check("demo_app.main", UNIT)
    argv = run.calls[0]
    assert "User=demo" in argv and "StateDirectory=demo" in argv and 'Environment="SECRET_KEY_FILE=x"' in argv
    assert argv[-1] == "demo_app.main" and "--pipe" in argv


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ('{"kind": "settings", "error": "KeyError: environment variable DATABASE_URL is not set"}',
         "failed in the app's settings: KeyError: environment variable DATABASE_URL is not set"),
        ('{"kind": "code", "error": "ModuleNotFoundError: No module named \'x\'"}',
         "failed in the app's code: ModuleNotFoundError: No module named 'x'"),
    ],
)  # fmt: skip
def test_a_failed_import_check_says_whether_the_code_or_the_settings_failed_exception_first(app, line, says):
    run = Recorder(
        fail_step="import check",
        output=f"Traceback (most recent call last):\n  File x\nasgi.deploy import check: {line}\n",
    )
    with pytest.raises(build.BuildFailed) as failed:
        builder(app, run).import_check("demo_app.main", UNIT)
    assert str(failed.value).startswith(f"importing demo_app.main {says}")


def test_the_import_check_program_tells_settings_from_code(tmp_path):
    (tmp_path / "needs_env.py").write_text("import os\nURL = os.environ['DATABASE_URL']\n")
    (tmp_path / "broken.py").write_text("import nonexistent_module_xyz\n")
    (tmp_path / "typo.py").write_text("CONFIG = {}\nVALUE = CONFIG['key']\n")
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(tmp_path)}
    import subprocess

    def verdict(module):
        done = subprocess.run(
            [sys.executable, "-c", build.IMPORT_CHECK, module], env=env, capture_output=True, text=True, check=False
        )
        assert done.returncode == 3
        return build.import_failure(module, done.stderr)

    assert "failed in the app's settings: KeyError: environment variable DATABASE_URL is not set" in verdict(
        "needs_env"
    )
    assert "failed in the app's code: ModuleNotFoundError" in verdict("broken")
    assert "failed in the app's code: KeyError" in verdict("typo")  # a dict of its own, not the environment


def test_the_tree_digest_covers_every_files_path_mode_and_content(tmp_path):
    (tmp_path / "a").write_text("one")
    (tmp_path / "d").mkdir()
    (tmp_path / "d/b").write_text("two")
    os.symlink("a", tmp_path / "link")
    digest, lines = build.tree_digest(str(tmp_path))
    assert [line.split()[-1] for line in lines] == ["a", "link", "d/b"]
    (tmp_path / "d/b").write_text("twO")
    assert build.tree_digest(str(tmp_path))[0] != digest
    (tmp_path / "d/b").write_text("two")
    os.chmod(tmp_path / "a", 0o600)
    assert build.tree_digest(str(tmp_path))[0] != digest


def test_prune_keeps_the_newest_and_every_linked_release_and_drops_unfinished_ones(app):
    for day in range(1, 6):
        make_release(app, f"{day}.0-x", built_at=f"2026-11-0{day}T00:00:00Z", key=f"k{day}")
    make_release(app, "6.0-partial", finished=False)
    swap_link(app.link("current"), "1.0-x")
    swap_link(app.link("green"), "2.0-x")  # a slot draining its last connections runs it
    for key in ("k1", "k2", "k3", "k4", "k5", "old"):
        os.makedirs(os.path.join(app.wheels, key))
    assert build.prune(app, 2, dry_run=True)["removed"] == ["3.0-x", "6.0-partial"]
    assert os.path.isdir(os.path.join(app.releases, "3.0-x"))
    result = build.prune(app, 2)
    assert result["kept"] == ["1.0-x", "2.0-x", "4.0-x", "5.0-x"]
    assert result["wheelhouses_removed"] == ["k3", "old"]
    assert sorted(os.listdir(app.releases)) == ["1.0-x", "2.0-x", "4.0-x", "5.0-x"]


def test_the_service_user_is_created_once(monkeypatch):
    run = FakeRun()
    import grp
    import pwd

    def missing(name):
        raise KeyError(name)

    monkeypatch.setattr(grp, "getgrnam", missing)
    monkeypatch.setattr(pwd, "getpwnam", missing)
    assert build.ensure_user(run, "demo", "demo", "demo (asgi.deploy)")
    assert [argv[0] for argv in run.calls] == ["groupadd", "useradd"]
    assert "/usr/sbin/nologin" in run.calls[1]


def test_normalise_drops_uv_cache_records_and_their_record_lines_only(tmp_path):
    info = tmp_path / "venv/lib/python3.11/site-packages/pkg-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "uv_cache.json").write_text('{"timestamp": 1764400000}')
    (info / "RECORD").write_text(
        "pkg/__init__.py,sha256=abc,10\npkg-1.0.dist-info/uv_cache.json,sha256=xyz,27\npkg-1.0.dist-info/RECORD,,\n"
    )
    build.normalise(str(tmp_path / "venv"))
    assert not (info / "uv_cache.json").exists()
    assert (info / "RECORD").read_text() == "pkg/__init__.py,sha256=abc,10\npkg-1.0.dist-info/RECORD,,\n"


def test_an_import_check_that_could_not_start_says_so_with_systemds_exit_code():
    said = build.import_failure("billing.main", "", 217, "asgi-import-check-billing-42.service")
    assert said.startswith("the import check of billing.main could not start (systemd exit code 217")
    assert "journalctl -u asgi-import-check-billing-42.service" in said


def test_each_app_builds_as_its_own_identity_and_a_long_name_stays_within_useradds_limit():
    assert build.build_user("billing") == "asgi-build-billing"
    long_name = build.build_user("a-rather-long-application-name-indeed")
    assert len(long_name) <= 32 and long_name.startswith("asgi-build-") and long_name != build.build_user("other")


def test_what_a_build_may_not_leave_in_a_release_is_named_before_root_touches_it(tmp_path):
    release = tmp_path / "release"
    (release / "venv/bin").mkdir(parents=True)
    (release / "venv/bin/python").symlink_to("/usr/bin/python3")  # a venv's own link: fine
    (release / "release.json.tmp-1").symlink_to("/root/clobbered")  # planted for root to follow
    os.mkfifo(release / "venv/pipe")
    (release / "dist").mkdir()
    (release / "dist/app.whl").write_bytes(b"x")
    os.link(release / "dist/app.whl", release / "dist/twin")
    assert build.unsafe_entries(str(release)) == [
        "dist/app.whl (a file with 2 names)",
        "dist/twin (a file with 2 names)",
        "release.json.tmp-1 (a link outside venv/)",
        "venv/pipe (a FIFO)",
    ]
    made = build.Builder(make_app(tmp_path), "1.0-x", {}, "", FakeRun(), host_dir=str(release))
    with pytest.raises(build.BuildFailed, match=r"may not hold: dist/app\.whl"):
        made.seal()
    assert os.readlink(release / "release.json.tmp-1") == "/root/clobbered"  # left alone, never followed


def test_root_reads_regular_files_only_never_through_a_link_or_a_fifo(tmp_path):
    (tmp_path / "file").write_bytes(b"data")
    (tmp_path / "link").symlink_to(tmp_path / "file")
    os.mkfifo(tmp_path / "fifo")
    assert build.read_regular(str(tmp_path / "file")) == b"data"
    assert build.read_regular(str(tmp_path / "link")) is None
    assert build.read_regular(str(tmp_path / "fifo")) is None  # returns at once: nothing blocks under the flock


def test_a_planted_link_is_never_followed_by_roots_atomic_writes(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("untouched")
    (tmp_path / "release").mkdir()
    target = tmp_path / "release" / "release.json"
    target.symlink_to(victim)
    for pid in range(os.getpid() - 2, os.getpid() + 3):  # the names an old writer would have used
        (tmp_path / "release" / f".release.json.tmp-{pid}").symlink_to(victim)
    write_atomic(str(target), "{}\n")
    assert victim.read_text() == "untouched"
    assert not target.is_symlink() and target.read_text() == "{}\n"


def test_what_root_says_of_a_failed_import_never_holds_a_secret_or_a_password_in_a_url(tmp_path):
    (tmp_path / "db_password").write_text("s3cr3t-Pa55")
    (tmp_path / "secrets.env").write_text("API_TOKEN='tok-123456'\nOTHER=x\n")
    unit = f"[Service]\nLoadCredential=db_password:{tmp_path}/db_password\nEnvironmentFile={tmp_path}/secrets.env\n"
    said = (
        "OperationalError: connection to postgresql://polls:hunter22@db1:5432/polls failed; "
        "password s3cr3t-Pa55 rejected; token tok-123456"
    )
    shown = build.redact(said, build.secret_values(unit))
    assert "hunter22" not in shown and "s3cr3t-Pa55" not in shown and "tok-123456" not in shown
    assert "postgresql://polls:***@db1:5432/polls" in shown and "password *** rejected" in shown
