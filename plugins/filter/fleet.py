# Copyright: asgi.deploy maintainers
# MIT License (see LICENSE)
"""Filters over the state of every host of a run (see plugins/plugin_utils/fleet.py)."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError
from ansible_collections.asgi.deploy.plugins.plugin_utils import fleet


def rollback_plan(states, version=""):
    try:
        return fleet.rollback_plan(dict(states), str(version or ""))
    except fleet.FleetError as exc:
        raise AnsibleFilterError(str(exc)) from None


def status_table(states):
    return fleet.status_table(dict(states))


def dead_run(holder):
    return fleet.dead_run(dict(holder) if holder else None)


class FilterModule:
    def filters(self):
        return {"rollback_plan": rollback_plan, "status_table": status_table, "dead_run": dead_run}
