#!/usr/bin/python
# Copyright: asgi.deploy maintainers
# MIT License (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: front_door
short_description: Put Debian's nginx in front of an app's Unix socket - TLS, redirect, WebSockets, assets, maintenance
version_added: 0.3.0
description:
  - With O(state=present), writes the app's nginx server blocks (C(/etc/nginx/sites-available/asgi-<app>.conf), linked
    from C(sites-enabled)) - an HTTP server that redirects to HTTPS, and an HTTPS one (HTTP/2) that proxies to the
    app's Unix socket with the WebSocket upgrade headers, C(X-Forwarded-For) set to the client's address and
    C(X-Forwarded-Proto), unbuffered streams, the app's access log in the journal (C(journalctl -t nginx_<app>)) -
    the certificate and key given as content (root-only, under C(/etc/asgi-deploy/<app>/tls/)), and the maintenance
    page. Then runs C(nginx -t); when it fails, every file goes back as it was and the module fails with nginx's
    words. Otherwise nginx is reloaded (started when it is not running), never restarted.
  - Static files, when O(static_url) is set, come from C(<base>/<app>/assets/current) - the live release's files and
    the hashed files of the releases kept, which a handover bridges (see M(asgi.deploy.handover)'s C(static_dir)).
  - With O(state=maintenance), turns maintenance on or off (O(maintenance)) - nginx answers 503 with the page and
    C(Retry-After) to everything but the readiness path, without a reload - and writes it to the audit log.
  - Several apps share a host's nginx by their server names; each has its own file.
author: asgi.deploy maintainers (!UNKNOWN)
extends_documentation_fragment:
  - asgi.deploy.app
options:
  state:
    description: Write the front door (V(present)) or turn maintenance on or off (V(maintenance)).
    type: str
    choices: [present, maintenance]
    default: present
  maintenance:
    description: With O(state=maintenance), whether the app is under maintenance.
    type: bool
  server_names:
    description: Host names the app answers to (nginx's C(server_name); C(*.example.com) allowed).
    type: list
    elements: str
    default: []
  socket:
    description: The app's Unix socket (C(asgi_listen_unix)).
    type: str
    default: ""
  tls:
    description: Serve HTTPS, and redirect HTTP to it. Without it, plain HTTP is proxied (a TLS terminator in front).
    type: bool
    default: true
  certificate:
    description: The certificate chain, PEM content (from a vault, say). Exclusive with O(certificate_file).
    type: str
    default: ""
  certificate_key:
    description: Its private key, PEM content.
    type: str
    default: ""
  certificate_file:
    description: A certificate chain already on the host (what certbot or lego keeps renewed).
    type: str
    default: ""
  certificate_key_file:
    description: Its key, on the host.
    type: str
    default: ""
  http_port:
    description: Port of the HTTP server.
    type: int
    default: 80
  https_port:
    description: Port of the HTTPS server.
    type: int
    default: 443
  http2:
    description: Serve HTTP/2 over TLS.
    type: bool
    default: true
  hsts_max_age:
    description: Seconds of C(Strict-Transport-Security); 0 sends none.
    type: int
    default: 0
  max_body_size:
    description: Largest request body (nginx's C(client_max_body_size)).
    type: str
    default: 10m
  read_timeout:
    description: Seconds a response may stay silent before nginx ends it - long enough for the app's streams.
    type: int
    default: 3600
  buffering:
    description: Let nginx buffer the app's responses (off, streams reach the client as the app writes them).
    type: bool
    default: false
  static_url:
    description: URL prefix of the static files nginx serves itself (C(/static/)); empty leaves them to the app.
    type: str
    default: ""
  readiness_path:
    description: The app's readiness path; it answers through the front door under maintenance too.
    type: str
    default: /readyz
  retry_after:
    description: Seconds in the maintenance answer's C(Retry-After).
    type: int
    default: 300
  maintenance_page:
    description: HTML of the maintenance page; empty for a plain default one.
    type: str
    default: ""
  run:
    description: The run id, for the audit log.
    type: str
    default: ""
  actor:
    description: Who runs it, for the audit log.
    type: str
    default: ""
  host:
    description: Inventory name of the host, for the audit log.
    type: str
    default: ""
attributes:
  check_mode:
    support: full
    description: Says what would change, and checks nothing with nginx.
  diff_mode:
    support: full
    description: Shows the server blocks before and after.
"""

EXAMPLES = r"""
- name: Put nginx in front of billing
  asgi.deploy.front_door:
    app: billing
    server_names: [billing.example.com]
    socket: /run/billing/billing.sock
    certificate_file: /etc/letsencrypt/live/billing.example.com/fullchain.pem
    certificate_key_file: /etc/letsencrypt/live/billing.example.com/privkey.pem
    static_url: /static/

- name: Put billing under maintenance
  asgi.deploy.front_door:
    app: billing
    state: maintenance
    maintenance: true
"""

RETURN = r"""
site:
  description: The app's nginx file.
  returned: always
  type: str
  sample: /etc/nginx/sites-available/asgi-billing.conf
written:
  description: The files that changed (the key's name only).
  returned: always
  type: list
  elements: str
reloaded:
  description: Whether nginx was reloaded (or started).
  returned: always
  type: bool
nginx:
  description: nginx's version on the host.
  returned: when state is present
  type: str
  sample: 1.22.1
maintenance:
  description: Whether the app is under maintenance now, and since when (C(since), C(run), C(actor)); empty when not.
  returned: always
  type: dict
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.asgi.deploy.plugins.module_utils.front_door import (
    DEFAULT_PAGE,
    FrontDoor,
    nginx_version,
    problems,
    site_config,
)
from ansible_collections.asgi.deploy.plugins.module_utils.host import (
    App,
    app_argument_spec,
    audit,
    point_link,
    read_text,
    record_made,
    write_atomic,
)


def wanted_files(door, spec, config):
    """{path: (content, mode)} the front door is made of."""
    files = {door.site: (config, 0o644), door.page: (spec["maintenance_page"] or DEFAULT_PAGE, 0o644)}
    if spec["tls"] and spec["certificate"]:
        files[door.certificate] = (spec["certificate"].strip() + "\n", 0o600)
        files[door.key] = (spec["certificate_key"].strip() + "\n", 0o600)
    return files


def nginx(module, *args):
    rc, out, err = module.run_command(["nginx", *args])
    return rc, (out + err).strip()


def reload_nginx(module):
    rc, _out, _err = module.run_command(["systemctl", "is-active", "--quiet", "nginx.service"])
    argv = ["systemctl", "reload", "nginx.service"] if rc == 0 else ["systemctl", "enable", "--now", "nginx.service"]
    rc, out, err = module.run_command(argv)
    if rc != 0:
        module.fail_json(msg=[f"nginx: {' '.join(argv)} failed:", *(out + err).strip().splitlines()[-10:]])


def present(module, app, door):
    p = module.params
    said = problems(p)
    if said:
        module.fail_json(msg=["front door: bad input, nothing was changed", *said])
    rc, version_text = nginx(module, "-v")
    if rc != 0:
        module.fail_json(
            msg=["nginx is not installed on this host: install Debian's package (the proxy role does: proxy_install)"]
        )
    version = nginx_version(version_text)
    spec = dict(p, ipv6=os.path.exists("/proc/net/if_inet6"))
    config = site_config(app, spec, version)
    files = wanted_files(door, spec, config)
    before = {path: read_text(path, default=None) for path in files}
    written = [path for path, (content, _mode) in files.items() if before[path] != content]
    linked = os.path.islink(door.enabled) and os.readlink(door.enabled) == door.site
    result = {
        "site": door.site,
        "written": sorted(written),
        "nginx": ".".join(str(n) for n in version),
        "maintenance": door.maintenance(),
        "reloaded": False,
        "diff": {"before": before[door.site] or "", "after": config, "before_header": door.site},
    }
    if not written and linked:
        module.exit_json(changed=False, **result)
    if module.check_mode:
        module.exit_json(changed=True, **result)
    for path in written:
        os.makedirs(os.path.dirname(path), mode=0o700 if path.startswith(door.tls) else 0o755, exist_ok=True)
        write_atomic(path, files[path][0], files[path][1])
    point_link(door.enabled, door.site)
    rc, said = nginx(module, "-t", "-q")
    if rc != 0:
        # Back exactly as it was: nginx never loads a configuration that does not pass.
        for path in written:
            if before[path] is None:
                os.unlink(path)
            else:
                write_atomic(path, before[path], files[path][1])
        if not linked:
            point_link(door.enabled, "")
        module.fail_json(msg=["nginx -t refused the front door, so nothing changed:", *said.splitlines()[-10:]])
    reload_nginx(module)
    record_made(app, files=[door.site, door.enabled], dirs=[door.dir, door.tls])
    audit(app, {"event": "front_door", "run": p["run"], "actor": p["actor"], "host": p["host"],
                "server_names": p["server_names"], "written": sorted(written)})  # fmt: skip
    module.exit_json(changed=True, **dict(result, reloaded=True))


def maintenance(module, app, door):
    p = module.params
    wanted = bool(p["maintenance"])
    changed = wanted != bool(door.maintenance())
    if changed and not module.check_mode:
        door.set_maintenance(wanted, run=p["run"], actor=p["actor"])
        record_made(app, dirs=[door.dir])
        audit(app, {"event": "maintenance", "state": "on" if wanted else "off", "run": p["run"], "actor": p["actor"],
                    "host": p["host"]})  # fmt: skip
    module.exit_json(changed=changed, site=door.site, written=[], reloaded=False, maintenance=door.maintenance())


def main():
    module = AnsibleModule(
        argument_spec=app_argument_spec(
            state=dict(type="str", choices=["present", "maintenance"], default="present"),
            maintenance=dict(type="bool"),
            server_names=dict(type="list", elements="str", default=[]),
            socket=dict(type="str", default=""),
            tls=dict(type="bool", default=True),
            certificate=dict(type="str", default=""),
            certificate_key=dict(type="str", default="", no_log=True),
            certificate_file=dict(type="str", default=""),
            certificate_key_file=dict(type="str", default=""),
            http_port=dict(type="int", default=80),
            https_port=dict(type="int", default=443),
            http2=dict(type="bool", default=True),
            hsts_max_age=dict(type="int", default=0),
            max_body_size=dict(type="str", default="10m"),
            read_timeout=dict(type="int", default=3600),
            buffering=dict(type="bool", default=False),
            static_url=dict(type="str", default=""),
            readiness_path=dict(type="str", default="/readyz"),
            retry_after=dict(type="int", default=300),
            maintenance_page=dict(type="str", default=""),
            run=dict(type="str", default=""),
            actor=dict(type="str", default=""),
            host=dict(type="str", default=""),
        ),
        required_if=[("state", "maintenance", ("maintenance",))],
        supports_check_mode=True,
    )
    app = App(module.params["app"], module.params["base_dir"])
    door = FrontDoor(app)
    if module.params["state"] == "maintenance":
        maintenance(module, app, door)
    present(module, app, door)


if __name__ == "__main__":
    main()
