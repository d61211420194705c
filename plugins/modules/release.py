#!/usr/bin/python
# Copyright: asgi.deploy maintainers
# MIT License (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: release
short_description: Build an immutable release of an app on a host from its hashed lock and an offline wheelhouse
version_added: 0.2.0
description:
  - Builds C(<base>/<app>/releases/<id>/venv) at its final path with uv (or pip), offline from the wheelhouse shipped
    with it, every hash required, bytecode compiled (hash-based C(.pyc)), then C(pip check) - all as the unprivileged
    app's own build identity (C(asgi-build-<app>)), in a sandbox with no network, no view of other users' processes,
    that may write only inside the release.
  - Root never opens or follows what the build left - before the release is sealed, FIFOs, sockets and devices
    anywhere, links outside the venv and files with several names are refused, naming them; root's own files are
    written with O_EXCL|O_NOFOLLOW and the digest reads regular files only.
  - Then the app's own build step (O(build_command), for example C(collectstatic)) runs the same way, with the unit's
    environment and credentials; the release is made root-owned and read-only; a digest of every file's path, mode
    and content is recorded (C(files.sha256), and C(tree_sha256) in C(release.json)); and the app is imported as the
    service user, with the environment, credentials, working directory and sandbox of the unit of the settings set
    O(settings) - a failure says whether the app's code or its settings failed.
  - C(release.json) is written last and atomically - from then on the release exists. A release whose manifest exists
    is never touched again (releases are immutable), unless its venv's interpreter is gone (then it is rebuilt); a
    directory without one is unfinished and is built afresh.
  - With O(settings_files), first stages the settings set O(settings) in the same call, as M(asgi.deploy.settings) does
    (validated, the service user made, the console installed, unused sets pruned) - a deploy stages and builds in one
    round trip.
  - Before building, prunes to O(keep) releases (room made for the new one), unfinished releases, wheelhouses no kept
    release uses and staging leftovers; the targets of C(current), C(previous) and the slots' links and the release
    the deploy lock names are always kept. A new wheelhouse, once in place, drops the stored wheels no wheelhouse
    links to any more.
  - Used through its action plugin, which builds the wheelhouse for the host's Python on the controller (once, by
    content) and ships the app wheel and, when the host lacks the wheelhouse, the wheels its wheel store lacks (so a
    one-package lock change sends one wheel).
  - Changes nothing unless O(run) holds the host's deploy lock.
author: asgi.deploy maintainers (!UNKNOWN)
extends_documentation_fragment:
  - asgi.deploy.app
  - asgi.deploy.app.run
options:
  release_id:
    description: The release to build (C(<version>-<hash>)).
    type: str
    required: true
  manifest:
    description: What the controller recorded about the release; written, with what the host adds, as C(release.json).
    type: dict
    default: {}
  requirements:
    description: The release's hashed requirements (the lock plus the app wheel).
    type: str
    default: ""
  app_wheel:
    description:
      - Path on the host of the app wheel (the action plugin ships it), or its file name when O(app_wheel_data)
        holds it.
    type: path
  app_wheel_data:
    description:
      - The app wheel itself, base64-encoded. The action plugin sends a wheel of up to 512 KiB inside the module
        call (no file transfer, no temporary directory on the host); its hash is checked by the install, as a
        shipped one's is.
    type: str
    default: ""
  wheelhouse_key:
    description: Key of the wheelhouse under C(<base>/<app>/wheels).
    type: str
    default: ""
  wheelhouse_tarball:
    description:
      - Path on the host of the shipped wheelhouse tarball, when the host does not have the wheelhouse yet.
      - It holds the wheelhouse's C(SHA256SUMS) and the wheels missing from the host's wheel store
        (C(<base>/<app>/wheel-store/<sha256>)); the others are linked from the store.
    type: path
  uv_version:
    description: Version of the uv wheel in the wheelhouse.
    type: str
    default: ""
  settings_files:
    description:
      - The files of the settings set O(settings), to stage before building (see M(asgi.deploy.settings)'s C(files));
        empty stages nothing.
    type: dict
    default: {}
  settings_keep:
    description: Unused settings sets kept besides the ones the units use (with O(settings_files)).
    type: int
    default: 3
  python:
    description: Interpreter the venv is built with.
    type: path
    default: /usr/bin/python3
  installer:
    description: C(uv), or C(pip) as the fallback.
    type: str
    choices: [uv, pip]
    default: uv
  niceness:
    description:
      - Niceness (0-19) of the build, at idle I/O priority when above 0, so that it does not starve the live release.
    type: int
    default: 10
  settings:
    description:
      - The staged settings set whose unit the build step and the import check take the app's environment,
        credentials, user and sandbox from. Without it, the set main runs with; on a host that runs nothing, the import
        check runs as O(user) in a plain sandbox (an app that reads settings at import then fails it, naming them).
    type: str
    default: ""
  build_command:
    description:
      - The app's build step, run by C(/bin/sh -c) from the release directory with its venv first on C(PATH), once the
        venv is built and before the release is finished. Empty runs nothing.
    type: str
    default: ""
  static_dir:
    description:
      - A directory inside the release (relative to it, C(*) allowed) the build step fills for a front proxy; the
        release is not finished unless it names exactly one directory.
    type: str
    default: ""
  phase:
    description:
      - C(all) builds and finishes the release. C(build) stops before it is sealed (for a build step that is a task
        file, run between the two); C(finish) seals and finishes a release an earlier C(build) call left.
    type: str
    choices: [all, build, finish]
    default: all
  import_check:
    description: Module imported from the new venv, as the service user, before the release counts as built.
    type: str
    default: ""
  user:
    description: The service user (the import check runs as it when no O(settings) is given).
    type: str
    required: true
  group:
    description: The service group.
    type: str
    required: true
  owner:
    description: Owner of the release files once built (never the service user).
    type: str
    default: root
  owner_group:
    description: Group of the release files.
    type: str
    default: root
  keep:
    description: Finished releases kept, at least 2.
    type: int
    default: 5
  switch:
    description:
      - Point C(current) at the release (and C(previous) at the one before).
      - Deploys leave this to M(asgi.deploy.handover), which also restarts and gates.
    type: bool
    default: false
attributes:
  check_mode:
    support: full
    description: Reports whether the release would be built and what would be pruned.
  diff_mode:
    support: none
    description: A venv has no useful diff.
"""

EXAMPLES = r"""
- name: Build the release on the host
  asgi.deploy.release:
    app: billing
    release_id: "{{ artifacts.release.release_id }}"
    manifest: "{{ artifacts.release }}"
    requirements: "{{ artifacts.requirements }}"
    settings: "{{ settings_id }}"
    build_command: python -m django collectstatic --noinput
    run: "{{ run_id }}"
    user: billing
    group: billing
"""

RETURN = r"""
settings_staged:
  description: Whether the settings set had to be written (with O(settings_files)).
  returned: when O(settings_files) is set
  type: bool
built:
  description: Whether the release was built by this call.
  returned: always
  type: bool
path:
  description: The release directory.
  returned: always
  type: str
steps:
  description: Seconds each build step took.
  returned: when built
  type: dict
tree_sha256:
  description: Digest of every file of the release (path, mode, content), as C(release.json) records it.
  returned: when built
  type: str
manifest:
  description: The C(release.json) written.
  returned: when built
  type: str
step:
  description: The build step that failed.
  returned: on failure
  type: str
shipped:
  description:
    - What the action plugin sent the host (nothing when it had the release already).
    - C(wheels) names the wheels in the wheelhouse tarball (the ones the host's wheel store lacked),
      C(wheelhouse_bytes) and C(app_wheel_bytes) are the sizes of what was sent (C(app_wheel_inline) when the app
      wheel went inside the module call).
  returned: when something was sent
  type: dict
  sample: {"wheels": ["click-8.5.0-py3-none-any.whl"], "wheelhouse_bytes": 106496, "app_wheel_bytes": 8192,
           "app_wheel_inline": true}
pruned:
  description: Releases (C(removed)), wheelhouses (C(wheelhouses_removed)) and staging leftovers removed, and the
    releases C(kept).
  returned: always
  type: dict
duration_s:
  description: Seconds the call took.
  returned: when not in check mode
  type: float
"""

import base64
import grp
import hashlib
import os
import pwd
import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.asgi.deploy.plugins.module_utils.assets import AssetsFailed, find_static
from ansible_collections.asgi.deploy.plugins.module_utils.build import (
    MANIFEST_FILE,
    Builder,
    BuildFailed,
    build_user,
    ensure_user,
    manifest_exists,
    prune,
    sha256_file,
    tree_digest,
    unpack_wheelhouse,
)
from ansible_collections.asgi.deploy.plugins.module_utils.host import (
    RUN_ARGUMENT_SPEC,
    App,
    Busy,
    app_argument_spec,
    link_target,
    python_info,
    read_text,
    record_made,
    remove_tree,
    swap_link,
    write_atomic,
)
from ansible_collections.asgi.deploy.plugins.module_utils.host_state import interpreter_ok
from ansible_collections.asgi.deploy.plugins.module_utils.locking import NotLocked, holding
from ansible_collections.asgi.deploy.plugins.module_utils.process import CommandFailed
from ansible_collections.asgi.deploy.plugins.module_utils.settings import SettingsInvalid, normalised, stage, write_set

ARGUMENT_SPEC = app_argument_spec(
    release_id=dict(type="str", required=True),
    manifest=dict(type="dict", default={}),
    requirements=dict(type="str", default=""),
    app_wheel=dict(type="path"),
    # Not a secret: kept out of the result's invocation, where it would be copied back whole.
    app_wheel_data=dict(type="str", default="", no_log=True),
    wheelhouse_key=dict(type="str", default="", no_log=False),
    wheelhouse_tarball=dict(type="path"),
    uv_version=dict(type="str", default=""),
    settings_files=dict(type="dict", default={}, no_log=True),
    settings_keep=dict(type="int", default=3),
    python=dict(type="path", default="/usr/bin/python3"),
    installer=dict(type="str", choices=["uv", "pip"], default="uv"),
    niceness=dict(type="int", default=10),
    settings=dict(type="str", default=""),
    build_command=dict(type="str", default=""),
    static_dir=dict(type="str", default=""),
    phase=dict(type="str", choices=["all", "build", "finish"], default="all"),
    import_check=dict(type="str", default=""),
    user=dict(type="str", required=True),
    group=dict(type="str", required=True),
    owner=dict(type="str", default="root"),
    owner_group=dict(type="str", default="root"),
    keep=dict(type="int", default=5),
    switch=dict(type="bool", default=False),
    **RUN_ARGUMENT_SPEC,
)
# Left by phase=build: the venv is complete, the release waits for its build step's task file and phase=finish.
BUILT_MARKER = ".built-by-run"


def ids(name, group):
    return pwd.getpwnam(name).pw_uid, grp.getgrnam(group).gr_gid


def plain_unit(user, group):
    """The unit a release is imported under when no settings set is given (standalone use): as the service user,
    or - before the service role made it - as a transient user systemd allocates (never as root)."""
    sandbox = ("NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes")
    try:
        pwd.getpwnam(user)
        grp.getgrnam(group)
        identity = [f"User={user}", f"Group={group}"]
    except KeyError:
        identity = ["DynamicUser=yes"]
    return "\n".join(["[Service]", *identity, *sandbox]) + "\n"


def main():
    module = AnsibleModule(
        argument_spec=ARGUMENT_SPEC,
        required_if=[("phase", "finish", ("settings",), True), ("installer", "uv", ("uv_version",), True)],
        supports_check_mode=True,
    )
    p = module.params
    app = App(p["app"], p["base_dir"])
    if p["keep"] < 2:
        module.fail_json(msg="release: keep must be at least 2 (the live and the previous release)")
    if p["owner"] == p["user"]:
        module.fail_json(
            msg=f"release: the release owner must not be the service user {p['user']} (it could rewrite its code)"
        )
    exists = manifest_exists(app, p["release_id"]) and interpreter_ok(app, p["release_id"])
    result = dict(changed=False, built=False, path=app.release_dir(p["release_id"]))
    if module.check_mode:
        result["built"] = result["changed"] = not exists
        result["pruned"] = prune(app, p["keep"] - (0 if exists else 1), protect=[p["release_id"]], dry_run=True)
        if p["settings_files"]:
            files = normalised(p["settings_files"])
            result["settings_staged"] = stage(app, p["settings"], files, module.run_command, check_mode=True)
            result["changed"] |= result["settings_staged"]
        module.exit_json(**result)
    began = time.monotonic()
    try:
        # A build that a dead controller left running on this host ends before this one looks.
        with holding(app, p["run"], p["flock_wait"]):
            if p["settings_files"]:
                staged, _created, _pruned = write_set(app, p["settings"], normalised(p["settings_files"]), p["user"],
                                                      p["group"], module.run_command, p["settings_keep"])  # fmt: skip
                result["settings_staged"] = staged
            result.update(prune_build_switch(module, app, exists))
            result["changed"] |= result.get("settings_staged", False)
    except (Busy, NotLocked) as refused:
        module.fail_json(msg=str(refused), step="lock")
    except (SettingsInvalid, CommandFailed) as invalid:
        module.fail_json(msg=f"settings: {invalid}", step="settings")
    except BuildFailed as failed:
        module.fail_json(
            msg=f"release {p['release_id']} could not be built on this host at {failed.step} and was removed; "
            f"nothing was switched. {failed}",
            step=failed.step,
        )
    result["duration_s"] = round(time.monotonic() - began, 2)
    module.exit_json(**result)


def prune_build_switch(module, app, exists):
    p = module.params
    result = {"changed": False}
    try:
        builder_name = build_user(app.name)
        made = ensure_user(module.run_command, builder_name, builder_name, f"{app.name} builds (asgi.deploy)")
        if made:
            record_made(app, users=[builder_name], groups=[builder_name])
        result["changed"] = made
    except CommandFailed as failed:
        raise BuildFailed("user", str(failed)) from None
    # Room first: a build that needs the space old releases hold must not fail for want of it.
    result["pruned"] = prune(
        app, p["keep"] - (0 if exists else 1), protect=[p["release_id"]], wheelhouses=[p["wheelhouse_key"]]
    )
    pruned = result["pruned"]
    result["changed"] |= bool(pruned["removed"] or pruned["wheelhouses_removed"] or pruned["leftovers_removed"])
    if not exists or p["phase"] == "finish":
        result.update(build(module, app))
        result["changed"] = True
    if p["switch"] and link_target(app.link("current")) != p["release_id"]:
        before = link_target(app.link("current"))
        if before:
            swap_link(app.link("previous"), before)
        swap_link(app.link("current"), p["release_id"])
        result["changed"] = True
    return result


def builder(module, app):
    p = module.params
    host_python = python_info(module.run_command, p["python"])
    if not host_python:
        raise BuildFailed("python", "{} does not run".format(p["python"]))
    wheels = os.path.join(app.wheels, p["wheelhouse_key"])
    manifest = dict(p["manifest"])
    manifest.update(
        python=host_python.get("full", ""),
        machine=host_python.get("machine", ""),
        installer=p["installer"],
        wheelhouse_key=p["wheelhouse_key"],
        requirements_sha256=hashlib.sha256(p["requirements"].encode("utf-8")).hexdigest(),
        # What made the files besides the lock (verify rebuilds with them): the build step, and the settings set
        # whose environment and credentials it ran with.
        build_command=p["build_command"],
        settings=p["settings"],
    )
    manifest.setdefault("release_id", p["release_id"])
    return Builder(app, p["release_id"], manifest, p["requirements"], module.run_command, python=p["python"],
                   installer=p["installer"], niceness=p["niceness"]), wheels  # fmt: skip


def build(module, app):
    p = module.params
    made, wheels = builder(module, app)
    marker = os.path.join(made.dir, BUILT_MARKER)
    if p["phase"] == "finish":
        if read_text(marker).strip() != p["run"]:
            raise BuildFailed("finish", f"release {p['release_id']} was not built by this run (phase=build first)")
    else:
        venv(module, app, made, wheels)
        if p["phase"] == "build":
            write_atomic(marker, p["run"] + "\n", 0o644)
            return {"built": False, "steps": made.timings}
    try:
        finish(module, made, marker)
    except BaseException:
        remove_tree(made.dir)
        raise
    return {"built": True, "steps": made.timings, "tree_sha256": made.manifest["tree_sha256"],
            "manifest": read_text(os.path.join(made.dir, "release.json"))}  # fmt: skip


def venv(module, app, made, wheels):
    p = module.params
    if not p["wheelhouse_key"]:
        raise BuildFailed("input", "wheelhouse_key is required")
    if p["wheelhouse_tarball"]:
        unpack_wheelhouse(p["wheelhouse_tarball"], wheels, app.wheel_store)
    elif not os.path.isfile(os.path.join(wheels, "SHA256SUMS")):
        raise BuildFailed(
            "wheelhouse", "wheelhouse {} is not on the host and none was shipped".format(p["wheelhouse_key"])
        )
    data = base64.b64decode(p["app_wheel_data"]) if p["app_wheel_data"] else None
    if not p["app_wheel"] or (data is None and not os.path.isfile(p["app_wheel"])):
        raise BuildFailed("input", "the app wheel was not shipped to the host")
    uid, gid = ids(build_user(app.name), build_user(app.name))
    made.build(p["app_wheel"], wheels, uv_version=p["uv_version"], uid=uid, gid=gid, app_wheel_data=data)
    if p["build_command"]:
        try:
            made.build_step(p["build_command"], unit_text(module, app))
        except BaseException:
            remove_tree(made.dir)
            raise


def unit_text(module, app):
    """The unit the build step and the import check take the app's environment from: the settings set given, or
    (standalone use) the one main runs with, or a plain sandbox as the service user on a host that has none."""
    p = module.params
    settings = p["settings"] or read_text(app.applied).strip()
    if not settings:
        return plain_unit(p["user"], p["group"])
    text = app.unit_in_settings(settings)
    if not text:
        raise BuildFailed("input", f"settings set {settings} is not staged on this host")
    return text


def finish(module, made, marker):
    """Seal the release (root-owned, read-only), record its tree digest, import the app, write release.json."""
    p = module.params
    if os.path.exists(marker):
        os.unlink(marker)
    if p["static_dir"]:
        try:
            find_static(made.dir, p["static_dir"], "after the build step, the release")
        except AssetsFailed as exc:
            raise BuildFailed("static", str(exc)) from None
    made.seal(*ids(p["owner"], p["owner_group"]))
    # The wheelhouse is on the host by now (shipped in the build call, the first time).
    made.manifest["wheelhouse_sha256"] = sha256_file(os.path.join(made.app.wheels, p["wheelhouse_key"], "SHA256SUMS"))
    digest, lines = tree_digest(made.dir, skip=(MANIFEST_FILE, "release.json"))
    write_atomic(os.path.join(made.dir, MANIFEST_FILE), "\n".join(lines) + "\n", 0o444)
    made.manifest["tree_sha256"] = digest
    if p["import_check"]:
        made.import_check(p["import_check"], unit_text(module, made.app))
    made.finish()


if __name__ == "__main__":
    main()
