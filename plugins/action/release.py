# Copyright: asgi.deploy maintainers
# MIT License (see LICENSE)
"""Action for asgi.deploy.release: the controller half of a host's build.

Builds (or finds, by content) the offline wheelhouse for the host's Python and
platform on the controller, ships the app wheel and the wheels the host's wheel
store lacks, then runs the module, all in one task. A small app wheel goes
inside the module call: a new release with an unchanged lock is then one round
trip (no temporary directory made, filled and removed on the host).
"""

from __future__ import annotations

import base64
import os

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase
from ansible_collections.asgi.deploy.plugins.plugin_utils.artifacts import BadInput, shipment, wheelhouse

TARGET_KEYS = ("python", "full", "machine", "glibc", "sys_platform")
# Up to this size the app wheel travels inside the module call, base64-encoded (a third more bytes, no transfer).
INLINE_WHEEL_BYTES = 512 * 1024


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = True

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        args = dict(self._task.args)
        artifacts = args.pop("artifacts", None)
        state = args.pop("host_state", None) or {}
        supported = [str(v) for v in args.pop("supported_pythons", None) or []]
        if not isinstance(artifacts, dict) or "release" not in artifacts:
            raise AnsibleActionFail("release: artifacts (what the plan step identified) is required")
        release = artifacts["release"]
        module_args = {
            "release_id": release["release_id"],
            "manifest": release,
            "uv_version": artifacts.get("uv_version", ""),
            **args,
        }
        warnings = []
        kept = {r.get("id") for r in state.get("kept", []) if r.get("interpreter", True)}
        transfers, shipped = {}, {}
        if release["release_id"] not in kept and args.get("phase", "all") != "finish":
            house = self.wheelhouse(artifacts, state, supported, args.get("run", ""))
            module_args.update(wheelhouse_key=house["key"], requirements=house["requirements"])
            warnings = house.get("warnings", [])
            if house["key"] not in state.get("wheelhouses", []):
                transfers["wheelhouse_tarball"], shipped["wheels"] = shipment(house, state.get("wheel_store", []))
            wheel = artifacts["app_wheel"]["path"]
            shipped["app_wheel_bytes"] = os.path.getsize(wheel)
            if shipped["app_wheel_bytes"] <= INLINE_WHEEL_BYTES:
                with open(wheel, "rb") as data:
                    module_args.update(app_wheel=os.path.basename(wheel),
                                       app_wheel_data=base64.b64encode(data.read()).decode("ascii"))  # fmt: skip
            else:
                transfers["app_wheel"] = wheel
        if transfers and not self._task.check_mode:
            tmpdir = self._connection._shell.tmpdir or self._make_tmp_path()
            remote = []
            for key, local in transfers.items():
                path = self._connection._shell.join_path(tmpdir, os.path.basename(local))
                self._transfer_file(local, path)
                module_args[key] = path
                remote.append(path)
            self._fixup_perms2([tmpdir, *remote])
        result.update(self._execute_module("asgi.deploy.release", module_args=module_args, task_vars=task_vars))
        if shipped:
            house = transfers.get("wheelhouse_tarball")
            result["shipped"] = {
                "wheels": shipped.get("wheels", []),
                "wheelhouse_bytes": os.path.getsize(house) if house else 0,
                "app_wheel_bytes": shipped["app_wheel_bytes"],
                "app_wheel_inline": "app_wheel" not in transfers,
            }
        if warnings:
            result["warnings"] = result.get("warnings", []) + warnings
        self._remove_tmp_path(self._connection._shell.tmpdir)
        return result

    @staticmethod
    def wheelhouse(artifacts, state, supported, run):
        """The wheelhouse for the host's Python and platform (built on the controller once, by content; checked
        against the lock once per run)."""
        target = state.get("python") or {}
        if not target:
            raise AnsibleActionFail("release: the host's Python is unknown (read the host state first)")
        if supported and target.get("python") not in supported:
            raise AnsibleActionFail(
                "release: the host runs Python {} (glibc {}); supported: {} (release_supported_pythons)".format(
                    target.get("full"), target.get("glibc"), ", ".join(supported)
                )
            )
        try:
            return wheelhouse(artifacts, {k: target.get(k, "") for k in TARGET_KEYS}, run)
        except BadInput as problem:
            raise AnsibleActionFail(f"release: {problem}") from None
