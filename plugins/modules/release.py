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
    with it, every hash required, bytecode compiled, then C(pip check), and an import check run as the service user
    in a sandbox (never as root). C(release.json) is written last and atomically - from then on the release exists.
  - A release whose manifest exists is never touched again (releases are immutable); a directory without one is
    unfinished and is built afresh.
  - Creates the app's unprivileged system user and group when missing.
  - Prunes unfinished releases, all but the O(keep) newest, and wheelhouses no kept release uses; the targets of
    C(current), C(previous) and C(next) are always kept.
  - Used through its action plugin, which builds the wheelhouse for the host's Python on the controller (once, by
    content) and ships it and the app wheel only when the host lacks them.
author: asgi.deploy maintainers (!UNKNOWN)
extends_documentation_fragment:
  - asgi.deploy.app
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
    description: Path on the host of the app wheel (the action plugin ships it).
    type: path
  wheelhouse_key:
    description: Key of the wheelhouse under C(<base>/<app>/wheels).
    type: str
    default: ""
  wheelhouse_tarball:
    description: Path on the host of the shipped wheelhouse tarball, when the host does not have it yet.
    type: path
  uv_version:
    description: Version of the uv wheel in the wheelhouse.
    type: str
    default: ""
  python:
    description: Interpreter the venv is built with.
    type: path
    default: /usr/bin/python3
  installer:
    description: C(uv), or C(pip) as the fallback.
    type: str
    choices: [uv, pip]
    default: uv
  index_url:
    description: Install from this index instead of the wheelhouse (hashes still required).
    type: str
    default: ""
  niceness:
    description:
      - Niceness (0-19) of the build, at idle I/O priority when above 0, so that it does not starve the live release.
    type: int
    default: 10
  import_check:
    description: Module imported from the new venv, as the service user, before the release counts as built.
    type: str
    default: ""
  user:
    description: The service user (created when missing); the import check runs as it.
    type: str
    required: true
  group:
    description: The service group (created when missing).
    type: str
    required: true
  owner:
    description: Owner of the release files (never the service user).
    type: str
    default: root
  owner_group:
    description: Group of the release files.
    type: str
    default: root
  keep:
    description: Finished releases kept.
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
    user: billing
    group: billing
"""

RETURN = r"""
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
pruned:
  description: Releases and wheelhouses removed.
  returned: always
  type: dict
"""

import grp
import hashlib
import os
import pwd
import shutil
import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.asgi.deploy.plugins.module_utils.build import (
    Builder,
    BuildFailed,
    ensure_user,
    manifest_exists,
    prune,
    sha256_file,
    unpack_wheelhouse,
)
from ansible_collections.asgi.deploy.plugins.module_utils.host import (
    App,
    Busy,
    app_argument_spec,
    link_target,
    operation_lock,
    python_info,
    read_text,
    swap_link,
)


def ids(name, group):
    return pwd.getpwnam(name).pw_uid, grp.getgrnam(group).gr_gid


def main():
    module = AnsibleModule(
        argument_spec=app_argument_spec(
            release_id=dict(type="str", required=True),
            manifest=dict(type="dict", default={}),
            requirements=dict(type="str", default=""),
            app_wheel=dict(type="path"),
            wheelhouse_key=dict(type="str", default="", no_log=False),
            wheelhouse_tarball=dict(type="path"),
            uv_version=dict(type="str", default=""),
            python=dict(type="path", default="/usr/bin/python3"),
            installer=dict(type="str", choices=["uv", "pip"], default="uv"),
            index_url=dict(type="str", default=""),
            niceness=dict(type="int", default=10),
            import_check=dict(type="str", default=""),
            user=dict(type="str", required=True),
            group=dict(type="str", required=True),
            owner=dict(type="str", default="root"),
            owner_group=dict(type="str", default="root"),
            keep=dict(type="int", default=5),
            switch=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    p = module.params
    app = App(p["app"], p["base_dir"])
    if p["keep"] < 2:
        module.fail_json(msg="release: keep must be at least 2 (the live and the previous release)")
    exists = manifest_exists(app, p["release_id"])
    result = dict(changed=False, built=False, path=app.release_dir(p["release_id"]))
    if module.check_mode:
        result["built"] = result["changed"] = not exists
        result["pruned"] = prune(app, p["keep"], dry_run=True)
        module.exit_json(**result)

    began = time.monotonic()
    try:
        # A build that a dead controller left running on this host ends before this one looks.
        with operation_lock(app):
            result.update(build_switch_prune(module, app, p))
    except Busy as busy:
        module.fail_json(msg=str(busy), step="busy")
    except BuildFailed as failed:
        module.fail_json(
            msg=f"release {p['release_id']} could not be built on this host at {failed.step} and was removed; "
            f"nothing was switched. {failed}",
            step=failed.step,
        )
    result["duration_s"] = round(time.monotonic() - began, 2)
    module.exit_json(**result)


def build_switch_prune(module, app, p):
    result = {"changed": ensure_user(p["user"], p["group"], f"{p['app']} (asgi.deploy)")}
    if not manifest_exists(app, p["release_id"]):
        result.update(build(module, app, p))
        result["changed"] = True
    if p["switch"] and link_target(app.link("current")) != p["release_id"]:
        before = link_target(app.link("current"))
        if before:
            swap_link(app.link("previous"), before)
        swap_link(app.link("current"), p["release_id"])
        result["changed"] = True
    result["pruned"] = prune(app, p["keep"])
    if result["pruned"]["removed"] or result["pruned"]["wheelhouses_removed"]:
        result["changed"] = True
    return result


def build(module, app, p):
    if p["installer"] == "uv" and not p["uv_version"]:
        raise BuildFailed("input", "uv_version is required with installer=uv")
    wheels = os.path.join(app.wheels, p["wheelhouse_key"]) if p["wheelhouse_key"] else ""
    if not p["index_url"]:
        if not wheels:
            raise BuildFailed("input", "wheelhouse_key is required without index_url")
        if p["wheelhouse_tarball"]:
            unpack_wheelhouse(p["wheelhouse_tarball"], wheels)
        elif not os.path.isfile(os.path.join(wheels, "SHA256SUMS")):
            raise BuildFailed(
                "wheelhouse", "wheelhouse {} is not on the host and none was shipped".format(p["wheelhouse_key"])
            )
    if not p["app_wheel"] or not os.path.isfile(p["app_wheel"]):
        raise BuildFailed("input", "the app wheel was not shipped to the host")
    host_python = python_info(p["python"])
    if not host_python:
        raise BuildFailed("python", "{} does not run".format(p["python"]))
    uid, gid = ids(p["owner"], p["owner_group"])
    manifest = dict(p["manifest"])
    manifest.update(
        python=host_python.get("full", ""),
        installer=p["installer"],
        package_source="index" if p["index_url"] else "wheelhouse",
        wheelhouse_key=p["wheelhouse_key"] if not p["index_url"] else "",
        wheelhouse_sha256=(sha256_file(os.path.join(wheels, "SHA256SUMS")) if wheels and not p["index_url"] else ""),
        requirements_sha256=hashlib.sha256(p["requirements"].encode("utf-8")).hexdigest(),
    )
    manifest.setdefault("release_id", p["release_id"])
    builder = Builder(
        app,
        p["release_id"],
        manifest,
        p["requirements"],
        python=p["python"],
        installer=p["installer"],
        niceness=p["niceness"],
        uid=uid,
        gid=gid,
    )
    builder.build(p["app_wheel"], wheels, uv_version=p["uv_version"], index_url=p["index_url"])
    try:
        if p["import_check"]:
            builder.import_check(p["import_check"], p["user"], p["group"])
        builder.finish()
    except BaseException:
        shutil.rmtree(builder.dir, ignore_errors=True)
        raise
    return {"built": True, "steps": builder.timings, "manifest": read_text(os.path.join(builder.dir, "release.json"))}


if __name__ == "__main__":
    main()
