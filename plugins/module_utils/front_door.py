# Copyright: asgi.deploy maintainers
# MIT License (see LICENSE)
"""The front door of an app on a host: Debian's nginx in front of the app's Unix socket.

Layout (one owner of these names)::

    /etc/nginx/sites-available/asgi-<app>.conf   the app's server blocks (HTTP redirect, HTTPS)
    /etc/nginx/sites-enabled/asgi-<app>.conf     a link to it
    /etc/asgi-deploy/<app>/tls/{cert,key}.pem    certificates given as content (root-only)
    <base>/<app>/front-door/maintenance.html     the page a maintenance shows
    <base>/<app>/front-door/maintenance.on       present while the app is under maintenance (JSON: since, run, actor)
    <base>/<app>/assets/current                  the bridged static files (module_utils/assets.py)

Maintenance is a file nginx tests on every request: turning it on or off never reloads nginx.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import socket
import ssl

from ansible_collections.asgi.deploy.plugins.module_utils.host import now_iso, read_text, write_atomic

SITES_AVAILABLE = "/etc/nginx/sites-available"
SITES_ENABLED = "/etc/nginx/sites-enabled"
# nginx 1.25.1 made HTTP/2 a directive of its own ("listen ... http2" is deprecated from then on).
HTTP2_DIRECTIVE = (1, 25, 1)
DEFAULT_PAGE = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Down for maintenance</title>
<style>body{font-family:sans-serif;max-width:40em;margin:4em auto;color:#222}</style></head>
<body><h1>Down for maintenance</h1><p>We will be back shortly.</p></body>
</html>
"""
NAME = re.compile(
    r"^(\*\.)?[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)


class FrontDoor:
    """Paths of one app's front door; every directory is configurable for tests."""

    def __init__(self, app, sites_available=SITES_AVAILABLE, sites_enabled=SITES_ENABLED):
        self.app = app
        self.site = os.path.join(sites_available, f"asgi-{app.name}.conf")
        self.enabled = os.path.join(sites_enabled, f"asgi-{app.name}.conf")
        self.tls = os.path.join(app.config, "tls")
        self.certificate = os.path.join(self.tls, "cert.pem")
        self.key = os.path.join(self.tls, "key.pem")
        self.dir = os.path.join(app.root, "front-door")
        self.page = os.path.join(self.dir, "maintenance.html")
        self.flag = os.path.join(self.dir, "maintenance.on")
        self.assets = os.path.join(app.root, "assets", "current")

    def maintenance(self):
        """{since, run, actor} while the app is under maintenance, {} otherwise."""
        text = read_text(self.flag, default=None)
        if text is None:
            return {}
        try:
            found = json.loads(text)
        except ValueError:
            found = {}
        return found if isinstance(found, dict) and found else {"since": "unknown"}

    def set_maintenance(self, on, run="", actor="", now=None):
        """Turn maintenance on or off; True when it changed."""
        if on == bool(self.maintenance()):
            return False
        if on:
            os.makedirs(self.dir, mode=0o755, exist_ok=True)
            write_atomic(self.flag, json.dumps({"since": now_iso(now), "run": run, "actor": actor}) + "\n", 0o644)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.flag)
        return True


def nginx_version(text):
    """(major, minor, patch) from ``nginx -v``'s output ("nginx version: nginx/1.22.1"); (0, 0, 0) if unknown."""
    found = re.search(r"nginx/(\d+)\.(\d+)\.(\d+)", text or "")
    return tuple(int(part) for part in found.groups()) if found else (0, 0, 0)


def problems(spec):
    """What is wrong with a front door's options, before anything is written."""
    found = []
    if not spec.get("server_names"):
        found.append("proxy_server_names: name the host names the app answers to (nginx routes by them)")
    for name in spec.get("server_names") or []:
        if not NAME.match(str(name)):
            found.append(f"proxy_server_names: {name!r} is not a host name")
    if not str(spec.get("socket") or "").startswith("/run/"):
        found.append("the front door proxies to the app's Unix socket: set asgi_listen_unix (a path under /run/)")
    if spec.get("tls"):
        given = bool(spec.get("certificate")), bool(spec.get("certificate_file"))
        if given[0] == given[1]:
            found.append("TLS needs one certificate: proxy_tls_certificate (content) or proxy_tls_certificate_file")
        if bool(spec.get("certificate_key")) != given[0] or bool(spec.get("certificate_key_file")) != given[1]:
            found.append("a TLS certificate needs its key, given the same way (proxy_tls_certificate_key[_file])")
    for name in ("static_url",):
        value = str(spec.get(name) or "")
        if value and not (value.startswith("/") and value.endswith("/")):
            found.append(f"proxy_{name}: {value!r} must start and end with /")
    return found


def _ident(app_name):
    return re.sub(r"[^A-Za-z0-9_]", "_", app_name)


def _listen(port, spec, ssl=False, http2_in_listen=False):
    flags = (" ssl" if ssl else "") + (" http2" if http2_in_listen else "")
    lines = [f"    listen {port}{flags};"]
    if spec.get("ipv6"):
        lines.append(f"    listen [::]:{port}{flags};")
    return lines


def _proxy(spec, ident):
    socket = spec["socket"]
    return [
        f"        proxy_pass http://unix:{socket}:;",
        "        proxy_http_version 1.1;",
        "        proxy_set_header Host $host;",
        # nginx is the edge: the client's address replaces whatever a client claimed, never appended to it (the
        # app trusts the forwarded headers on its socket, which only nginx can reach).
        "        proxy_set_header X-Forwarded-For $remote_addr;",
        "        proxy_set_header X-Forwarded-Proto $scheme;",
        "        proxy_set_header X-Forwarded-Host $host;",
        "        proxy_set_header Upgrade $http_upgrade;",
        f"        proxy_set_header Connection $asgi_{ident}_connection;",
        f"        proxy_read_timeout {int(spec['read_timeout'])}s;",
        f"        proxy_send_timeout {int(spec['read_timeout'])}s;",
        # Streams (event streams, long polls) reach the client as the app writes them.
        f"        proxy_buffering {'on' if spec.get('buffering') else 'off'};",
        "        proxy_redirect off;",
    ]


def site_config(app, spec, version):
    """The nginx server blocks of ``app`` (a host.App) for ``spec`` (the module's options) on nginx ``version``."""
    ident = _ident(app.name)
    log = f"syslog:server=unix:/dev/log,tag=nginx_{ident},nohostname"
    common = [f"    server_name {' '.join(spec['server_names'])};", f"    access_log {log} combined;",
              f"    error_log {log} warn;"]  # fmt: skip
    lines = [
        f"# The front door of {app.name}, written by asgi.deploy (the proxy role): edit the inventory, not this file.",
        f"map $http_upgrade $asgi_{ident}_connection {{",
        "    default upgrade;",
        "    '' close;",
        "}",
        "",
        "server {",
        *_listen(spec["http_port"], spec),
        *common,
    ]
    if spec.get("tls"):
        port = "" if int(spec["https_port"]) == 443 else f":{int(spec['https_port'])}"
        lines += [f"    return 301 https://$host{port}$request_uri;", "}", "", "server {"]
        lines += _tls(FrontDoor(app), spec, version) + common
    return "\n".join(lines + _locations(app, spec, ident)) + "\n"


def _tls(door, spec, version):
    http2 = bool(spec.get("http2"))
    directive = http2 and version >= HTTP2_DIRECTIVE
    lines = _listen(spec["https_port"], spec, ssl=True, http2_in_listen=http2 and not directive)
    if directive:
        lines.append("    http2 on;")
    lines += [
        f"    ssl_certificate {spec.get('certificate_file') or door.certificate};",
        f"    ssl_certificate_key {spec.get('certificate_key_file') or door.key};",
        "    ssl_protocols TLSv1.2 TLSv1.3;",
        "    ssl_session_cache shared:asgi_deploy_tls:10m;",
        "    ssl_session_timeout 1d;",
        "    ssl_session_tickets off;",
    ]
    if int(spec.get("hsts_max_age") or 0):
        lines.append(f'    add_header Strict-Transport-Security "max-age={int(spec["hsts_max_age"])}" always;')
    return lines


def _locations(app, spec, ident):
    door = FrontDoor(app)
    lines = [
        f"    client_max_body_size {spec['max_body_size']};",
        f"    error_page 503 @asgi_{ident}_maintenance;",
        "",
        # The readiness path answers under maintenance too: the front-door gate of a deploy under it goes on.
        f"    location = {spec['readiness_path']} {{",
        *_proxy(spec, ident),
        "    }",
    ]
    if spec.get("static_url"):
        lines += [
            "",
            f"    location {spec['static_url']} {{",
            f"        alias {door.assets}/;",
            "        expires 1h;",
            # Hashed names never change content: a browser may keep them for good.
            r'        if ($uri ~ "\.[0-9a-f]{8,}\.[A-Za-z0-9]+$") {',
            "            expires max;",
            "        }",
            "    }",
        ]
    return [
        *lines,
        "",
        "    location / {",
        f"        if (-f {door.flag}) {{",
        "            return 503;",
        "        }",
        *_proxy(spec, ident),
        "    }",
        "",
        f"    location @asgi_{ident}_maintenance {{",
        f"        root {door.dir};",
        "        rewrite ^ /maintenance.html break;",
        f"        add_header Retry-After {int(spec['retry_after'])} always;",
        "        add_header Cache-Control no-store always;",
        "    }",
        "}",
    ]


class FrontDoorFailed(Exception):
    """The app does not answer through its front door."""


def check_through(name, port, path, statuses, cafile="", timeout=10.0, headers=None):
    """GET ``path`` from this host's nginx over HTTPS as a client of ``name`` would (SNI, certificate checked against
    ``name``, Host header), without DNS: the front-door gate of a handover. Returns the status."""
    context = ssl.create_default_context(cafile=cafile or None)
    try:
        with (
            socket.create_connection(("127.0.0.1", int(port)), timeout=timeout) as raw,
            context.wrap_socket(raw, server_hostname=name) as tls,
        ):
            connection = http.client.HTTPConnection(name, int(port), timeout=timeout)
            connection.sock = tls
            connection.request("GET", path, headers={**(headers or {}), "Host": name, "Connection": "close"})
            status = connection.getresponse().status
    except (OSError, ssl.SSLError, http.client.HTTPException) as exc:
        raise FrontDoorFailed(f"https://{name}:{port}{path} through this host's nginx: {exc}") from None
    if status not in statuses:
        raise FrontDoorFailed(f"https://{name}:{port}{path} through this host's nginx answered {status}")
    return status
