#!/usr/bin/python
# Copyright: asgi.deploy maintainers
# MIT License (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: check
short_description: The app's CI gate - a fresh lock, the venv a host would build, the app started and loaded as deployed
version_added: 0.2.0
description:
  - Runs on the controller only (an action plugin), in an app repository's CI, with the artifacts
    M(asgi.deploy.plan) identified (so every controller check of a deploy has passed) and the app's settings set.
  - Checks that the lock is fresh against the app's project - C(uv lock --check) for a C(uv.lock); for a hashed
    requirements lock, the C(uv pip compile) command its header records, run again - and names what changed and the
    relock command.
  - Builds the venv from the same offline wheelhouse a host of the runner's Python gets, runs the app's build step
    and O(before_start) with the app's environment, starts the app under the
    same generated C(gunicorn.conf.py), environment and credentials as the units, on a free loopback port handed over
    as systemd does (no systemd needed), gates it on its readiness path, then loads it with C(locust --headless) on
    O(paths) and fails when the failure ratio or the p99 latency is above the thresholds, with the numbers.
  - For a Django app (C(DJANGO_SETTINGS_MODULE) in O(environment)), first runs Django's deployment checklist,
    C(python -m django check --deploy), as the app runs - an error fails the check, warnings are said.
author: asgi.deploy maintainers (!UNKNOWN)
extends_documentation_fragment:
  - asgi.deploy.app.readiness
options:
  artifacts:
    description: What M(asgi.deploy.plan) identified (RV(asgi.deploy.plan#module:artifacts)).
    type: dict
    required: true
  lockfile:
    description: The app's lock as given (C(asgi_lockfile)).
    type: path
    required: true
  files:
    description: The settings set's files, as the service role renders them.
    type: dict
    required: true
  entrypoint:
    description: The ASGI callable or factory.
    type: str
    required: true
  environment:
    description:
      - The app's environment for the check (C(service_environment) with C(service_check_environment) over it).
    type: dict
    default: {}
  build:
    description: The app's build step (C(asgi_build)), run from the release as in a deploy before the app starts.
    type: str
    default: ""
  before_start:
    description:
      - Commands run from the release, after the build step, before the app starts (C(service_check_before_start)).
    type: list
    elements: str
    default: []
  secrets:
    description: The app's secrets (C(service_secrets)).
    type: dict
    default: {}
  secrets_via:
    description: How the units hand the secrets over (C(service_secrets_via)).
    type: str
    choices: [credentials, environment_file]
    default: credentials
  paths:
    description: Paths the load requests, in turn.
    type: list
    elements: str
    default: [/]
  users:
    description: Locust users.
    type: int
    default: 4
  seconds:
    description: How long the load runs.
    type: int
    default: 20
  max_failure_ratio:
    description: The share of requests that may fail.
    type: float
    default: 0.0
  max_p99_ms:
    description: The p99 latency the load may reach, in milliseconds (0 checks none).
    type: float
    default: 0
  report:
    description: A path to write the JSON report to.
    type: path
attributes:
  check_mode:
    support: full
    description: Builds and runs only on the controller, in a scratch directory.
  diff_mode:
    support: none
    description: Nothing to show.
"""

EXAMPLES = r"""
- name: Gate the app in its CI
  asgi.deploy.check:
    artifacts: "{{ plan.artifacts }}"
    lockfile: "{{ asgi_lockfile }}"
    files: "{{ settings_files }}"
    entrypoint: "{{ asgi_entrypoint }}"
    paths: [/health, /notes]
    seconds: 30
    max_p99_ms: 250
"""

RETURN = r"""
lines:
  description: What the check found, one line each.
  returned: always
  type: list
  elements: str
problems:
  description: Why it failed (empty when it passed).
  returned: always
  type: list
  elements: str
report:
  description: C(lock) (staleness), C(readiness) (why the app was not ready) and C(load) (requests, failures,
    failure_ratio, p99_ms, failure_samples).
  returned: always
  type: dict
"""
