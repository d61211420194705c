# Copyright: asgi.deploy maintainers
# MIT License (see LICENSE)

from __future__ import annotations


class ModuleDocFragment:
    # The app every module works on: its name and where it lives on the host.
    DOCUMENTATION = r"""
options:
  app:
    description: Name of the app.
    type: str
    required: true
  base_dir:
    description: Directory holding the app's own directory C(<base_dir>/<app>/) (releases, C(current), the audit log).
    type: path
    default: /srv
"""

    # The run a module that changes a host works for: it must hold the host's deploy lock.
    RUN = r"""
options:
  run:
    description:
      - The run id. The module changes nothing unless this run holds the app's deploy lock on the host
        (see M(asgi.deploy.lock)); it checks under the host flock, so a take-over cannot happen meanwhile.
      - Also recorded in the audit log.
    type: str
    required: true
  flock_wait:
    description:
      - Seconds to wait for the host flock, held while another build, hook or handover of the app runs on the host
        (for instance one a dead controller left running), before failing as busy.
    type: int
    default: 300
  actor:
    description: Who runs it, for the audit log.
    type: str
    default: ""
  host:
    description: Inventory name of the host, for the audit log.
    type: str
    default: ""
"""

    # A module that reads the host and changes nothing.
    READ_ONLY = r"""
options: {}
attributes:
  check_mode:
    support: full
    description: Reads only.
  diff_mode:
    support: none
    description: Reads only.
"""

    # How an instance is found ready: the gate of a handover, and the CI gate's (asgi.deploy.check).
    READINESS = r"""
options:
  readiness_path:
    description: Path that answers an accepted status once an instance can serve.
    type: str
    default: /readyz
  readiness_timeout:
    description: Seconds an instance gets to become ready.
    type: int
    default: 60
  readiness_headers:
    description:
      - Headers the readiness probe sends, for example C(Host) (an app that checks host names answers 400 to one it
        does not allow; the default is C(localhost)) and C(X-Forwarded-Proto) (an app that redirects to HTTPS).
    type: dict
    default: {}
  readiness_status:
    description: Statuses that count as ready.
    type: list
    elements: int
    default: [200]
"""
