#!/usr/bin/python
# Copyright: asgi.deploy maintainers
# MIT License (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: plan
short_description: Check a run on the controller before any host changes, identify the release, name the run
version_added: 0.2.0
description:
  - Runs on the controller only (an action plugin); use it with C(run_once).
  - Validates every option of every role of the collection for every host of the play, against the roles'
    C(meta/argument_specs.yml) and the checks a spec cannot express (listen address formats, timeouts, secret names),
    and the command line (version, strategy, serial). Every problem is reported at once; nothing is changed.
  - For a deploy, builds the app wheel (or takes the one given) and identifies the release, content-addressed, so
    that the release id is the same on every host and in every batch.
  - Computes each host's settings digest - the options that shape its settings set and the templates.
  - Names the run - a random run id, the actor, the controller and the PID of C(ansible-playbook).
author: asgi.deploy maintainers (!UNKNOWN)
options:
  operation:
    description: What the run does.
    type: str
    choices: [deploy, rollback, status]
    default: deploy
  version:
    description: The version to deploy (required for C(deploy)), or to roll back to.
    type: str
    default: ""
  strategy:
    description: C(handover) or C(restart).
    type: str
    default: handover
  serial:
    description: Hosts per batch (a number or a percentage), checked here.
    type: str
    default: "1"
  on_failure:
    description: What a failed host does to the fleet.
    type: str
    default: stop
  app_wheel:
    description: A built app wheel for this run, instead of C(asgi_app_source).
    type: str
    default: ""
  app_source:
    description: An app source directory for this run, instead of C(asgi_app_source).
    type: str
    default: ""
attributes:
  check_mode:
    support: full
    description: Changes no host; builds the app wheel on the controller.
  diff_mode:
    support: none
    description: Nothing to show.
"""

EXAMPLES = r"""
- name: Plan the deploy
  asgi.deploy.plan:
    operation: deploy
    version: 1.4.0
  register: plan
  run_once: true
"""

RETURN = r"""
run:
  description:
    - The run - C(id), C(operation), C(actor), C(controller), C(pid), C(started), C(version), C(strategy),
      C(on_failure).
  returned: always
  type: dict
settings:
  description: Each host's settings digest, by inventory name.
  returned: always
  type: dict
artifacts:
  description:
    - The release (its manifest), the app wheel, the requirements the hosts install, the uv version and cache paths.
  returned: when O(operation=deploy)
  type: dict
"""
