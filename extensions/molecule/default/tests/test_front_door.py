"""The front door, once, on every controller toolchain: a second app ("edge", the reference app under another name)
behind nginx on both hosts (Debian 12 and 13), on a Unix socket only, with a certificate from a CA made here; it
answers HTTPS with HTTP/2 through nginx, HTTP redirects, and maintenance answers 503 while the readiness path
still answers. The deploy scenario tests the rest (streams, static files, a browser)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

PROJECT = Path(os.environ["MOLECULE_PROJECT_DIRECTORY"])
PLAYBOOKS = PROJECT / "playbooks"
NAME = "edge.lab.test"


@pytest.fixture(scope="module")
def edge(playbook, tmp_path_factory):
    tls = tmp_path_factory.mktemp("tls")
    script = f"""set -eu; cd {tls}
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem -days 2 \\
      -subj "/CN=smoke CA" -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign" \\
      -addext "subjectKeyIdentifier=hash"
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout key.pem -out edge.csr -subj "/CN={NAME}"
    printf '%s\\n' "subjectAltName=DNS:{NAME}" "keyUsage=critical,digitalSignature" "extendedKeyUsage=serverAuth" \\
      "authorityKeyIdentifier=keyid,issuer" > edge.ext
    openssl x509 -req -in edge.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile edge.ext -out cert.pem
    """
    subprocess.run(["bash", "-c", script], check=True, capture_output=True)
    extra = {
        "asgi_app": "edge",
        "asgi_listen_tcp": [],
        "asgi_listen_unix": "/run/edge.sock",
        "asgi_proxy": True,
        "proxy_server_names": [NAME],
        "proxy_tls_certificate": (tls / "cert.pem").read_text(),
        "proxy_tls_certificate_key": (tls / "key.pem").read_text(),
        "version": "1.0.0",
    }
    door = playbook(PLAYBOOKS / "proxy.yml", extra)
    assert door.returncode == 0, (door.stdout + door.stderr)[-3000:]
    deployed = playbook(PLAYBOOKS / "deploy.yml", extra)
    assert deployed.returncode == 0, (deployed.stdout + deployed.stderr)[-3000:]
    return {"extra": extra, "ca": (tls / "ca.pem").read_text()}


def https(host, ca, path, *options):
    host.run("printf '%%s' %s > /tmp/edge-ca.pem", ca)
    return host.run(
        "curl -sS --max-time 10 --cacert /tmp/edge-ca.pem --resolve %s:443:127.0.0.1 " + " ".join(["%s"] * len(options))
        + " %s", NAME, *options, f"https://{NAME}{path}",
    )  # fmt: skip


def test_the_app_answers_https_with_http2_through_nginx_and_http_redirects(host, edge):
    shown = https(host, edge["ca"], "/readyz", "-o", "/dev/null", "-w", "%{http_version} %{http_code}")
    assert shown.stdout == "2 200", (shown.stdout, shown.stderr)
    plain = host.run(f"curl -sS -o /dev/null -w '%{{http_code}}' -H 'Host: {NAME}' http://127.0.0.1/readyz")
    assert plain.stdout == "301"
    assert host.run("nginx -t").rc == 0
    assert host.file("/run/edge.sock").is_socket  # the app's only way in: nginx


def test_maintenance_answers_503_with_retry_after_and_the_readiness_path_still_answers(host, edge, playbook):
    on = playbook(PLAYBOOKS / "maintenance.yml", {**edge["extra"], "maintenance": "on"})
    try:
        assert on.returncode == 0, (on.stdout + on.stderr)[-3000:]
        page = https(host, edge["ca"], "/version", "-D", "-", "-o", "/dev/null")
        assert page.stdout.startswith("HTTP/2 503") and "retry-after: 300" in page.stdout.lower(), page.stdout
        ready = https(host, edge["ca"], "/readyz", "-o", "/dev/null", "-w", "%{http_code}")
        assert ready.stdout == "200"
    finally:
        off = playbook(PLAYBOOKS / "maintenance.yml", {**edge["extra"], "maintenance": "off"})
    assert off.returncode == 0
    assert https(host, edge["ca"], "/version", "-o", "/dev/null", "-w", "%{http_code}").stdout == "200"
