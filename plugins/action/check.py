# Copyright: asgi.deploy maintainers
# MIT License (see LICENSE)
"""Action for asgi.deploy.check: the app's CI gate, on the controller (see plugin_utils/app_check.py)."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from ansible.plugins.action import ActionBase
from ansible_collections.asgi.deploy.plugins.plugin_utils import app_check
from ansible_collections.asgi.deploy.plugins.plugin_utils.artifacts import BadInput


def thresholds(numbers, max_failure_ratio, max_p99_ms):
    """Problems with the load's numbers (empty when they are within the thresholds)."""
    problems = []
    if numbers["requests"] == 0:
        problems.append("the load made no request")
    elif numbers["failure_ratio"] > max_failure_ratio:
        problems.append(
            f"{numbers['failures']} of {numbers['requests']} requests failed ({numbers['failure_ratio']:.1%}, more "
            f"than {max_failure_ratio:.1%}): {'; '.join(numbers['failure_samples'])}"
        )
    if numbers["p99_ms"] is not None and max_p99_ms and numbers["p99_ms"] > max_p99_ms:
        problems.append(f"p99 latency {numbers['p99_ms']} ms is above {max_p99_ms} ms")
    return problems


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        args = self._task.args
        report = {"lock": [], "readiness": "", "load": {}}
        work = Path(tempfile.mkdtemp(prefix="asgi-check-"))
        try:
            report["lock"] = app_check.lock_problems(args["lockfile"])
            problems = list(report["lock"])
            if not problems:
                problems += self.serve_and_load(args, work, report)
        except BadInput as problem:
            problems = [str(problem)]
        finally:
            shutil.rmtree(work, ignore_errors=True)
        lines = [f"check: {line}" for line in problems] or [
            "check: the lock is fresh, the app starts and gates as a deploy would, and under load {requests} requests "
            "failed {failures} (p99 {p99_ms} ms)".format(**report["load"])
        ] + [f"check: Django's deployment checks warn: {line}" for line in report.get("django_warnings") or []]
        if args.get("report"):
            Path(args["report"]).write_text(json.dumps({**report, "problems": problems}, indent=2) + "\n")
        result.update(changed=False, lines=lines, report=report, problems=problems)
        if problems:
            result.update(failed=True, msg=lines[0])
        return result

    @staticmethod
    def serve_and_load(args, work, report):
        release = work / "release"
        release.mkdir()
        (release / "release.json").write_text(json.dumps(args["artifacts"]["release"]))
        venv = app_check.build_venv(args["artifacts"], app_check.local_target(), release)
        settings, environment = app_check.write_settings(work, args["files"], args.get("secrets") or {},
                                                         args.get("secrets_via", "credentials"))  # fmt: skip
        environment = {**{str(k): str(v) for k, v in (args.get("environment") or {}).items()}, **environment}
        steps = [("build step", args["build"])] if args.get("build") else []
        steps += [("before-start command", command) for command in args.get("before_start") or []]
        failed = app_check.run_steps(steps, environment, release)
        if failed:
            return [failed[0], *[f"  {line}" for line in failed[1:]]]
        errors, report["django_warnings"] = app_check.django_deploy_check(environment, release)
        if errors:
            return [errors[0], *[f"  {line}" for line in errors[1:]]]
        proc, port = app_check.start(venv, settings, args["entrypoint"], environment, release)
        try:
            headers = {str(k): str(v) for k, v in (args.get("readiness_headers") or {}).items()}
            accept = tuple(int(s) for s in args.get("readiness_status") or [200])
            report["readiness"] = app_check.wait_ready(
                proc, port, args["readiness_path"], headers, accept, int(args.get("readiness_timeout", 60))
            )
            if report["readiness"]:
                log = (release / "app.log").read_text().strip().splitlines()[-15:]
                return [report["readiness"], *[f"  {line}" for line in log]]
            report["load"] = app_check.load(port, args["paths"], int(args["users"]), int(args["seconds"]), headers)
        finally:
            app_check.stop(proc)
        return thresholds(report["load"], float(args["max_failure_ratio"]), float(args.get("max_p99_ms") or 0))
