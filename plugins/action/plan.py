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

from ansible import constants as C
from ansible.errors import AnsibleActionFail, AnsibleError
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.plugins.action import ActionBase
from ansible.utils.vars import load_extra_vars
from ansible_collections.asgi.deploy.plugins.plugin_utils import options as opts
from ansible_collections.asgi.deploy.plugins.plugin_utils.artifacts import BadInput, identify
from ansible_collections.asgi.deploy.plugins.plugin_utils.messages import grouped_problems
from ansible_collections.asgi.deploy.plugins.plugin_utils.processes import alive_runs, controller_id

VERSION = re.compile(r"^[0-9A-Za-z][0-9A-Za-z.+_-]{0,63}$")
# A run id job slices share (AWX: the workflow job's id): any short name, as it goes into locks and audit lines.
RUN_ID = re.compile(r"^[0-9A-Za-z][0-9A-Za-z._-]{0,63}$")
RELEASE = re.compile(r"^[0-9A-Za-z][0-9A-Za-z.+_-]{0,63}-[0-9a-f]{8}$")
SERIAL = re.compile(r"^[1-9][0-9]*%?$")
OPERATIONS = (
    "deploy", "rollback", "status", "exec", "logs", "remove", "verify", "check", "report", "proxy", "maintenance",
)  # fmt: skip
ROLES = ("asgi", "release", "service", "rollout", "proxy")
TOOLS_LOCK = os.path.join(opts.ROLES, "release", "files", "uv-requirements.txt")
# What a run is told on the command line: -e asgi_<name>=..., or -e <name>=... (on the command line only:
# an unprefixed variable of a shared inventory must never steer a run).
RUN_INPUTS = {
    "version": "",
    "serial": None,
    "strategy": None,
    "on_failure": None,
    "converge": False,
    "force_unlock": "",
    "lock_wait": 0,
    "allow_dirty": False,
    "format": "text",
    "app_wheel": "",
    "app_source": "",
    "cmd": "",
    "once": False,
    "timeout": 300,
    "since": "-1h",
    "grep": "",
    "lines": 200,
    "purge": False,
    "rebuild": False,
    "period": "week",
    "report": "",
    "maintenance": "",
    "git_ref": "",
    "run_id": "",
    "release": "",
}
# Run inputs whose long name is not asgi_<name>.
PREFIXED = {"on_failure": "rollout_on_failure"}
# Operations that never hand a host a secret (they read hosts, or run what a host already has): an on-call engineer
# runs them without the vault password, so a vaulted option (a secret, a key) is left unread there, never an error.
WITHOUT_SECRETS = ("status", "logs", "report", "verify", "exec", "remove", "rollback", "maintenance")
# What a run does to hosts that only the person (or job) running it may say: never from a shared inventory.
COMMAND_LINE_ONLY = ("force_unlock", "purge", "cmd", "run_id", "release")
TRUE = ("1", "true", "yes", "on")


def inventory_problems(task_vars, cli):
    """Run inputs that may only come from the command line but are set elsewhere (an inventory, say)."""
    problems = []
    for name in COMMAND_LINE_ONLY:
        prefixed = "asgi_" + name
        if prefixed in task_vars and prefixed not in cli and name not in cli:
            problems.append(
                f"{prefixed} is set outside the command line (an inventory or a play): it may only be given with -e, "
                "for one run; remove it there"
            )
    raw = cli.get("_raw_params")
    if raw:
        problems.append(
            f"the command line has -e text that is not key=value ({raw!r}): ansible-playbook splits -e key=value at "
            "spaces. Quote a value with spaces inside the -e (-e 'asgi_cmd=\"python -m app.task --dry-run\"'), give "
            'lists without spaces (-e asgi_serial=1,25%,100%), or JSON (-e \'{"asgi_serial": [1, "25%", "100%"]}\')'
        )
    return problems


def serial_of(serial):
    """A batch size, a percentage, or a list of them: given as a list, or as text with commas (1,25%,100%)."""
    if isinstance(serial, str) and "," in serial:
        return [int(item) if item.strip().isdigit() else item.strip() for item in serial.split(",") if item.strip()]
    return serial


def run_inputs(task_vars, cli, template=lambda value: value):
    """Each run input: ``asgi_<name>`` given with -e, else ``<name>`` given with -e, else ``asgi_<name>`` from any
    other variable source (the inventory, say), else its default. ``on_failure``'s long name is the rollout role's
    option ``rollout_on_failure`` (``asgi_on_failure`` is the failure notification). Values from variables
    are templated (``asgi_version: "{{ release_version }}"`` in a play)."""
    found = {}
    for name, default in RUN_INPUTS.items():
        prefixed = PREFIXED.get(name, "asgi_" + name)
        if prefixed in cli:
            found[name] = cli[prefixed]
        elif name in cli:
            found[name] = cli[name]
        elif prefixed in task_vars and name not in ("app_wheel", "app_source"):
            found[name] = template(task_vars[prefixed])
        else:
            found[name] = default
    return found


def run_id(now=None):
    """16 hex digits that sort by start time (milliseconds, then chance): of two runs that meet on a host, the one
    that started first goes on (see plugin_utils.moves.lock_round)."""
    millis = int((time.time() if now is None else now) * 1000)
    return f"{millis:012x}{secrets.token_hex(2)}"


def _bool(value):
    return value if isinstance(value, bool) else str(value).strip().lower() in TRUE


def check_serial(serial):
    """Hosts per batch: a number, a percentage, or a list of those (a canary first, say: [1, "25%", "100%"])."""
    batches = serial if isinstance(serial, list) else [serial]
    if not batches or not all(SERIAL.match(str(b)) for b in batches):
        return ["-e asgi_serial must be a number, a percentage or a list of them (-e asgi_serial=1,25%,100%)"]
    return []


def command_line(operation, run):
    """Problems with what the command line says, as sentences."""
    problems = []
    version = str(run["version"] or "")
    if operation == "deploy" and version and not VERSION.match(version):
        problems.append(f"give -e asgi_version=V ([0-9A-Za-z.+_-], 64 characters at most) or auto, not {version!r}")
    if run["git_ref"] and (run["app_wheel"] or not re.match(r"^[\w./@^~+-]{1,200}$", str(run["git_ref"]))):
        problems.append("-e asgi_git_ref names a commit of the app's source (a tag, a branch, a sha), not with a wheel")
    if operation == "rollback" and version and not VERSION.match(version):
        problems.append(f"-e asgi_version={version!r} is not a release version")
    problems += slices(operation, run)
    if run["strategy"] not in ("handover", "restart"):
        problems.append("-e asgi_strategy must be handover or restart")
    problems += check_serial(run["serial"])
    if run["on_failure"] not in ("stop", "revert"):
        problems.append("-e rollout_on_failure (or on_failure) must be stop or revert")
    if str(run["force_unlock"]).lower() in TRUE:
        problems.append(
            "-e asgi_force_unlock names the run whose lock to clear (status.yml shows it), or all; not true"
        )
    if run["format"] not in ("text", "json"):
        problems.append("-e asgi_format must be text or json")
    if run["period"] not in ("day", "week"):
        problems.append("-e asgi_period must be day or week")
    if operation == "maintenance" and str(run["maintenance"]).lower() not in ("on", "off", "true", "false"):
        problems.append("give -e asgi_maintenance=on (or off)")
    if operation == "exec" and not str(run["cmd"]).strip():
        problems.append("give the command to run: -e asgi_cmd='python -m django showmigrations'")
    for name in ("lock_wait", "timeout", "lines"):
        if not str(run[name]).isdigit():
            problems.append(f"-e asgi_{name} must be a number of {'lines' if name == 'lines' else 'seconds'}")
    return problems


def slices(operation, run):
    """Problems with a run split into job slices: each slice is told the same -e asgi_run_id (and, to pin what
    every slice ships or goes back to, -e asgi_release)."""
    problems = []
    run_id, release = str(run["run_id"] or ""), str(run["release"] or "")
    if run_id and not RUN_ID.match(run_id):
        problems.append(f"-e asgi_run_id is a name of [0-9A-Za-z._-], 64 characters at most, not {run_id!r}")
    if release and not RELEASE.match(release):
        problems.append(
            f"-e asgi_release names a release id (VERSION-xxxxxxxx, as status.yml shows it), not {release!r}"
        )
    if release and operation not in ("deploy", "rollback", "check"):
        problems.append(f"-e asgi_release pins what a deploy or a rollback moves to; {operation} takes none")
    if operation == "rollback" and run_id and not (release or run["version"]):
        # Each slice reads only its own hosts' history: one step back could differ from slice to slice.
        problems.append("a rollback in job slices names where it goes, the same in every slice: -e asgi_release=R")
    return problems


def pipelining(task_vars):
    """Whether this run pipelines module calls (ansible.cfg, ANSIBLE_PIPELINING or ansible_pipelining)."""
    if "ansible_pipelining" in task_vars:
        return _bool(task_vars["ansible_pipelining"])
    return bool(C.config.get_config_value("ANSIBLE_PIPELINING", variables=task_vars))


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        task_vars = task_vars or {}
        operation = self._task.args.get("operation", "deploy")
        if operation not in OPERATIONS:
            raise AnsibleActionFail("plan: operation must be one of {}".format(", ".join(OPERATIONS)))
        hosts = list(task_vars.get("ansible_play_hosts_all") or task_vars.get("ansible_play_hosts") or [])
        specs = {role: opts.role_spec(role) for role in ROLES}
        per_host, problems = {}, []
        for host in hosts:
            found, host_problems = self.host_options(host, specs, task_vars, operation)
            problems += [f"{host}: {p}" for p in host_problems]
            per_host[host] = found
        first = per_host[hosts[0]] if hosts else {}
        run = self.run_description(operation, first, task_vars)
        cli = load_extra_vars(self._loader)
        problems = inventory_problems(task_vars, cli) + command_line(operation, run) + grouped_problems(problems)
        if operation in ("proxy", "maintenance") and not all(found.get("asgi_proxy") for found in per_host.values()):
            problems.append(f"{operation}: set asgi_proxy: true for the app (its front door is the proxy role's)")
        if problems:
            result.update(failed=True, msg=f"{operation}: bad input, nothing was changed", problems=problems)
            return result
        result["run"] = run
        # This controller's ansible processes, for the hosts to tell a dead run's lock from a live one's.
        result["alive"] = alive_runs()
        if operation in ("deploy", "rollback") and not pipelining(task_vars):
            result["warnings"] = [
                "pipelining is off: every task of this run costs each host an extra round trip (a file copy); turn "
                "it on in ansible.cfg ([connection] pipelining = True, see the collection's docs/ansible.cfg)"
            ]
        result["front_door"] = {host: opts.front_door_gate(found) for host, found in per_host.items()}
        templates = opts.templates_digest()
        result["settings"] = {host: opts.settings_digest(found, templates) for host, found in per_host.items()}
        if operation in ("deploy", "check"):
            try:
                result["artifacts"] = self.artifacts(first, run, base=task_vars.get("inventory_dir") or os.getcwd())
            except BadInput as problem:
                result.update(failed=True, msg=f"{operation}: the app cannot be shipped", problems=[str(problem)])
                return result
            result["changed"] = result["artifacts"].pop("changed")
            shipped = result["artifacts"]["release"]["release_id"]
            if run["release"] and shipped != run["release"]:
                result.update(
                    failed=True,
                    msg=f"{operation}: this slice would ship another release than the run pins, nothing was changed",
                    problems=[
                        f"the lock and the app make release {shipped} here; -e asgi_release pins {run['release']}",
                        "give every slice the same app (one -e asgi_app_wheel) and the same lock",
                    ],
                )
        return result

    def run_description(self, operation, options, task_vars):
        run = run_inputs(task_vars, load_extra_vars(self._loader), self._templar.template)
        run["serial"] = serial_of(run["serial"])
        defaults = {"serial": "100%" if operation == "rollback" else 1}
        run["serial"] = run["serial"] if run["serial"] is not None else defaults.get("serial", 1)
        run["strategy"] = str(run["strategy"] or options.get("rollout_strategy") or "handover")
        run["on_failure"] = str(run["on_failure"] or options.get("rollout_on_failure") or "stop")
        for name in ("converge", "allow_dirty", "once", "purge", "rebuild"):
            run[name] = _bool(run[name])
        run["force_unlock"] = str(run["force_unlock"] or "")
        return {
            **run,
            "id": run["run_id"] or run_id(),
            "operation": operation,
            "actor": "{}@{}".format(os.environ.get("USER") or getpass.getuser(), socket.gethostname()),
            "controller": socket.gethostname(),
            "controller_id": controller_id(),
            # This runs in a worker forked by ansible-playbook: the parent is the run.
            "pid": os.getppid(),
            "started": round(time.time(), 3),
        }

    def host_options(self, host, specs, task_vars, operation):
        """Every option of every role for ``host``: validated against the specs, and checked."""
        hostvars = task_vars["hostvars"][host]
        current = task_vars.get("inventory_hostname")
        here = task_vars["hostvars"][current] if current else {}

        def value_of(name):
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

        vaulted = []

        def lookup(name):
            try:
                return value_of(name)
            except AnsibleError as exc:
                if "vault" not in str(exc).lower():
                    raise
                vaulted.append(name)
                return None

        problems, found = opts.removed(lookup), {}
        for role, spec in specs.items():
            if role != "asgi":
                # Entry-point inputs (a version, a digest) come from the run, not the inventory.
                spec = {name: {k: v for k, v in option.items() if k != "required"} for name, option in spec.items()}
            given = {name: value for name, value in ((n, lookup(n)) for n in spec) if value is not None}
            outcome = ArgumentSpecValidator(spec).validate(given, validate_role_argument_spec=True)
            problems += [f"{msg} (role {role})" for msg in outcome.error_messages]
            found.update(opts.values(spec, lambda n, given=given: given.get(n)))
            found.update({k: v for k, v in outcome.validated_parameters.items() if k in given})
        if vaulted and operation not in WITHOUT_SECRETS:
            problems.append(
                "{} {} vaulted and this run has no vault password: give it (--ask-vault-pass, --vault-password-file "
                "or --vault-id)".format(", ".join(sorted(set(vaulted))), "is" if len(set(vaulted)) == 1 else "are")
            )
        if not problems:
            problems += opts.check(found, operation)
        return found, problems

    def artifacts(self, options, run, base=""):
        """The release these options make. Relative paths from the inventory are the inventory's (``base``, its
        directory), wherever ansible-playbook runs; paths given with -e are the command line's, as typed."""

        def inventory_path(value):
            return os.path.join(base, value) if value and base and not os.path.isabs(value) else value

        source = inventory_path(options.get("asgi_app_source") or "")
        wheel = inventory_path(options.get("asgi_app_wheel") or "")
        if run["app_wheel"]:
            source, wheel = "", run["app_wheel"]
        elif run["app_source"]:
            source, wheel = run["app_source"], ""
        if not options.get("asgi_lockfile"):
            raise BadInput("set asgi_lockfile (the app's hashed lock) in the inventory")
        lockfile = inventory_path(options["asgi_lockfile"])
        build = options.get("asgi_build") or ""
        # No version, or auto: the app's own (its metadata's; git's with hatch-vcs or setuptools-scm).
        version = None if str(run["version"] or "auto") == "auto" else str(run["version"])
        return identify(
            options["asgi_app"],
            version,
            Path(lockfile),
            Path(TOOLS_LOCK),
            options.get("release_cache_dir") or "~/.cache/asgi.deploy",
            source=Path(source) if source else None,
            wheel=Path(wheel) if wheel else None,
            git_sha=options.get("release_git_sha") or "",
            worker_class=options.get("service_worker_class") or "uvicorn_worker.UvicornWorker",
            allow_dirty=run["allow_dirty"],
            build="" if build.startswith("tasks:") else build,
            git_ref=str(run["git_ref"] or ""),
        )
