"""Building a release on a host: the wheelhouse checked, the manifest last, nothing half built left."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import zipfile

import pytest
from ansible_collections.asgi.deploy.plugins.module_utils import build
from ansible_collections.asgi.deploy.plugins.module_utils.host import read_text, swap_link
from fakes import make_release


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
    build.unpack_wheelhouse(wheelhouse_tar(tmp_path / "w.tar", {"a-1.0-py3-none-any.whl": b"wheel"}), str(target))
    assert sorted(os.listdir(target)) == ["SHA256SUMS", "a-1.0-py3-none-any.whl"]
    assert [n for n in os.listdir(tmp_path / "wheels") if n.startswith(".")] == []


def test_a_corrupt_wheel_in_the_wheelhouse_is_refused_and_nothing_is_left(tmp_path):
    sums = "%s  a-1.0-py3-none-any.whl\n" % ("0" * 64)
    with pytest.raises(build.BuildFailed, match="does not match its SHA256SUMS"):
        build.unpack_wheelhouse(
            wheelhouse_tar(tmp_path / "w.tar", {"a-1.0-py3-none-any.whl": b"wheel"}, sums), str(tmp_path / "wheels/k1")
        )
    assert os.listdir(tmp_path / "wheels") == []


def test_a_wheelhouse_member_with_a_path_is_refused(tmp_path):
    with tarfile.open(tmp_path / "w.tar", "w") as tar:
        info = tarfile.TarInfo("../evil.whl")
        tar.addfile(info, io.BytesIO(b""))
    with pytest.raises(build.BuildFailed, match="unexpected member"):
        build.unpack_wheelhouse(str(tmp_path / "w.tar"), str(tmp_path / "wheels/k1"))


def test_uv_comes_out_of_its_wheel(tmp_path):
    wheel = tmp_path / "uv-0.9.0-py3-none-manylinux_2_17_x86_64.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("uv-0.9.0.data/scripts/uv", b"#!uv")
    path = build.install_uv(str(wheel), str(tmp_path / "tools/uv-0.9.0"), "0.9.0")
    assert read_text(path) == "#!uv" and os.access(path, os.X_OK)
    assert build.find_wheel(str(tmp_path), "uv") == str(wheel)


class Recorder:
    def __init__(self, fail_step=None):
        self.calls, self.fail_step = [], fail_step

    def __call__(self, argv, step):
        self.calls.append((step, argv))
        if step == self.fail_step:
            raise build.BuildFailed(step, f"{step} failed")
        if step == "venv":
            os.makedirs(argv[-1] + "/bin", exist_ok=True)
        return ""


def builder(app, run, **kwargs):
    return build.Builder(
        app, "1.0.0-aaaa1111", {"release_id": "1.0.0-aaaa1111"}, "demo==1.0\n", niceness=10, run=run, **kwargs
    )


def test_a_build_is_niced_offline_hash_checked_and_the_manifest_comes_last(app, tmp_path):
    wheel = tmp_path / "demo-1.0-py3-none-any.whl"
    wheel.write_bytes(b"app")
    uv_wheel = tmp_path / "wheels/uv-0.9.0-py3-none-any.whl"
    uv_wheel.parent.mkdir()
    with zipfile.ZipFile(uv_wheel, "w") as archive:
        archive.writestr("uv-0.9.0.data/scripts/uv", b"#!uv")
    run = Recorder()
    b = builder(app, run)
    b.build(str(wheel), str(uv_wheel.parent), uv_version="0.9.0")
    assert not os.path.exists(os.path.join(b.dir, "release.json"))
    install = dict(run.calls)["install"]
    assert install[:6] == ["nice", "-n", "10", "ionice", "-c", "3"]
    assert {"--require-hashes", "--offline", "--no-index", "--compile-bytecode"} <= set(install)
    b.finish()
    assert json.loads(read_text(os.path.join(b.dir, "release.json")))["release_id"] == "1.0.0-aaaa1111"
    assert oct(os.stat(b.dir).st_mode & 0o022) == "0o0"


def test_a_failed_install_removes_the_unfinished_release(app, tmp_path):
    wheel = tmp_path / "demo-1.0-py3-none-any.whl"
    wheel.write_bytes(b"app")
    b = builder(app, Recorder(fail_step="venv"), installer="pip")
    with pytest.raises(build.BuildFailed):
        b.build(str(wheel), str(tmp_path))
    assert not os.path.exists(b.dir)


def test_the_import_check_runs_as_the_service_user_in_a_sandbox(app, tmp_path):
    run = Recorder()
    builder(app, run).import_check("demo_app.main", "demo", "demo")
    argv = dict(run.calls)["import check"]
    assert argv[0] == "systemd-run" and "User=demo" in argv and "ProtectSystem=strict" in argv
    assert argv[-1] == "demo_app.main"


def test_prune_keeps_the_newest_and_every_linked_release_and_drops_unfinished_ones(app):
    for day in range(1, 6):
        make_release(app, f"{day}.0-x", built_at=f"2026-11-0{day}T00:00:00Z", key=f"k{day}")
    make_release(app, "6.0-partial", finished=False)
    swap_link(app.link("current"), "1.0-x")
    swap_link(app.link("next"), "2.0-x")
    for key in ("k1", "k2", "k3", "k4", "k5", "old"):
        os.makedirs(os.path.join(app.wheels, key))
    assert build.prune(app, 2, dry_run=True)["removed"] == ["3.0-x", "6.0-partial"]
    assert os.path.isdir(os.path.join(app.releases, "3.0-x"))
    result = build.prune(app, 2)
    assert result["kept"] == ["1.0-x", "2.0-x", "4.0-x", "5.0-x"]
    assert result["wheelhouses_removed"] == ["k3", "old"]
    assert sorted(os.listdir(app.releases)) == ["1.0-x", "2.0-x", "4.0-x", "5.0-x"]


def test_the_service_user_is_created_once(monkeypatch):
    run = Recorder()
    import grp
    import pwd

    monkeypatch.setattr(grp, "getgrnam", lambda name: (_ for _ in ()).throw(KeyError(name)))
    monkeypatch.setattr(pwd, "getpwnam", lambda name: (_ for _ in ()).throw(KeyError(name)))
    assert build.ensure_user("demo", "demo", "demo (asgi.deploy)", run=run)
    assert [argv[0] for _, argv in run.calls] == ["groupadd", "useradd"]
    assert "/usr/sbin/nologin" in run.calls[1][1]
