# Copyright: asgi.deploy maintainers
# MIT License (see LICENSE)
"""Action for asgi.deploy.state: read the host, and with ``group`` put it in that inventory group
when it needs a change, so that the next plays of a run only see the hosts that do."""

from __future__ import annotations

from ansible.plugins.action import ActionBase


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = True

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        args = dict(self._task.args)
        group = args.pop("group", "")
        result.update(self._execute_module("asgi.deploy.state", module_args=args, task_vars=task_vars))
        if group and result.get("needs") and not result.get("failed"):
            # What group_by does: the strategy adds the host to the group.
            result["add_group"] = group
            result["parent_groups"] = ["all"]
        return result
