# Copyright: asgi.deploy maintainers
# MIT License (see LICENSE)
"""The collection's options as its roles declare them, checked on the controller before any host changes.

Each role's ``meta/argument_specs.yml`` (entry point ``main``) is the contract:
types, choices and defaults. ``check`` adds what a spec cannot say (formats,
relations between options), so that a run stops with every problem named
before it touches a host.
"""

from __future__ import annotations

import hashlib
import json
import os
import re

import yaml
from ansible_collections.asgi.deploy.plugins.module_utils.front_door import problems as front_door_problems
from ansible_collections.asgi.deploy.plugins.module_utils.host import RESERVED_BASES, RESERVED_NAMES, UNIT_SUFFIXES

COLLECTION_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
ROLES = os.path.join(COLLECTION_ROOT, "roles")

NAME = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")
ENTRYPOINT = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*(\(\))?$")
LISTEN_TCP = re.compile(r"^(\[[0-9a-fA-F:]+\]|[0-9.]+):[0-9]{1,5}$")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
HEADER = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")
CREDENTIAL_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
# Options of the asgi role that say what to build, not how it runs: not part of the settings (the build
# step is part of the release's id instead).
BUILD_INPUTS = ("asgi_lockfile", "asgi_app_source", "asgi_app_wheel", "asgi_build")
# Hooks and notifications shape a run, not what the units run: changing one is no settings change.
RUN_INPUTS = (
    "asgi_before_switch",
    "asgi_before_switch_on",
    "asgi_after_switch",
    "asgi_after_deploy",
    "asgi_rollback_before_switch",
    "asgi_hook_timeout",
    "asgi_hook_show_output",
    "asgi_on_failure",
)
# Options that are gone, and what to do instead.
REMOVED = {
    "release_package_source": "hosts always install from the wheelhouse the controller builds; put the index in the "
    "lock (--index-url) and the controller downloads from it",
    "release_index_url": "put the index in the lock (--index-url, --extra-index-url or --find-links lines)",
}


def role_spec(role):
    """Options of ``role``'s ``main`` entry point (the asgi role's ``options``: it has no tasks)."""
    with open(os.path.join(ROLES, role, "meta", "argument_specs.yml"), encoding="utf-8") as stream:
        specs = yaml.safe_load(stream)["argument_specs"]
    return (specs.get("main") or specs["options"]).get("options") or {}


def values(spec, lookup):
    """The options of ``spec`` as ``lookup(name)`` gives them, with the spec's defaults for the rest."""
    found = {}
    for name, option in spec.items():
        value = lookup(name)
        if value is None and "default" in option:
            value = option["default"]
        found[name] = value
    return found


def check(options, operation="deploy"):
    """Problems a type check cannot see, as sentences (empty when there are none)."""
    o = options.get
    problems = []
    if operation in ("deploy", "check"):
        missing = [name for name in ("asgi_entrypoint", "asgi_lockfile") if not o(name)]
        if missing:
            problems.append("set {} in the inventory to deploy".format(" and ".join(missing)))
    if o("asgi_app") is not None and not NAME.match(str(o("asgi_app"))):
        problems.append("asgi_app {!r} must match {}".format(o("asgi_app"), NAME.pattern))
    elif str(o("asgi_app") or "").endswith(UNIT_SUFFIXES):
        suffixes = ", ".join(UNIT_SUFFIXES)
        problems.append(f"asgi_app {o('asgi_app')!r} ends like another app's units ({suffixes}): choose another name")
    elif str(o("asgi_app") or "") in RESERVED_NAMES or str(o("asgi_app") or "").startswith("systemd-"):
        problems.append(
            f"asgi_app {o('asgi_app')!r} is the name of a system directory or user (/var/lib, /var/cache, /var/log, "
            "/etc/passwd): a removal could take it for the app's; choose another name"
        )
    base = os.path.normpath(str(o("asgi_base_dir") or "/srv"))
    if base in RESERVED_BASES:
        problems.append(f"asgi_base_dir {base!r} is a system directory: give a directory of its own (/srv, /opt/apps)")
    if o("asgi_entrypoint") and not ENTRYPOINT.match(str(o("asgi_entrypoint"))):
        problems.append(
            "asgi_entrypoint {!r} must look like pkg.module:app or pkg.module:create_app()".format(o("asgi_entrypoint"))
        )
    tcp, unix = o("asgi_listen_tcp") or [], o("asgi_listen_unix") or ""
    if not tcp and not unix:
        problems.append("listen on something: asgi_listen_tcp (ADDRESS:PORT) or asgi_listen_unix (/run/...)")
    bad = [a for a in tcp if not LISTEN_TCP.match(str(a))]
    if bad:
        problems.append("asgi_listen_tcp entries must be ADDRESS:PORT: {}".format(", ".join(map(str, bad))))
    if unix and not str(unix).startswith("/run/"):
        problems.append("asgi_listen_unix must be a path under /run/")
    if o("asgi_readiness_path") is not None and not str(o("asgi_readiness_path")).startswith("/"):
        problems.append("asgi_readiness_path must start with /")
    if o("asgi_drain_timeout") is not None and int(o("asgi_drain_timeout")) < 1:
        problems.append("asgi_drain_timeout must be 1 second or more")
    if o("service_workers") is not None and int(o("service_workers")) < 0:
        problems.append("service_workers must be 0 (from the CPUs) or more")
    secrets = o("service_secrets") or {}
    pattern = ENV_NAME if o("service_secrets_via") == "environment_file" else CREDENTIAL_NAME
    bad = [n for n in secrets if not pattern.match(str(n))]
    if bad:
        problems.append("secret names must match {}: {}".format(pattern.pattern, ", ".join(bad)))
    bad = [str(n) for n in o("service_environment") or {} if not ENV_NAME.match(str(n))]
    if bad:
        problems.append("service_environment names must match {}: {}".format(ENV_NAME.pattern, ", ".join(bad)))
    bad = [str(n) for n in o("asgi_readiness_headers") or {} if not HEADER.match(str(n))]
    if bad:
        problems.append("asgi_readiness_headers names must be HTTP header names: {}".format(", ".join(bad)))
    if o("release_keep") is not None and int(o("release_keep")) < 2:
        problems.append("release_keep must be at least 2 (the live and the previous release)")
    if o("release_build_niceness") is not None and not 0 <= int(o("release_build_niceness")) <= 19:
        problems.append("release_build_niceness must be 0..19")
    user = o("asgi_user") or o("asgi_app")
    if o("release_owner") and user and o("release_owner") == user:
        problems.append(f"release_owner must not be the service user {user}: the app could rewrite its own code")
    return problems + run_problems(options) + (proxy_problems(options) if o("asgi_proxy") else [])


def run_problems(options):
    """Options that shape runs rather than hosts."""
    o = options.get
    if o("asgi_hook_timeout") is not None and int(o("asgi_hook_timeout")) < 0:
        return ["asgi_hook_timeout must be 0 (no limit) or a number of seconds"]
    return []


def proxy_spec(options):
    """The front door's options (the proxy role's) as M(asgi.deploy.front_door) takes them."""
    o = options.get
    return {
        "server_names": o("proxy_server_names") or [],
        "socket": o("asgi_listen_unix") or "",
        "tls": bool(o("proxy_tls")),
        "certificate": o("proxy_tls_certificate") or "",
        "certificate_key": o("proxy_tls_certificate_key") or "",
        "certificate_file": o("proxy_tls_certificate_file") or "",
        "certificate_key_file": o("proxy_tls_certificate_key_file") or "",
        "static_url": o("proxy_static_url") or "",
    }


def proxy_problems(options):
    """What keeps the app from sitting behind the front door (asgi_proxy: true)."""
    o = options.get
    problems = []
    if o("asgi_listen_tcp"):
        problems.append(
            "asgi_proxy: nginx must be the app's only way in - set asgi_listen_tcp: [] (the app trusts the forwarded "
            "client address on its Unix socket, which only nginx may reach)"
        )
    if "proxy_server_names" in options:  # the proxy role's options are in this run
        problems += front_door_problems(proxy_spec(options))
        if o("proxy_static_url") and not o("asgi_static_dir"):
            problems.append("proxy_static_url serves the release's static files: set asgi_static_dir too")
        names = o("proxy_server_names") or []
        if o("proxy_gate") and (not o("proxy_tls") or not names or str(names[0]).startswith("*.")):
            problems.append("proxy_gate checks over HTTPS with the first of proxy_server_names: it needs proxy_tls and "
                            "a first name that is not a wildcard")  # fmt: skip
    return problems


def front_door_gate(options):
    """Where a handover's front-door gate asks (M(asgi.deploy.handover)'s front_door); {} when there is none."""
    o = options.get
    if not (o("asgi_proxy") and o("proxy_gate") and o("proxy_tls") and o("proxy_server_names")):
        return {}
    return {"name": o("proxy_server_names")[0], "port": int(o("proxy_https_port") or 443),
            "cafile": o("proxy_gate_cafile") or ""}  # fmt: skip


def removed(given):
    """Problems for options that are gone (set in the inventory, say), with what to do instead."""
    return [f"{name} was removed in 0.2.0: {why}" for name, why in REMOVED.items() if given(name) is not None]


def templates_digest():
    """Digest of everything that renders a settings set: the service role's templates, files and vars."""
    digest = hashlib.sha256()
    base = os.path.join(ROLES, "service")
    paths = [os.path.join(COLLECTION_ROOT, "plugins", "module_utils", "process.py")]  # shipped with the console
    for sub in ("templates", "files", "vars"):
        for root, dirs, files in os.walk(os.path.join(base, sub)):
            dirs.sort()
            paths += [os.path.join(root, name) for name in sorted(files)]
    for path in paths:
        with open(path, "rb") as stream:
            digest.update(os.path.relpath(path, base).encode() + b"\0" + hashlib.sha256(stream.read()).digest())
    return digest.hexdigest()


def settings_digest(options, templates):
    """The public part of a host's settings: the options that shape its settings set and the templates, with
    the secrets' names but never their values. Each host keys it with the secrets into the set's id (see
    module_utils/settings.py), so that the id says nothing about a secret."""
    shaped = {
        k: v
        for k, v in options.items()
        if k.startswith(("service_", "asgi_"))
        and k not in BUILD_INPUTS + RUN_INPUTS
        # The CI gate's load shapes no host.
        and not k.startswith("service_check_")
    }
    shaped["service_secrets"] = sorted(str(k) for k in (shaped.pop("service_secrets", None) or {}))
    text = json.dumps({"options": shaped, "templates": templates}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]
