"""Secrets from ansible-vault, as teams keep them: the reference app's token vaulted with encrypt_string in a
group_vars file of the inventory. A deploy with the vault password hands the app the secret; the read-only playbooks
(status, logs) run without it, as an on-call engineer without the vault runs them; a deploy without it is refused
before any host changes, saying how to give the password."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import testinfra

PROJECT = Path(os.environ["MOLECULE_PROJECT_DIRECTORY"])
SOURCES = PROJECT / "build/molecule-deploy"
PLAYBOOKS = PROJECT / "playbooks"
HOSTS = ["deploy-web1", "deploy-web2", "deploy-web3"]
TOKEN = "vaulted-token-7f3a"  # noqa: S105 (a test value)


def on(name):
    return testinfra.get_host(f"podman://{name}")


@pytest.fixture(scope="module")
def vault(tmp_path_factory):
    """An inventory layer with the vaulted secret (group_vars/asgi/vault.yml), and the password file."""
    home = tmp_path_factory.mktemp("vault")
    password = home / "vault-password.txt"
    password.write_text("lab-vault-password\n")
    encrypted = subprocess.run(
        ["ansible-vault", "encrypt_string", "--vault-password-file", str(password), TOKEN, "--name", "demo_api_token"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    layer = home / "inventory"
    (layer / "group_vars/asgi").mkdir(parents=True)
    (layer / "hosts.yml").write_text("all:\n  children:\n    asgi: {}\n")
    indented = "\n".join("  " + line for line in encrypted.splitlines())
    (layer / "group_vars/asgi/vault.yml").write_text(f"---\nservice_secrets:\n{indented}\n")
    return {"inventory": str(layer), "password": str(password)}


def test_a_vaulted_secret_reaches_the_app_and_read_only_runs_need_no_password(playbook, vault):
    version = {"version": "3.0.0", "app_source": str(SOURCES / "app-3.0.0"), "strategy": "restart"}
    refused = playbook(PLAYBOOKS / "deploy.yml", version, args=("-i", vault["inventory"]))
    said = " ".join((refused.stdout + refused.stderr).split())
    assert refused.returncode != 0 and "service_secrets is vaulted and this run has no vault password" in said, said[
        -2000:
    ]
    deployed = playbook(PLAYBOOKS / "deploy.yml", version,
                        args=("-i", vault["inventory"], "--vault-password-file", vault["password"]))  # fmt: skip
    assert deployed.returncode == 0, (deployed.stdout + deployed.stderr)[-3000:]
    for name in HOSTS:
        host = on(name)
        settings = host.file("/srv/demo/deployed-settings.sha256").content_string.strip()
        secret = host.file(f"/etc/asgi-deploy/demo/settings/{settings}/credentials/demo_api_token")
        assert secret.content_string.strip() == TOKEN and secret.mode == 0o600, name
    for book in ("status.yml", "logs.yml"):
        shown = playbook(PLAYBOOKS / book, {"asgi_since": "-5min"}, args=("-i", vault["inventory"]))
        assert shown.returncode == 0, (book, (shown.stdout + shown.stderr)[-3000:])
