#!/usr/bin/python
# Copyright: asgi.deploy maintainers
# MIT License (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: verify
short_description: Check every kept release of an app on a host against what was built, and optionally rebuild it
version_added: 0.2.0
description:
  - Walks each finished release and compares it with the manifest written when it was built (C(files.sha256) - every
    file's path, mode and sha256 - and C(tree_sha256) in C(release.json)), reporting files modified, added and
    missing; a venv whose interpreter is gone; and C(current) or C(previous) pointing at a release that is not
    finished.
  - With O(rebuild=true), also builds each release again from its wheelhouse, app wheel and requirements in a scratch
    directory - mounted at the release's own path inside the build's sandbox, since venvs are not relocatable - and
    compares the digests - can this release be recreated exactly?
  - Changes nothing (a rebuild's scratch directory is removed); the findings are the result (RV(releases),
    RV(findings)); it fails when there is any, so that cron or CI notices.
author: asgi.deploy maintainers (!UNKNOWN)
extends_documentation_fragment:
  - asgi.deploy.app
options:
  releases:
    description: The releases to check; empty checks every kept release.
    type: list
    elements: str
    default: []
  rebuild:
    description: Also rebuild each release in a scratch directory and compare digests.
    type: bool
    default: false
  python:
    description: Interpreter a rebuild builds with (as the release was).
    type: path
    default: /usr/bin/python3
attributes:
  check_mode:
    support: full
    description: Reads only (a rebuild writes only to its scratch directory).
  diff_mode:
    support: none
    description: The findings are the output.
"""

EXAMPLES = r"""
- name: Check every kept release of billing (from cron, say)
  asgi.deploy.verify:
    app: billing
"""

RETURN = r"""
releases:
  description:
    - Per release id - C(files) checked, C(modified), C(added) and C(missing) paths, C(interpreter) (still there),
      C(tree_sha256) recorded and C(seconds) taken; with O(rebuild=true) also C(rebuilt_sha256), C(reproduced) and
      C(rebuilt_differs) (the paths whose bytes differ).
  returned: always
  type: dict
findings:
  description: Every problem found, one sentence each (empty when the host is as built).
  returned: always
  type: list
  elements: str
"""

import grp
import os
import pwd
import shutil
import tempfile
import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.asgi.deploy.plugins.module_utils.build import (
    MANIFEST_FILE,
    Builder,
    BuildFailed,
    build_user,
    compare_manifest,
    make_readonly,
    tree_digest,
)
from ansible_collections.asgi.deploy.plugins.module_utils.host import (
    App,
    app_argument_spec,
    link_target,
    list_releases,
    read_manifest,
    read_text,
)
from ansible_collections.asgi.deploy.plugins.module_utils.host_state import interpreter_ok


def check_release(app, release_id):
    """How the release on disk differs from its manifest."""
    began = time.monotonic()
    path = app.release_dir(release_id)
    recorded = read_text(os.path.join(path, MANIFEST_FILE)).splitlines()
    digest, lines = tree_digest(path, skip=(MANIFEST_FILE, "release.json"))
    found = compare_manifest(recorded, lines)
    manifest = read_manifest(app, release_id) or {}
    return {
        "files": len(lines),
        **found,
        "interpreter": interpreter_ok(app, release_id),
        "tree_sha256": manifest.get("tree_sha256", ""),
        "digest_matches": digest == manifest.get("tree_sha256"),
        "seconds": round(time.monotonic() - began, 2),
    }


def rebuild(module, app, release_id):
    """The release built again from what it was built from - wheelhouse, app wheel, requirements, build step
    (with the settings main runs with) - in a scratch directory the sandbox sees at the release's own path; its
    tree digest and manifest lines."""
    path = app.release_dir(release_id)
    manifest = read_manifest(app, release_id) or {}
    wheels = os.path.join(app.wheels, manifest.get("wheelhouse_key", ""))
    [app_wheel] = [os.path.join(path, "dist", name) for name in os.listdir(os.path.join(path, "dist"))]
    uv_version = next((name.split("-")[1] for name in os.listdir(wheels) if name.startswith("uv-")), "")
    scratch = tempfile.mkdtemp(prefix=f".verify-{release_id}-", dir=app.releases)
    try:
        requirements = read_text(os.path.join(path, "requirements.txt"))
        installer = manifest.get("installer", "uv")
        made = Builder(app, release_id, manifest, requirements, module.run_command, python=module.params["python"],
                       installer=installer, host_dir=scratch)  # fmt: skip
        made.build(app_wheel, wheels, uv_version=uv_version, uid=pwd.getpwnam(build_user(app.name)).pw_uid,
                   gid=grp.getgrnam(build_user(app.name)).gr_gid)  # fmt: skip
        if manifest.get("build_command"):
            # The release's own settings, as it was built: never today's (a build step reads them).
            settings = manifest.get("settings") or ""
            unit = app.unit_in_settings(settings) if settings else ""
            if not unit:
                raise BuildFailed(
                    "settings",
                    f"the settings set {settings[:12] or '(not recorded: built before 0.3)'} this release was built "
                    "with is no longer on the host: it cannot be rebuilt as it was",
                )
            made.build_step(manifest["build_command"], unit)
        make_readonly(scratch)
        return tree_digest(scratch, skip=(MANIFEST_FILE, "release.json"))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def findings_of(app, results):
    findings = []
    for release_id, r in sorted(results.items()):
        for kind in ("modified", "added", "missing"):
            if r[kind]:
                findings.append(f"{release_id}: {len(r[kind])} file(s) {kind}: {', '.join(r[kind][:5])}")
        if not r["interpreter"]:
            findings.append(f"{release_id}: the venv's interpreter is gone")
        if r.get("reproduced") is False:
            differs = r.get("rebuilt_differs") or []
            findings.append(
                f"{release_id}: rebuilt from its inputs it is not the same bytes ({r['rebuilt_sha256'][:12]}): "
                f"{len(differs)} file(s) differ: {', '.join(differs[:5])}"
            )
    finished = {r["id"] for r in list_releases(app)[0]}
    for link in ("current", "previous"):
        target = link_target(app.link(link))
        if target and target not in finished:
            findings.append(f"{link} points at {target}, which is not a finished release")
    return findings


def main():
    module = AnsibleModule(
        argument_spec=app_argument_spec(
            releases=dict(type="list", elements="str", default=[]),
            rebuild=dict(type="bool", default=False),
            python=dict(type="path", default="/usr/bin/python3"),
        ),
        supports_check_mode=True,
    )
    p = module.params
    app = App(p["app"], p["base_dir"])
    kept = [r["id"] for r in list_releases(app)[0]]
    results = {}
    for release_id in p["releases"] or kept:
        if release_id not in kept:
            module.fail_json(msg=f"verify: release {release_id} is not kept on this host (kept: {', '.join(kept)})")
        results[release_id] = check_release(app, release_id)
        if p["rebuild"]:
            try:
                digest, lines = rebuild(module, app, release_id)
            except BuildFailed as failed:
                module.fail_json(msg=f"verify: rebuilding {release_id} failed at {failed.step}: {failed}")
            recorded = read_text(os.path.join(app.release_dir(release_id), MANIFEST_FILE)).splitlines()
            differ = compare_manifest(recorded, lines)
            results[release_id].update(
                rebuilt_sha256=digest,
                reproduced=digest == results[release_id]["tree_sha256"],
                rebuilt_differs=sorted(differ["modified"] + differ["added"] + differ["missing"]),
            )
    findings = findings_of(app, results)
    if findings:
        module.fail_json(msg=f"verify: {len(findings)} finding(s) on this host", findings=findings, releases=results)
    module.exit_json(changed=False, findings=[], releases=results)


if __name__ == "__main__":
    main()
