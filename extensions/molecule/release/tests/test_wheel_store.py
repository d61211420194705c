"""A one-package lock change: each host is sent that package's wheel only, and takes the rest from its wheel store."""

import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest

APP = "/srv/demo"
PROJECT = Path(os.environ["MOLECULE_PROJECT_DIRECTORY"])
SCENARIO = Path(__file__).resolve().parents[1]
WORK = PROJECT / "build/molecule-release"
MOVED = ("click", "8.5.0")


@pytest.fixture(scope="module")
def lock_change(playbook):
    """Build 3.0.0 from the app's lock with click moved to 8.5.0; what each host was sent, by host name."""
    lock, log = WORK / "click-moved.lock", WORK / "shipped.jsonl"
    subprocess.run([PROJECT / "tools/locks.sh", "move", "==".join(MOVED), lock], cwd=PROJECT, check=True)
    log.unlink(missing_ok=True)
    env = {
        "ANSIBLE_CALLBACK_PLUGINS": str(PROJECT / "tools/callbacks"),
        "ANSIBLE_CALLBACKS_ENABLED": "asgi_shipped",
        "ASGI_SHIPPED_LOG": str(log),
    }
    result = playbook(SCENARIO / "lock_change.yml", {"asgi_lockfile": str(lock)}, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    shipped = [json.loads(line) for line in log.read_text().splitlines()]
    return {"lock_sha256": hashlib.sha256(lock.read_bytes()).hexdigest(), "shipped": {s["host"]: s for s in shipped}}


def built(host, lock_sha256):
    """The manifest of the release this host built from the changed lock."""
    for path in host.run("ls -1 %s/releases/*/release.json", APP).stdout.split():
        manifest = json.loads(host.file(path).content_string)
        if manifest["lock_sha256"] == lock_sha256:
            return manifest
    return pytest.fail(f"no release built from the changed lock on {host.backend.get_hostname()}")


def wheel_inodes(host, key):
    """{wheel name: inode} of one wheelhouse."""
    out = host.run("stat -c '%%i %%n' %s/wheels/%s/*.whl", APP, key).stdout
    return {os.path.basename(path): inode for inode, path in (line.split() for line in out.splitlines())}


MOVED_WHEEL = f"{MOVED[0]}-{MOVED[1]}-py3-none-any.whl"


def test_a_one_package_lock_change_sends_that_wheel_and_little_more(host, lock_change):
    sent = lock_change["shipped"][host.backend.get_hostname()]
    assert sent["wheels"] == [MOVED_WHEEL]
    key = built(host, lock_change["lock_sha256"])["wheelhouse_key"]
    size = int(host.run("stat -c %%s %s/wheels/%s/%s", APP, key, MOVED_WHEEL).stdout)
    # The wheel, the wheelhouse's SHA256SUMS and the archive's headers: the target is the changed wheels + 10 %.
    assert sent["wheelhouse_bytes"] <= size * 1.1


def test_every_wheel_is_one_file_in_the_store_that_each_wheelhouse_links_to(host, lock_change):
    new = built(host, lock_change["lock_sha256"])["wheelhouse_key"]
    [old] = [key for key in host.run("ls -1 %s/wheels", APP).stdout.split() if key != new]
    before, after = wheel_inodes(host, old), wheel_inodes(host, new)
    assert set(after) - set(before) == {MOVED_WHEEL}
    assert all(after[name] == inode for name, inode in before.items() if name in after)
    stored = host.run("stat -c %%i %s/wheel-store/*", APP).stdout.split()
    assert sorted(stored) == sorted(set(before.values()) | set(after.values()))


def test_the_release_runs_the_moved_version(host, lock_change):
    release = built(host, lock_change["lock_sha256"])["release_id"]
    code = "import importlib.metadata as m; print(m.version('click'))"
    cmd = host.run("%s/releases/%s/venv/bin/python -c %s", APP, release, code)
    assert cmd.rc == 0, cmd.stderr
    assert cmd.stdout.strip() == MOVED[1]
