"""The front door's nginx configuration, its checks, maintenance, and the gate through it."""

from __future__ import annotations

import datetime
import http.server
import json
import ssl
import threading

import pytest
from ansible_collections.asgi.deploy.plugins.module_utils.front_door import (
    FrontDoor,
    FrontDoorFailed,
    check_through,
    nginx_version,
    problems,
    site_config,
)

SPEC = {
    "server_names": ["shop.example.com", "www.shop.example.com"],
    "socket": "/run/shop/shop.sock",
    "tls": True,
    "certificate": "PEM",
    "certificate_key": "KEY",
    "certificate_file": "",
    "certificate_key_file": "",
    "http_port": 80,
    "https_port": 443,
    "http2": True,
    "hsts_max_age": 0,
    "max_body_size": "10m",
    "read_timeout": 3600,
    "buffering": False,
    "static_url": "/static/",
    "readiness_path": "/readyz",
    "retry_after": 120,
    "ipv6": True,
}


def test_https_proxies_to_the_socket_with_upgrades_and_the_client_address_http_redirects(app):
    text = site_config(app, SPEC, (1, 22, 1))
    assert "return 301 https://$host$request_uri;" in text
    assert "listen 443 ssl http2;" in text and "listen [::]:443 ssl http2;" in text and "http2 on;" not in text
    assert "proxy_pass http://unix:/run/shop/shop.sock:;" in text
    assert "server_name shop.example.com www.shop.example.com;" in text
    assert "proxy_set_header X-Forwarded-For $remote_addr;" in text  # set, never appended to a client's claim
    assert (
        "proxy_set_header Connection $asgi_demo_connection;" in text
        and "map $http_upgrade $asgi_demo_connection" in text
    )
    assert f"alias {app.root}/assets/current/;" in text
    assert f"if (-f {app.root}/front-door/maintenance.on)" in text and "add_header Retry-After 120 always;" in text
    assert "access_log syslog:server=unix:/dev/log,tag=nginx_demo,nohostname combined;" in text
    assert "proxy_buffering off;" in text and "proxy_read_timeout 3600s;" in text
    assert "Strict-Transport-Security" not in text
    assert f"ssl_certificate {app.config}/tls/cert.pem;" in text


def test_newer_nginx_gets_the_http2_directive_and_other_ports_keep_theirs(app):
    text = site_config(app, {**SPEC, "https_port": 8443, "ipv6": False, "hsts_max_age": 600}, (1, 26, 3))
    assert "listen 8443 ssl;" in text and "    http2 on;" in text and "[::]" not in text
    assert "return 301 https://$host:8443$request_uri;" in text
    assert 'add_header Strict-Transport-Security "max-age=600" always;' in text


def test_without_tls_plain_http_is_proxied(app):
    text = site_config(app, {**SPEC, "tls": False, "static_url": ""}, (1, 22, 1))
    assert "ssl" not in text and "return 301" not in text and "alias" not in text
    assert "proxy_pass http://unix:/run/shop/shop.sock:;" in text


@pytest.mark.parametrize(
    ("change", "said"),
    [
        ({"server_names": []}, "proxy_server_names: name the host names"),
        ({"server_names": ["shop example"]}, "is not a host name"),
        ({"socket": ""}, "set asgi_listen_unix"),
        ({"certificate": ""}, "TLS needs one certificate"),
        ({"certificate_file": "/etc/x.pem"}, "TLS needs one certificate"),
        ({"certificate_key": ""}, "needs its key"),
        ({"static_url": "/static"}, "must start and end with /"),
    ],
)
def test_bad_options_are_named_before_anything_is_written(change, said):
    assert any(said in p for p in problems({**SPEC, **change})), problems({**SPEC, **change})
    assert problems(SPEC) == []


def test_nginx_versions_are_read_from_its_banner():
    assert nginx_version("nginx version: nginx/1.22.1\n") == (1, 22, 1)
    assert nginx_version("") == (0, 0, 0)


def test_maintenance_is_a_file_turned_on_and_off_once(app):
    door = FrontDoor(app)
    assert door.maintenance() == {}
    assert door.set_maintenance(True, run="r1", actor="ops", now=0) is True
    assert door.set_maintenance(True) is False
    assert door.maintenance() == {"since": "1970-01-01T00:00:00Z", "run": "r1", "actor": "ops"}
    assert door.set_maintenance(False) is True and door.maintenance() == {}


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    """An HTTPS server on loopback with a certificate for shop.example.com from a CA of its own."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    home = tmp_path_factory.mktemp("tls")
    now = datetime.datetime.now(datetime.UTC)

    def certificate(subject, issuer, key, signer, ca, names=()):
        # Extensions as a public CA's: Python 3.13 checks X.509 strictly (a CA without keyUsage is refused).
        usage = dict.fromkeys(["content_commitment", "key_encipherment", "data_encipherment", "key_agreement",
                               "encipher_only", "decipher_only"], False)  # fmt: skip
        builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
                   .not_valid_after(now + datetime.timedelta(days=2))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
                   .add_extension(x509.KeyUsage(digital_signature=not ca, key_cert_sign=ca, crl_sign=ca, **usage),
                                  critical=True)
                   .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()),
                                  critical=False))  # fmt: skip
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), False)
            builder = builder.add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), False)
        return builder.sign(signer, hashes.SHA256())

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    ca = certificate(ca_name, ca_name, ca_key, ca_key, True)
    leaf = certificate(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "shop")]), ca_name, key, ca_key, False,
                       ["shop.example.com"])  # fmt: skip
    (home / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (home / "cert.pem").write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    (home / "key.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    seen = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append({"path": self.path, "host": self.headers["Host"]})
            self.send_response(200 if self.path == "/readyz" else 503)
            self.end_headers()
            self.wfile.write(json.dumps({"ready": True}).encode())

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(home / "cert.pem", home / "key.pem")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield {"port": server.server_address[1], "ca": str(home / "ca.pem"), "seen": seen}
    server.shutdown()


def test_the_gate_asks_through_the_front_door_as_a_client_of_the_name_would(tls_server):
    port, ca = tls_server["port"], tls_server["ca"]
    assert check_through("shop.example.com", port, "/readyz", [200], cafile=ca) == 200
    assert tls_server["seen"][-1] == {"path": "/readyz", "host": "shop.example.com"}
    with pytest.raises(FrontDoorFailed, match="answered 503"):
        check_through("shop.example.com", port, "/other", [200], cafile=ca)
    with pytest.raises(FrontDoorFailed, match="certificate"):  # a name the certificate does not carry
        check_through("other.example.com", port, "/readyz", [200], cafile=ca)
    with pytest.raises(FrontDoorFailed, match="certificate verify failed"):  # a CA the host does not trust
        check_through("shop.example.com", port, "/readyz", [200])
