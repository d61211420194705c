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
    C(meta/argument_specs.yml) and the checks a spec cannot express (listen address formats, timeouts, names that
    would collide with another app's units, environment and header names, removed options), and the command line.
    Every problem is reported at once, each once with the hosts that have it (RV(problems)); nothing is changed.
  - The command line is read from C(asgi_<name>) variables (C(-e asgi_version=1.4.0)), or from the short names given
    with C(-e) on the command line only (C(-e version=1.4.0)) - never from an unprefixed variable of the inventory.
  - For a deploy, builds the app wheel (or takes the one given) and identifies the release, content-addressed, so
    that the release id is the same on every host and in every batch; refuses a source with changes not committed
    unless C(asgi_allow_dirty) is true.
  - Computes each host's public settings digest - the options that shape its settings set and the templates, with
    the secrets' names but not their values (each host keys it with the secrets, see M(asgi.deploy.lock)).
  - Names the run - a random run id, the actor, the controller (with an identity that tells it from a clone or a
    container of the same image) and the PID of C(ansible-playbook).
  - A run split into job slices (AWX job slicing, or one ansible-runner job per part of the inventory) gives every
    slice the same C(-e asgi_run_id) - the slices share one run id in the locks, the audit logs and the fleet's
    history, while each slice's own process keeps its locks apart from another slice's. C(-e asgi_release=R) pins
    the release every slice ships (a slice that would ship another stops before any host changes) or goes back to
    (a rollback in slices must name it, or a version, since each slice reads only its own hosts' history).
author: asgi.deploy maintainers (!UNKNOWN)
options:
  operation:
    description: What the run does.
    type: str
    choices: [deploy, rollback, status, exec, logs, remove, verify, check, report]
    default: deploy
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
  register: plan
  run_once: true
"""

RETURN = r"""
run:
  description:
    - The run - C(id) (16 hex digits that sort by start time, or the C(-e asgi_run_id) that the job slices of one
      run share), C(operation), C(actor), C(controller), C(controller_id), C(pid), C(started), and what the command
      line said - C(version), C(serial), C(strategy), C(on_failure), C(converge), C(force_unlock), C(lock_wait),
      C(allow_dirty), C(format), C(app_wheel), C(app_source), C(cmd), C(once), C(timeout), C(since), C(grep),
      C(lines), C(purge), C(rebuild), C(run_id) (empty unless given), C(release) (the release every slice ships or
      goes back to, when pinned; empty otherwise).
  returned: success
  type: dict
settings:
  description: Each host's public settings digest, by inventory name.
  returned: success
  type: dict
alive:
  description:
    - This controller's ansible processes - C(controller_id), C(pids), and C(certain) (false when some process could
      not be read, so that no run is judged dead) - for M(asgi.deploy.lock) to tell a dead run's lock from a live one's.
  returned: success
  type: dict
artifacts:
  description:
    - The release (C(release), its manifest), the app wheel (C(app_wheel)), the app's requirement line, the uv
      version, the lock files and the cache path.
  returned: when O(operation=deploy)
  type: dict
problems:
  description: Every problem found, one line each (naming the hosts that have it).
  returned: on failure
  type: list
  elements: str
"""
