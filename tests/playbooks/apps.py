"""Copies of examples/notes, changed the way a team's commit would change them, and check.yml on them."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import yaml

PROJECT = Path(__file__).resolve().parents[2]
EXAMPLES = PROJECT / "examples"
UV = shutil.which("uv") or str(PROJECT / ".venv/bin/uv")


def app_copy(where: Path, name: str = "notes", lock: str = "uv.lock") -> Path:
    """examples/``name`` as its team has it, locked the way ``lock`` says (uv.lock or a hashed requirements.lock)."""
    app = where / name
    shutil.copytree(EXAMPLES / name, app, ignore=shutil.ignore_patterns("tests", "__pycache__", "*.lock", "*.sqlite3"))
    relock(app, lock)
    return app


def relock(app: Path, lock: str = "uv.lock") -> Path:
    if lock == "uv.lock":
        argv = [UV, "lock", "--quiet", "--project", str(app)]
    else:
        argv = [UV, "pip", "compile", "--quiet", "--universal", "--generate-hashes", "pyproject.toml", "-o", lock]
    subprocess.run(argv, cwd=app, check=True)
    return app / lock


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} is not in {path}"
    path.write_text(text.replace(old, new, 1))


def run_check(where: Path, app: Path, cache: Path, lock: str = "uv.lock", **options) -> subprocess.CompletedProcess:
    """check.yml with an inventory of one CI host for ``app``; the report lands in ``where``/report.json."""
    inventory = {
        "asgi": {
            "hosts": {"ci": {"ansible_connection": "local"}},
            "vars": {
                "asgi_app": "notes",
                "asgi_entrypoint": "notes.app:create_app()",
                "asgi_lockfile": str(app / lock),
                "asgi_app_source": str(app),
                "asgi_readiness_path": "/health",
                "release_cache_dir": str(cache),
                "service_secrets": {"api_token": "ci-token"},
                "service_check_paths": ["/health", "/notes"],
                "service_check_seconds": 4,
                "service_check_report": str(where / "report.json"),
                **options,
            },
        }
    }
    (where / "inventory.yml").write_text(yaml.safe_dump(inventory))
    env = {**os.environ, "ANSIBLE_CONFIG": str(PROJECT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"}
    return subprocess.run(
        ["ansible-playbook", "-i", str(where / "inventory.yml"), str(PROJECT / "playbooks/check.yml")],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
