"""The release action's controller half: what it sends a host, and how (inside the module call or as files)."""

from __future__ import annotations

import base64
from types import SimpleNamespace

from ansible.plugins.action import ActionBase
from ansible_collections.asgi.deploy.plugins.action import release

RELEASE = {"release_id": "1.0.0-aaaa1111"}
HOUSE = {"key": "py3.11-x86_64-0123", "requirements": "demo==1.0 --hash=sha256:00\n"}


class Shell:
    tmpdir = None

    def join_path(self, *parts):
        return "/".join(parts)


def action(monkeypatch, wheel_bytes, wheelhouses):
    """The action for a host that has the wheelhouse (``wheelhouses``) or not; every host operation recorded."""
    done = []
    act = object.__new__(release.ActionModule)
    act._task = SimpleNamespace(args={}, check_mode=False, async_val=0)
    act._connection = SimpleNamespace(_shell=Shell())
    monkeypatch.setattr(ActionBase, "run", lambda self, tmp=None, task_vars=None: {})
    monkeypatch.setattr(release.ActionModule, "wheelhouse", staticmethod(lambda *a: HOUSE))
    monkeypatch.setattr(release, "shipment", lambda house, store: ("/cache/house.tar", ["click.whl"]))
    monkeypatch.setattr(release.os.path, "getsize", lambda path: wheel_bytes if path.endswith(".whl") else 4096)
    act._make_tmp_path = lambda: done.append("mkdir") or "~/.ansible/tmp/t"
    act._transfer_file = lambda local, remote: done.append(("put", local))
    act._fixup_perms2 = lambda paths: done.append("chmod")
    act._remove_tmp_path = lambda path: done.append("rm") if path else None

    def execute(name, module_args, task_vars):
        done.append(("module", module_args))
        return {"changed": True}

    act._execute_module = execute
    state = {"python": {"python": "3.11"}, "wheelhouses": wheelhouses, "kept": []}
    return act, state, done


def test_a_small_app_wheel_goes_inside_the_module_call_and_the_host_sees_one_round_trip(monkeypatch, tmp_path):
    wheel = tmp_path / "demo-1.0-py3-none-any.whl"
    wheel.write_bytes(b"app wheel")
    act, state, done = action(monkeypatch, 9, [HOUSE["key"]])
    act._task.args = {"artifacts": {"release": RELEASE, "app_wheel": {"path": str(wheel)}}, "host_state": state}
    result = act.run(task_vars={})
    [(what, args)] = done
    assert what == "module" and args["app_wheel"] == wheel.name
    assert base64.b64decode(args["app_wheel_data"]) == b"app wheel"
    assert result["shipped"] == {"wheels": [], "wheelhouse_bytes": 0, "app_wheel_bytes": 9, "app_wheel_inline": True}


def test_a_large_app_wheel_and_a_wheelhouse_the_host_lacks_go_as_files_in_a_temporary_directory(monkeypatch):
    act, state, done = action(monkeypatch, release.INLINE_WHEEL_BYTES + 1, [])
    act._task.args = {"artifacts": {"release": RELEASE, "app_wheel": {"path": "/cache/big.whl"}}, "host_state": state}
    result = act.run(task_vars={})
    assert done[:4] == ["mkdir", ("put", "/cache/house.tar"), ("put", "/cache/big.whl"), "chmod"]
    module_args = done[4][1]
    assert module_args["app_wheel"] == "~/.ansible/tmp/t/big.whl" and "app_wheel_data" not in module_args
    assert module_args["wheelhouse_tarball"] == "~/.ansible/tmp/t/house.tar"
    assert result["shipped"]["wheels"] == ["click.whl"] and not result["shipped"]["app_wheel_inline"]
