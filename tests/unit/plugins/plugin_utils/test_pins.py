"""The app's lock as its team has it, read with packaging, judged for each target host."""

import pytest
from ansible_collections.asgi.deploy.plugins.plugin_utils import pins

HASH_A = "a" * 64
LOCK = f"""# header
--index-url https://pypi.internal.example/simple
--extra-index-url=https://mirror.internal.example/simple
--find-links /srv/wheels
FastAPI==0.165.0 \\
    --hash=sha256:{HASH_A}
    # via -r requirements.in
uvloop==0.23.0 ; sys_platform != 'win32' \\
    --hash=sha256:{"b" * 64} \\
    --hash=sha256:{"c" * 64}
greenlet==3.3.0 ; platform_machine == 'x86_64' and python_full_version >= '3.11.4' --hash=sha256:{"d" * 64}
"""
X86 = {"python": "3.11", "full": "3.11.2", "machine": "x86_64", "glibc": "2.36", "sys_platform": "linux"}


def write(tmp_path, text, name="requirements.lock"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_lock_is_read_with_names_canonical_markers_and_every_hash_and_its_index_lines(tmp_path):
    found, options = pins.parse_requirements(write(tmp_path, LOCK))
    fastapi, uvloop = found[:2]
    assert fastapi == {"name": "fastapi", "version": "0.165.0", "extras": [], "marker": "", "hashes": [HASH_A]}
    assert uvloop["marker"] == 'sys_platform != "win32"' and len(uvloop["hashes"]) == 2
    assert options == [
        ("--index-url", "https://pypi.internal.example/simple"),
        ("--extra-index-url", "https://mirror.internal.example/simple"),
        ("--find-links", "/srv/wheels"),
    ]


def test_markers_are_judged_for_each_target_host_never_the_controller(tmp_path):
    lock = pins.read_pins(write(tmp_path, LOCK))

    def names(target):
        return [p["name"] for p in pins.select(lock, target)]

    assert names(X86) == ["fastapi", "uvloop"]  # Debian 12's 3.11.2 is older than 3.11.4
    assert names({**X86, "full": "3.11.7"}) == ["fastapi", "uvloop", "greenlet"]
    assert names({**X86, "machine": "aarch64", "full": "3.13.5", "python": "3.13"}) == ["fastapi", "uvloop"]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("fastapi==0.165.0\nuvloop==0.23.0\n", "without hashes: fastapi, uvloop"),
        (f"fastapi>=0.1 --hash=sha256:{HASH_A}\n", "not pinned with ==: fastapi"),
        (f"-e .\nfastapi==1 --hash=sha256:{HASH_A}\n", "--no-emit-project"),
        (f"--no-binary :all:\nfastapi==1 --hash=sha256:{HASH_A}\n", "option lines may only say where wheels come from"),
        (f"fastapi==1 ; python_version >>> '3' --hash=sha256:{HASH_A}\n", "cannot read"),
    ],
)
def test_a_lock_that_cannot_make_a_release_is_refused_naming_why(tmp_path, text, problem):
    with pytest.raises(pins.BadInput, match=problem):
        pins.parse_requirements(write(tmp_path, text))


SERVER = "".join(
    f"{name}=={version} ; platform_machine == 'aarch64' --hash=sha256:{digest * 64}\n"
    for name, version, digest in (
        ("gunicorn", "27.0.1", "d"),
        ("uvicorn-worker", "0.4.0", "e"),
        ("uvicorn", "0.54.0", "f"),
    )
)


def test_a_lock_whose_markers_leave_the_server_stack_out_for_a_host_is_refused_for_that_host(tmp_path):
    lock = pins.read_pins(write(tmp_path, SERVER))
    pins.check_server_stack(lock["pins"], "uvicorn_worker.UvicornWorker", "l")  # every package is there
    with pytest.raises(
        pins.BadInput, match=r"leave out gunicorn, uvicorn-worker, uvicorn for Python 3\.11\.2 on x86_64"
    ):
        pins.check_server_stack(pins.select(lock, X86), "uvicorn_worker.UvicornWorker", "l", X86)


def test_platform_tags_cover_every_manylinux_up_to_the_host_glibc():
    tags = pins.platform_tags("x86_64", "2.36")
    assert tags[0] == "manylinux_2_36_x86_64"
    assert "manylinux_2_17_x86_64" in tags and "manylinux2014_x86_64" in tags
    assert "manylinux_2_37_x86_64" not in tags


def wheel(name, digest):
    return f'{{ name = "{name}", path = "wheels/{name}", hashes = {{ sha256 = "{digest * 64}" }} }}'


PYLOCK = (
    'lock-version = "1.0"\ncreated-by = "uv"\nrequires-python = ">=3.11"\ndefault-groups = []\n'
    '[[packages]]\nname = "demo-app"\ndirectory = { path = "." }\n'
    '[[packages]]\nname = "gunicorn"\nversion = "27.0.1"\n'
    f"wheels = [{wheel('gunicorn-27.0.1-py3-none-any.whl', 'd')}]\n"
    '[[packages]]\nname = "uvloop"\nversion = "0.23.0"\nmarker = "sys_platform != \'win32\'"\n'
    f"wheels = [{wheel('uvloop-0.23.0-cp311-cp311-manylinux_2_17_x86_64.whl', 'b')},\n"
    f"  {wheel('uvloop-0.23.0-cp311-cp311-manylinux_2_17_aarch64.whl', 'c')}]\n"
    '[[packages]]\nname = "pytest"\nversion = "9.0.0"\nmarker = "\'dev\' in dependency_groups"\n'
    f"wheels = [{wheel('pytest-9.0.0-py3-none-any.whl', 'e')}]\n"
)


def test_a_pylock_is_read_with_packaging_and_selected_for_each_target(tmp_path):
    lock = pins.read_pins(write(tmp_path, PYLOCK, "pylock.toml"))
    assert [p["name"] for p in lock["pins"]] == ["gunicorn", "uvloop", "pytest"]  # the project itself left out
    chosen = pins.select(lock, X86)
    assert [p["name"] for p in chosen] == ["gunicorn", "uvloop"]  # the dev group is not for production
    assert pins.requirement_lines(chosen).splitlines()[1].startswith("uvloop==0.23.0 --hash=sha256:")


def test_a_pylock_package_without_hashed_wheels_is_refused(tmp_path):
    text = 'lock-version = "1.0"\ncreated-by = "x"\n[[packages]]\nname = "gunicorn"\nversion = "27.0.1"\n'
    text += (
        'sdist = { name = "gunicorn-27.0.1.tar.gz", path = "gunicorn-27.0.1.tar.gz", hashes = { sha256 = "'
        + "a" * 64
        + '" } }\n'
    )
    with pytest.raises(pins.BadInput, match="gunicorn has no pinned version with hashed wheels"):
        pins.read_pins(write(tmp_path, text, "pylock.toml"))


def test_a_requirements_lock_is_used_as_it_is(tmp_path):
    lock = write(tmp_path, LOCK)
    assert pins.export_lock(lock, tmp_path / "cache") == lock


def test_a_uv_lock_exports_where_its_wheels_come_from(tmp_path):
    """uv export with --emit-index-url --emit-find-links: the project's own find-links (or index) goes with the pins,
    so the controller downloads from where the team's lock resolved."""
    links = tmp_path / "links"
    links.mkdir()
    (links / "tinypkg-1.0-py3-none-any.whl").write_bytes(_tiny_wheel())
    project = tmp_path / "proj"
    project.mkdir()
    (project / "pyproject.toml").write_text(
        '[project]\nname = "proj"\nversion = "0.1"\nrequires-python = ">=3.11"\ndependencies = ["tinypkg"]\n'
        f'[tool.uv]\nno-index = true\nfind-links = ["{links}"]\npackage = false\n'
    )
    uv = pins.shutil.which("uv") or str(pins.Path(pins.sys.executable).with_name("uv"))
    pins.subprocess.run([uv, "lock", "--quiet", "--project", str(project)], check=True)
    exported = pins.export_lock(project / "uv.lock", tmp_path / "cache").read_text()
    assert f"--find-links {links}" in exported and "tinypkg==1.0" in exported


def _tiny_wheel():
    import io
    import zipfile

    files = {
        "tinypkg/__init__.py": "x = 1\n",
        "tinypkg-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: tinypkg\nVersion: 1.0\n",
        "tinypkg-1.0.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: t\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        "tinypkg-1.0.dist-info/RECORD": "",
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return buffer.getvalue()
