# Copyright: asgi.deploy maintainers
# MIT License (see LICENSE)
"""Action for asgi.deploy.plan: everything a run decides on the controller, before it touches a host."""

from __future__ import annotations

import getpass
import os
import re
import secrets
import socket
import time
from pathlib import Path

from ansible.errors import AnsibleActionFail
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.plugins.action import ActionBase
from ansible_collections.asgi.deploy.plugins.plugin_utils import options as opts
from ansible_collections.asgi.deploy.plugins.plugin_utils.artifacts import BadInput, identify
from ansible_collections.asgi.deploy.plugins.plugin_utils.fleet import controller_id

VERSION = re.compile(r"^[0-9A-Za-z][0-9A-Za-z.+_-]{0,63}$")
SERIAL = re.compile(r"^[1-9][0-9]*%?$")
OPERATIONS = ("deploy", "rollback", "status")
ROLES = ("asgi", "release", "service", "rollout")
TOOLS_LOCK = os.path.join(opts.ROLES, "release", "files", "uv-requirements.txt")


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        task_vars = task_vars or {}
        args = self._task.args
        operation = args.get("operation", "deploy")
        if operation not in OPERATIONS:
            raise AnsibleActionFail("plan: operation must be one of {}".format(", ".join(OPERATIONS)))

        problems = self.command_line(operation, args)
        hosts = list(task_vars.get("ansible_play_hosts_all") or task_vars.get("ansible_play_hosts") or [])
        specs = {role: opts.role_spec(role) for role in ROLES}
        templates = opts.templates_digest()
        per_host = {}
        for host in hosts:
            found, host_problems = self.host_options(host, specs, task_vars)
            problems += [f"{host}: {p}" for p in host_problems]
            per_host[host] = found
        if problems:
            raise AnsibleActionFail(
                "{}: bad input, nothing was changed:\n  - {}".format(operation, "\n  - ".join(problems))
            )

        first = per_host[hosts[0]] if hosts else {}
        result["run"] = {
            "id": secrets.token_hex(8),
            "operation": operation,
            "actor": "{}@{}".format(os.environ.get("USER") or getpass.getuser(), socket.gethostname()),
            "controller": socket.gethostname(),
            "controller_id": controller_id(),
            # This runs in a worker forked by ansible-playbook: the parent is the run.
            "pid": os.getppid(),
            "started": round(time.time(), 3),
            "version": str(args.get("version") or ""),
            "strategy": str(args.get("strategy", "handover")),
            "on_failure": str(args.get("on_failure", "stop")),
        }
        result["settings"] = {host: opts.settings_digest(found, templates) for host, found in per_host.items()}
        if operation == "deploy":
            result["artifacts"] = self.artifacts(first, args)
            result["changed"] = result["artifacts"].pop("changed")
        return result

    def command_line(self, operation, args):
        problems = []
        version = str(args.get("version") or "")
        if operation == "deploy" and not VERSION.match(version):
            problems.append(f"give -e version=V ([0-9A-Za-z.+_-], 64 characters at most), not {version!r}")
        if operation == "rollback" and version and not VERSION.match(version):
            problems.append(f"-e version={version!r} is not a release version")
        if str(args.get("strategy", "handover")) not in ("handover", "restart"):
            problems.append("-e strategy must be handover or restart")
        if not SERIAL.match(str(args.get("serial", 1))):
            problems.append("-e serial must be a number or a percentage")
        if str(args.get("on_failure", "stop")) not in ("stop", "revert"):
            problems.append("-e on_failure must be stop or revert")
        return problems

    def host_options(self, host, specs, task_vars):
        """Every option of every role for ``host``: validated against the specs, and checked."""
        hostvars = task_vars["hostvars"][host]
        current = task_vars.get("inventory_hostname")
        here = task_vars["hostvars"][current] if current else {}

        def lookup(name):
            task_value = self._templar.template(task_vars[name]) if name in task_vars else None
            if host == current:
                return task_value
            # Play vars, role params and extra vars outrank the inventory and are the same for every host:
            # where this task sees another value than its own host's inventory has, that value wins.
            if name in here and task_value != here[name]:
                return task_value
            if name in hostvars:
                return hostvars[name]
            # Set in this task's host's inventory only: the other host has the default.
            return None if name in here else task_value

        problems, found = [], {}
        for role, spec in specs.items():
            if role != "asgi":
                # Entry-point inputs (a version, a digest) come from the run, not the inventory.
                spec = {name: {k: v for k, v in option.items() if k != "required"} for name, option in spec.items()}
            given = {name: value for name, value in ((n, lookup(n)) for n in spec) if value is not None}
            outcome = ArgumentSpecValidator(spec).validate(given, validate_role_argument_spec=True)
            problems += [f"{msg} (role {role})" for msg in outcome.error_messages]
            found.update(opts.values(spec, lambda n, given=given: given.get(n)))
            found.update({k: v for k, v in outcome.validated_parameters.items() if k in given})
        if not problems:
            problems += opts.check(found, self._task.args.get("operation", "deploy"))
        return found, problems

    def artifacts(self, options, args):
        source, wheel = options.get("asgi_app_source") or "", options.get("asgi_app_wheel") or ""
        if args.get("app_wheel"):
            source, wheel = "", args["app_wheel"]
        elif args.get("app_source"):
            source = args["app_source"]
        if not options.get("asgi_lockfile"):
            raise AnsibleActionFail(
                "deploy: set asgi_lockfile (the app's hashed lock) in the inventory; nothing was changed"
            )
        try:
            return identify(
                options["asgi_app"],
                str(args.get("version")),
                Path(options["asgi_lockfile"]),
                Path(TOOLS_LOCK),
                options.get("release_cache_dir") or "~/.cache/asgi.deploy",
                source=Path(source) if source else None,
                wheel=Path(wheel) if wheel else None,
                git_sha=options.get("release_git_sha") or "",
                worker_class=options.get("service_worker_class") or "uvicorn_worker.UvicornWorker",
            )
        except BadInput as problem:
            raise AnsibleActionFail(f"deploy: {problem}; nothing was changed") from None
