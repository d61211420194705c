"""Controller and host helpers of the release role, on small local fixtures."""

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import build_artifacts as ba
import pytest

FILES = Path(__file__).resolve().parents[2] / "roles/release/files"

HASH_A = "a" * 64
LOCK = f"""# header
fastapi==0.165.0 \\
    --hash=sha256:{HASH_A}
    # via -r requirements.in
uvloop==0.23.0 ; sys_platform != 'win32' \\
    --hash=sha256:{"b" * 64} \\
    --hash=sha256:{"c" * 64}
"""


def write(tmp_path, text, name="requirements.lock"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_lock_entries_are_parsed_with_markers_and_every_hash(tmp_path):
    fastapi, uvloop = ba.parse_lock(write(tmp_path, LOCK))
    assert fastapi == {"name": "fastapi", "version": "0.165.0", "marker": "", "hashes": [HASH_A]}
    assert uvloop["marker"] == "sys_platform != 'win32'"
    assert len(uvloop["hashes"]) == 2


def test_lock_without_hashes_is_refused_naming_the_packages(tmp_path):
    with pytest.raises(ba.BadInput, match="without hashes: fastapi, uvloop"):
        ba.parse_lock(write(tmp_path, "fastapi==0.165.0\nuvloop==0.23.0\n"))


def test_unpinned_requirement_is_refused(tmp_path):
    with pytest.raises(ba.BadInput, match=r"not pinned with ==: fastapi>=0\.1"):
        ba.parse_lock(write(tmp_path, f"fastapi>=0.1 --hash=sha256:{HASH_A}\n"))


def test_markers_are_evaluated_for_the_target_python_not_the_controller():
    assert ba.marker_applies("python_version < '3.12'", "3.11")
    assert not ba.marker_applies("python_version < '3.12'", "3.13")
    assert ba.marker_applies("sys_platform != 'win32'", "3.13")


def test_platform_tags_cover_every_manylinux_up_to_the_host_glibc():
    tags = ba.platform_tags("x86_64", "2.36")
    assert tags[0] == "manylinux_2_36_x86_64"
    assert "manylinux_2_17_x86_64" in tags
    assert "manylinux2014_x86_64" in tags
    assert "manylinux_2_37_x86_64" not in tags


def test_wheelhouse_with_a_wheel_the_lock_does_not_allow_is_refused(tmp_path):
    wheel = tmp_path / "fastapi-0.165.0-py3-none-any.whl"
    wheel.write_bytes(b"tampered")
    digest = hashlib.sha256(b"tampered").hexdigest()
    (tmp_path / "SHA256SUMS").write_text(f"{digest}  {wheel.name}\n")
    reqs = [{"name": "fastapi", "version": "0.165.0", "marker": "", "hashes": [HASH_A]}]
    with pytest.raises(ba.BadInput, match="does not match the hashes"):
        ba.verify_wheelhouse(tmp_path, reqs)
    reqs[0]["hashes"].append(digest)
    ba.verify_wheelhouse(tmp_path, reqs)


def make_release(releases, name, built_at, finished=True, key=""):
    path = releases / name
    (path / "venv").mkdir(parents=True)
    if finished:
        (path / "release.json").write_text(json.dumps({"built_at": built_at, "wheelhouse_key": key}))
    return path


def prune(tmp_path, *args):
    cmd = [sys.executable, str(FILES / "prune_releases.py"), "--releases", str(tmp_path / "releases"), *args]
    return json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)


def test_prune_keeps_the_newest_and_the_linked_releases_and_drops_unfinished(tmp_path):
    releases = tmp_path / "releases"
    for day in range(1, 6):
        make_release(releases, f"{day}.0-x", f"2026-11-0{day}T00:00:00Z")
    make_release(releases, "6.0-partial", "", finished=False)
    (tmp_path / "current").symlink_to("releases/1.0-x")
    result = prune(tmp_path, "--keep", "2", "--protect-link", str(tmp_path / "current"))
    assert result["kept"] == ["1.0-x", "4.0-x", "5.0-x"]
    assert result["removed"] == ["2.0-x", "3.0-x", "6.0-partial"]
    assert sorted(p.name for p in releases.iterdir()) == ["1.0-x", "4.0-x", "5.0-x"]


def test_prune_dry_run_removes_nothing_and_drops_unused_wheelhouses(tmp_path):
    releases = tmp_path / "releases"
    make_release(releases, "1.0-x", "2026-11-01T00:00:00Z", key="old")
    make_release(releases, "2.0-x", "2026-11-02T00:00:00Z", key="new")
    make_release(releases, "3.0-x", "2026-11-03T00:00:00Z", key="new")
    for key in ("old", "new"):
        (tmp_path / "wheels" / key).mkdir(parents=True)
    args = ("--keep", "2", "--wheels", str(tmp_path / "wheels"))
    assert prune(tmp_path, *args, "--dry-run")["removed"] == ["1.0-x", "old"]
    assert (releases / "1.0-x").exists()
    prune(tmp_path, *args)
    assert sorted(p.name for p in (tmp_path / "wheels").iterdir()) == ["new"]


def fake_uv(tmp_path, monkeypatch):
    """A `uv build` that writes a wheel named after the source's version file and counts its calls."""
    calls = tmp_path / "calls"
    uv = tmp_path / "bin/uv"
    uv.parent.mkdir()
    uv.write_text(
        "#!/bin/sh\n"
        f'echo build >> "{calls}"\n'
        'out=$5; src=$6; v=$(cat "$src/VERSION"); printf %s "$v" > "$out/app-1.0-py3-none-any.whl"\n'
    )
    uv.chmod(0o755)
    monkeypatch.setenv("PATH", f"{uv.parent}:/usr/bin:/bin")
    return calls


def test_the_wheel_is_built_once_per_source_content_and_never_shared_across_sources(tmp_path, monkeypatch):
    calls = fake_uv(tmp_path, monkeypatch)
    sources = {}
    for name, content in (("good", "good"), ("broken", "broken")):
        src = tmp_path / name
        (src / "__pycache__").mkdir(parents=True)
        (src / "pyproject.toml").write_text("[project]\n")
        (src / "VERSION").write_text(content)
        sources[name] = src
    out = tmp_path / "cache/dist/1.0"
    first = ba.build_app_wheel(sources["good"], out)
    (sources["good"] / "__pycache__/x.pyc").write_text("ignored")
    again = ba.build_app_wheel(sources["good"], out)
    other = ba.build_app_wheel(sources["broken"], out)  # same version, other source
    assert first == again
    assert calls.read_text().count("build") == 2
    assert first.read_text() == "good"
    assert other.read_text() == "broken"
    assert first != other
    (sources["good"] / "VERSION").write_text("changed")
    assert ba.build_app_wheel(sources["good"], out).read_text() == "changed"
