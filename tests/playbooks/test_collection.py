"""The collection as Galaxy, AWX and a user's controller get it: the built tarball, installed from itself."""

from __future__ import annotations

import json
import os
import re
import subprocess
import tarfile
from pathlib import PurePosixPath

import pytest
import yaml
from apps import PROJECT

LINK = re.compile(r"\]\(([^)\s]+)\)")


def clean_environment(**extra):
    """No ANSIBLE_* of this checkout's: the tarball must stand on its own."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}, **extra}


def run(argv, cwd, **env):
    return subprocess.run(argv, cwd=cwd, env=clean_environment(**env), capture_output=True, text=True, check=True)


@pytest.fixture(scope="session")
def built(tmp_path_factory):
    where = tmp_path_factory.mktemp("built")
    run(["ansible-galaxy", "collection", "build", "--output-path", str(where), str(PROJECT)], cwd=where)
    (tarball,) = where.glob("*.tar.gz")
    return tarball


@pytest.fixture(scope="session")
def installed(built, tmp_path_factory):
    collections = tmp_path_factory.mktemp("collections")
    run(["ansible-galaxy", "collection", "install", "--offline", "-p", str(collections), str(built)], cwd=collections)
    return collections


def members(tarball):
    with tarfile.open(tarball) as tar:
        return {PurePosixPath(m.name) for m in tar.getmembers()}


def read(tarball, name):
    with tarfile.open(tarball) as tar:
        return tar.extractfile(name).read().decode()


def test_the_tarball_is_release_0_3_0_with_the_galaxy_readme(built):
    assert built.name == "asgi-deploy-0.3.0.tar.gz"
    manifest = json.loads(read(built, "MANIFEST.json"))["collection_info"]
    assert manifest["version"] == "0.3.0"
    assert manifest["readme"] == "docs/README.md"
    assert all(manifest[key].startswith("https://") for key in ("repository", "documentation", "issues"))
    assert "0.3.0" in read(built, "CHANGELOG.rst")


def test_every_link_of_the_readme_resolves_inside_the_tarball(built):
    inside = members(built)
    readme = PurePosixPath(json.loads(read(built, "MANIFEST.json"))["collection_info"]["readme"])
    links = [link.split("#")[0] for link in LINK.findall(read(built, str(readme)))]
    assert links, "the README links to the docs"
    missing = []
    for link in links:
        if link.startswith(("http://", "https://")) or not link:
            continue
        target = PurePosixPath(os.path.normpath(str(readme.parent / link)))
        if target not in inside:
            missing.append(link)
    assert not missing, f"links of {readme} that are not in the tarball: {missing}"


def test_no_development_tree_is_shipped(built):
    tops = {m.parts[0] for m in members(built)}
    assert not tops & {".venv", ".venv-2.21", "molecule", "tests", "tools", "bench", "build", "inventories", ".git"}


def test_every_module_is_documented_in_the_installed_collection(installed):
    env = {"ANSIBLE_COLLECTIONS_PATH": str(installed)}
    listed = run(["ansible-doc", "-t", "module", "-l", "asgi.deploy", "--json"], cwd=installed, **env).stdout
    modules = sorted(json.loads(listed))
    shipped = sorted(f"asgi.deploy.{p.stem}" for p in (PROJECT / "plugins/modules").glob("*.py"))
    assert modules == shipped
    docs = json.loads(run(["ansible-doc", "-t", "module", "--json", *modules], cwd=installed, **env).stdout)
    for name in modules:
        assert docs[name]["doc"]["short_description"], name
        assert docs[name]["return"] is not None, f"{name} documents no return values"


def test_every_filter_is_documented_in_the_installed_collection(installed):
    env = {"ANSIBLE_COLLECTIONS_PATH": str(installed)}
    listed = json.loads(
        run(["ansible-doc", "-t", "filter", "-l", "asgi.deploy", "--json"], cwd=installed, **env).stdout
    )
    exported = set()
    for path in (PROJECT / "plugins/filter").glob("*.py"):
        # FilterModule.filters() maps each name to the function of that name.
        exported |= {
            name
            for name, function in re.findall(r'"(\w+)": (\w+)\b', path.read_text().split("def filters(self):")[1])
            if name == function
        }
    assert {name.removeprefix("asgi.deploy.") for name in listed} == exported
    assert all(listed.values()), [name for name, short in listed.items() if not short]


def test_the_execution_environment_definition_builds_a_context_naming_the_collection(tmp_path):
    definition = PROJECT / "docs/ee/execution-environment.yml"
    run(["ansible-builder", "create", "-f", str(definition), "-c", str(tmp_path / "context")], cwd=tmp_path)
    requirements = yaml.safe_load((tmp_path / "context/_build/requirements.yml").read_text())
    assert {c["name"] for c in requirements["collections"]} == {"asgi.deploy"}
    assert "ansible-galaxy collection install" in (tmp_path / "context/Containerfile").read_text()


def test_an_execution_environment_build_finds_what_the_collection_needs(installed):
    said = run(["ansible-builder", "introspect", str(installed)], cwd=installed).stdout
    found = yaml.safe_load(said.split("\n", 1)[1])
    python = {re.split(r"[<>=\s]", line)[0] for line in found["python"]}
    assert {"uv", "pip", "packaging"} <= python, found
    assert any(line.startswith("git ") for line in found["system"]), found
