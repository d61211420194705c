"""Bad input stops the role with a message naming the problem, and changes nothing."""

import os
import re
from pathlib import Path

import pytest

APP = "/srv/demo"
PROJECT = Path(os.environ["MOLECULE_PROJECT_DIRECTORY"])
SCENARIO = Path(__file__).resolve().parents[1]
WORK = PROJECT / "build/molecule-release"


def lock_without(predicate, name):
    """Write a copy of the app lock with the requirement blocks for which predicate is true removed."""
    text = (PROJECT / "app/requirements.lock").read_text()
    blocks = re.split(r"\n(?=[a-z0-9])", text)
    path = WORK / name
    path.write_text("\n".join(b for b in blocks if not predicate(b)) + "\n")
    return str(path)


def state(host):
    releases = host.run("ls -1 %s/releases", APP).stdout.split()
    current = host.run("readlink %s/current", APP).stdout.strip()
    return releases, current


_ATTEMPTS = {}


def attempt(playbook, case):
    """Run bad_input.yml once per case for all hosts; return (rc, output)."""
    if case in _ATTEMPTS:
        return _ATTEMPTS[case]
    extra = {
        "no_hashes": lambda: {"asgi_lockfile": lock_without(lambda b: False, "plain.lock")},
        "missing_package": lambda: {
            "asgi_lockfile": lock_without(lambda b: b.startswith("starlette=="), "no-starlette.lock")
        },
        "unsupported_python": lambda: {"release_supported_pythons": ["3.99"]},
        "bad_version": lambda: {"release_version": "1.0/../../etc"},
        # The app reads its settings at import, and these hosts have none to give it.
        "settings_at_import": lambda: {"release_import_check": True},
    }[case]()
    if case == "no_hashes":
        path = Path(extra["asgi_lockfile"])
        path.write_text(re.sub(r" \\\n\s+--hash=sha256:[0-9a-f]+", "", path.read_text()))
    result = playbook(SCENARIO / "bad_input.yml", extra)
    _ATTEMPTS[case] = (result.returncode, result.stdout + result.stderr)
    return _ATTEMPTS[case]


@pytest.fixture
def unchanged(host):
    before = state(host)
    yield
    assert state(host) == before, "bad input changed the releases or the current link"


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("no_hashes", r"has requirements without hashes: .*fastapi"),
        ("missing_package", r"starlette"),
        ("unsupported_python", r"runs Python 3\.\d+\.\d+ .*supported: 3\.99"),
        ("bad_version", r"give -e asgi_version=V .*not .{0,3}1\.0/\.\./\.\./etc"),
        (
            "settings_at_import",
            r"importing demo_app\.main failed in the app's settings: ValidationError: environment: Field required",
        ),
    ],
)
def test_bad_input_is_refused_with_a_clear_message(host, playbook, unchanged, case, message):
    rc, output = attempt(playbook, case)
    assert rc != 0
    # Messages wrap in the callback's YAML: compare with the line breaks undone.
    assert re.search(message, " ".join(output.split())), output[-3000:]


def test_tampered_wheel_on_the_host_is_rejected_and_leaves_nothing_behind(host, playbook, unchanged):
    wheels = host.run("ls -d %s/wheels/*/", APP).stdout.split()
    assert wheels, "no wheelhouse on the host"
    sabotage = ("set -e; for d in {dirs}; do w=$(ls $d/idna-*.whl); cp $w $w.orig; echo x >> $w; done").format(
        dirs=" ".join(wheels)
    )
    host.run_expect([0], sabotage)
    try:
        result = playbook(SCENARIO / "bad_input.yml", limit=host.backend.get_hostname())
    finally:
        # Back into the same file: the wheel store holds it too (a hard link), and must hold it whole.
        host.run_expect([0], "for o in %s/wheels/*/idna-*.whl.orig; do cat $o > ${o%%.orig}; rm $o; done", APP)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert re.search(r"(?i)hash", output), output[-3000:]
    assert "could not be built" in output
