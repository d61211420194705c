"""Controller side of a release: the lock, the wheelhouse, the app wheel, the release identity."""

import base64
import hashlib
import tarfile
import zipfile
from pathlib import Path

import pytest
from ansible_collections.asgi.deploy.plugins.plugin_utils import artifacts as ba

HASH_A = "a" * 64
LOCK = f"""# header
fastapi==0.165.0 \\
    --hash=sha256:{HASH_A}
    # via -r requirements.in
uvloop==0.23.0 ; sys_platform != 'win32' \\
    --hash=sha256:{"b" * 64} \\
    --hash=sha256:{"c" * 64}
"""


def write(tmp_path, text, name="requirements.lock"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_wheelhouse_with_a_wheel_the_lock_does_not_allow_is_refused(tmp_path):
    wheel = tmp_path / "fastapi-0.165.0-py3-none-any.whl"
    wheel.write_bytes(b"tampered")
    digest = hashlib.sha256(b"tampered").hexdigest()
    (tmp_path / "SHA256SUMS").write_text(f"{digest}  {wheel.name}\n")
    reqs = [{"name": "fastapi", "version": "0.165.0", "marker": "", "hashes": [HASH_A]}]
    with pytest.raises(ba.BadInput, match="does not match the hashes"):
        ba.verify_wheelhouse(tmp_path, reqs)
    reqs[0]["hashes"].append(digest)
    ba.verify_wheelhouse(tmp_path, reqs)


def test_a_host_is_sent_the_sums_and_only_the_wheels_its_store_lacks(tmp_path):
    home = tmp_path / "wheelhouses/k1"
    home.mkdir(parents=True)
    wheels = {"a-1.0-py3-none-any.whl": b"a" * 3000, "b-2.0-py3-none-any.whl": b"b" * 5000}
    for name, data in wheels.items():
        (home / name).write_bytes(data)
    sums = {name: hashlib.sha256(data).hexdigest() for name, data in wheels.items()}
    (home / "SHA256SUMS").write_text("".join(f"{sums[n]}  {n}\n" for n in sorted(sums)))
    full = tmp_path / "wheelhouses/k1.tar"
    ba.deterministic_tar(home, full)
    house = {"path": str(home), "tarball": str(full)}
    assert ba.shipment(house, []) == (str(full), sorted(wheels))
    tarball, sent = ba.shipment(house, [sums["a-1.0-py3-none-any.whl"], "f" * 64])
    assert sent == ["b-2.0-py3-none-any.whl"]
    with tarfile.open(tarball) as tar:
        assert tar.getnames() == ["SHA256SUMS", "b-2.0-py3-none-any.whl"]
    # The wheel, the sums and three 512-byte headers and end blocks: no padding to a 10 KiB record.
    assert Path(tarball).stat().st_size == 5120 + 512 + 512 + 512 + 1024
    assert ba.shipment(house, [sums["a-1.0-py3-none-any.whl"]]) == (tarball, sent)


def fake_uv(tmp_path, monkeypatch):
    """A `uv build` that writes a wheel named after the source's version file and counts its calls."""
    calls = tmp_path / "calls"
    uv = tmp_path / "bin/uv"
    uv.parent.mkdir()
    uv.write_text(
        "#!/bin/sh\n"
        f'echo build >> "{calls}"\n'
        'out=$5; src=$6; v=$(cat "$src/VERSION"); printf %s "$v" > "$out/app-1.0-py3-none-any.whl"\n'
    )
    uv.chmod(0o755)
    monkeypatch.setenv("PATH", f"{uv.parent}:/usr/bin:/bin")
    return calls


def test_the_wheel_is_built_once_per_source_content_and_never_shared_across_sources(tmp_path, monkeypatch):
    calls = fake_uv(tmp_path, monkeypatch)
    sources = {}
    for name, content in (("good", "good"), ("broken", "broken")):
        src = tmp_path / name
        (src / "__pycache__").mkdir(parents=True)
        (src / "pyproject.toml").write_text("[project]\n")
        (src / "VERSION").write_text(content)
        sources[name] = src
    out = tmp_path / "cache/dist/1.0"
    first = ba.build_app_wheel(sources["good"], out)
    (sources["good"] / "__pycache__/x.pyc").write_text("ignored")
    again = ba.build_app_wheel(sources["good"], out)
    other = ba.build_app_wheel(sources["broken"], out)  # same version, other source
    assert first == again
    assert calls.read_text().count("build") == 2
    assert first.read_text() == "good"
    assert other.read_text() == "broken"
    assert first != other
    (sources["good"] / "VERSION").write_text("changed")
    assert ba.build_app_wheel(sources["good"], out).read_text() == "changed"


SERVER = "".join(
    f"{name}=={version} --hash=sha256:{digest * 64}\n"
    for name, version, digest in (
        ("gunicorn", "27.0.1", "d"),
        ("uvicorn-worker", "0.4.0", "e"),
        ("uvicorn", "0.54.0", "f"),
    )
)


def make_wheel(path, name="demo-app", version="1.4.0", files=None):
    """A wheel with METADATA, the given files, and a RECORD that lists their hashes."""
    dist = f"{name.replace('-', '_')}-{version}.dist-info"
    files = {f"{dist}/METADATA": f"Name: {name}\nVersion: {version}\n\n", **(files or {"demo_app/__init__.py": ""})}
    record = ""
    for member, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record += f"{member},sha256={digest},{len(text)}\n"
    with zipfile.ZipFile(path, "w") as archive:
        for member, text in files.items():
            archive.writestr(member, text)
        archive.writestr(f"{dist}/RECORD", record + f"{dist}/RECORD,,\n")
    return path


def test_a_release_id_derives_from_the_wheel_and_the_lock_and_is_recorded_once(tmp_path):
    lock = write(tmp_path, LOCK + SERVER)
    tools = write(tmp_path, f"uv==0.9.0 --hash=sha256:{HASH_A}\n", "tools.txt")
    wheel = make_wheel(tmp_path / "demo_app-1.4.0-py3-none-any.whl")
    first = ba.identify("demo", "1.4.0", lock, tools, tmp_path / "cache", wheel=wheel)
    again = ba.identify("demo", "1.4.0", lock, tools, tmp_path / "cache", wheel=wheel)
    release = first["release"]
    assert release["release_id"].startswith("1.4.0-") and len(release["release_id"]) == len("1.4.0-") + 8
    assert first["changed"] and not again["changed"]
    assert again["release"] == release
    assert first["uv_version"] == "0.9.0"
    assert first["app_requirement"] == f"demo-app==1.4.0 --hash=sha256:{first['app_wheel']['sha256']}\n"
    write(tmp_path, LOCK + SERVER + f"idna==3.20 --hash=sha256:{'d' * 64}\n")
    assert (
        ba.identify("demo", "1.4.0", lock, tools, tmp_path / "cache", wheel=wheel)["release"]["release_id"]
        != release["release_id"]
    )


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"version": "1.0/../x"}, "not a valid release version"),
        ({"wheel": None}, "exactly one of"),
        ({"wheel": "missing.whl"}, "does not exist"),
    ],
)
def test_bad_release_input_is_refused_naming_it(tmp_path, kwargs, problem):
    lock = write(tmp_path, LOCK + SERVER)
    args = {"version": "1.0.0", "wheel": tmp_path / "x.whl", **kwargs}
    if args["wheel"] and str(args["wheel"]).endswith("missing.whl"):
        args["wheel"] = tmp_path / "missing.whl"
    with pytest.raises(ba.BadInput, match=problem):
        ba.identify("demo", args["version"], lock, lock, tmp_path / "cache", wheel=args["wheel"])


def identify(tmp_path, lock_text=None, wheel=None, version="1.4.0", **kwargs):
    lock = write(tmp_path, LOCK + SERVER if lock_text is None else lock_text)
    tools = write(tmp_path, f"uv==0.9.0 --hash=sha256:{HASH_A}\n", "tools.txt")
    wheel = wheel or make_wheel(tmp_path / "demo_app-1.4.0-py3-none-any.whl")
    return ba.identify("demo", version, lock, tools, tmp_path / "cache", wheel=wheel, **kwargs)


@pytest.mark.parametrize(
    ("drop", "missing"),
    [("gunicorn", "lacks gunicorn"), ("uvicorn-worker", "lacks uvicorn-worker"), ("uvicorn==", "lacks uvicorn,")],
)
def test_a_lock_without_the_server_stack_is_refused_saying_what_to_add_and_how(tmp_path, drop, missing):
    lines = [line for line in SERVER.splitlines(keepends=True) if not line.startswith(drop)]
    with pytest.raises(ba.BadInput, match=missing) as refused:
        identify(tmp_path, LOCK + "".join(lines))
    assert "uv pip compile --generate-hashes" in str(refused.value)


def test_gunicorns_own_asgi_worker_needs_only_gunicorn(tmp_path):
    gunicorn_only = LOCK + SERVER.splitlines(keepends=True)[0]
    assert identify(tmp_path, gunicorn_only, worker_class="asgi")["release"]["version"] == "1.4.0"


def test_a_uvicorn_older_than_the_shutdown_fix_supports_is_refused(tmp_path):
    old = SERVER.replace("uvicorn==0.54.0", "uvicorn==0.20.0")
    with pytest.raises(ba.BadInput, match=r"pins uvicorn 0\.20\.0; the collection supports uvicorn >=0\.30\.0 and "):
        identify(tmp_path, LOCK + old)


def test_a_uvicorn_newer_than_tested_passes_the_lock_check(tmp_path):
    assert identify(tmp_path, LOCK + SERVER.replace("uvicorn==0.54.0", "uvicorn==0.99.0"))["release"]


H11 = """
class H11Protocol:
    def __init__(self, loop):
        self.loop = loop
        self.cycle = None

    def shutdown(self{extra}):
        if self.cycle is None or self.cycle.response_complete:
            self.transport.close()
"""


def uvicorn_wheel(home, version, h11=None, httptools=None):
    h11 = h11 or H11.format(extra="")
    httptools = httptools or H11.replace("H11Protocol", "HttpToolsProtocol").format(extra="")
    return make_wheel(
        home / f"uvicorn-{version}-py3-none-any.whl",
        files={"uvicorn/protocols/http/h11_impl.py": h11, "uvicorn/protocols/http/httptools_impl.py": httptools},
    )


def test_a_newer_uvicorn_whose_protocols_keep_their_shape_ships_with_a_warning(tmp_path):
    uvicorn_wheel(tmp_path, "0.99.0")
    pins = [{"name": "uvicorn", "version": "0.99.0"}]
    (warning,) = ba.uvicorn_warnings(tmp_path, pins)
    assert "uvicorn 0.99.0 is newer than the collection has tested (0.30.0 to 0.55.0)" in warning
    assert ba.uvicorn_warnings(tmp_path, [{"name": "uvicorn", "version": "0.55.0"}]) == []


@pytest.mark.parametrize(
    ("h11", "said"),
    [
        (H11.format(extra=", how"), r"H11Protocol\.shutdown is no longer shutdown\(self\)"),
        (H11.format(extra="").replace("self.transport.close()", "pass"), r"no longer uses self\.transport"),
        (H11.format(extra="").replace("class H11Protocol", "class H11"), "has no class H11Protocol"),
    ],
    ids=["another signature", "another attribute", "the class renamed"],
)
def test_a_newer_uvicorn_the_shutdown_fix_no_longer_fits_is_refused_saying_where(tmp_path, h11, said):
    uvicorn_wheel(tmp_path, "0.99.0", h11=h11)
    with pytest.raises(ba.BadInput, match=said) as refused:
        ba.uvicorn_warnings(tmp_path, [{"name": "uvicorn", "version": "0.99.0"}])
    assert "pin 'uvicorn<0.56' (tested up to 0.55.0)" in str(refused.value)


def test_a_lock_that_installs_the_project_itself_is_refused_naming_the_flag(tmp_path):
    with pytest.raises(ba.BadInput, match="--no-emit-project"):
        identify(tmp_path, LOCK + SERVER + "-e .\n")


def test_a_version_that_is_not_the_wheels_is_refused(tmp_path):
    with pytest.raises(ba.BadInput, match=r"-e asgi_version=1 but the app is demo-app 1\.4\.0"):
        identify(tmp_path, version="1")
    assert identify(tmp_path, version="1.4")["release"]["app_version"] == "1.4.0"  # the same version, spelled shorter


def test_a_corrupt_wheel_is_refused_on_the_controller(tmp_path):
    wheel = make_wheel(tmp_path / "demo_app-1.4.0-py3-none-any.whl", files={"demo_app/__init__.py": "x = 1\n"})
    data = bytearray(wheel.read_bytes())
    data[data.index(b"x = 1")] = ord("y")  # one byte flipped
    wheel.write_bytes(bytes(data))
    with pytest.raises(ba.BadInput, match="is corrupt"):
        identify(tmp_path, wheel=wheel)


def test_a_build_step_makes_another_release(tmp_path):
    plain = identify(tmp_path)["release"]["release_id"]
    built = identify(tmp_path, build="python -m django collectstatic --noinput")["release"]["release_id"]
    assert plain != built and plain.split("-")[0] == built.split("-")[0]


def git(cwd, *args):
    import subprocess

    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd, check=True, capture_output=True
    )


def test_a_source_with_changes_not_committed_is_refused_unless_allowed_and_then_recorded(tmp_path, monkeypatch):
    fake_uv(tmp_path, monkeypatch)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:/usr/bin:/bin")
    src = tmp_path / "src"
    src.mkdir()
    (src / "pyproject.toml").write_text("[project]\n")
    (src / "VERSION").write_text("v")
    git(src, "init", "-q")
    git(src, "add", ".")
    git(src, "commit", "-qm", "one")
    git(src, "tag", "v1")
    assert ba.git_state(src)["dirty"] is False and ba.git_state(src)["git_describe"] == "v1"
    (src / "VERSION").write_text("changed")
    state = ba.git_state(src)
    assert state["dirty"] and state["git_describe"] == "v1-dirty"
    assert ba.git_state(tmp_path / "nowhere")["git_sha"] == "unknown"


def test_a_pylocks_wheels_come_from_the_urls_it_records_hash_checked(tmp_path, monkeypatch):
    """A private index on loopback: the wheel is fetched from the URL the pylock.toml records, never from an index
    pip would choose (pip is pointed at nothing here), and a wheel that is not the lock's is refused."""
    import functools
    import http.server
    import threading

    from ansible_collections.asgi.deploy.plugins.plugin_utils import pins

    served = tmp_path / "index"
    served.mkdir()
    wheel = make_wheel(served / "gunicorn-27.0.1-py3-none-any.whl", name="gunicorn", version="27.0.1")
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/gunicorn-27.0.1-py3-none-any.whl"
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/nothing")
    target = {"python": "3.11", "full": "3.11.2", "machine": "x86_64", "glibc": "2.36", "sys_platform": "linux"}

    def pylock(sha):
        text = (
            'lock-version = "1.0"\ncreated-by = "uv"\n[[packages]]\nname = "gunicorn"\nversion = "27.0.1"\n'
            f'wheels = [{{ url = "{url}", hashes = {{ sha256 = "{sha}" }} }}]\n'
        )
        (tmp_path / "pylock.toml").write_text(text)
        return pins.read_pins(tmp_path / "pylock.toml")

    try:
        (tmp_path / "cache").mkdir()
        house = ba.build_wheelhouse(pylock(digest), [], target, tmp_path / "cache", "lock1")
        assert (Path(house["path"]) / wheel.name).read_bytes() == wheel.read_bytes()
        # Found again, it is checked against the lock once per run: a wheel changed since is refused by the next run.
        ba.build_wheelhouse(pylock(digest), [], target, tmp_path / "cache", "lock1", run="r1")
        (Path(house["path"]) / wheel.name).write_bytes(b"changed")
        assert ba.build_wheelhouse(pylock(digest), [], target, tmp_path / "cache", "lock1", run="r1")["key"]
        with pytest.raises(ba.BadInput, match="does not match the hashes in the lockfile"):
            ba.build_wheelhouse(pylock(digest), [], target, tmp_path / "cache", "lock1", run="r2")
        (Path(house["path"]) / wheel.name).write_bytes(wheel.read_bytes())
        with pytest.raises(ba.BadInput, match="does not match the lock's sha256"):
            ba.build_wheelhouse(pylock("0" * 64), [], target, tmp_path / "cache", "lock2")
    finally:
        server.shutdown()


@pytest.mark.parametrize(
    ("described", "version"),
    [("v1.4.0-0-gabc1234", "1.4.0"), ("1.4.0-3-gabc1234", "1.4.1.dev3+gabc1234"),
     ("2.0-12-gdeadbee", "2.1.dev12+gdeadbee"), ("release-x-1-gabc1234", ""), ("abc1234", "")],
)  # fmt: skip
def test_a_commits_version_is_the_one_setuptools_scm_would_give_it(described, version):
    assert ba.scm_version(described) == version


def test_a_git_ref_deploys_a_clean_tree_of_that_commit_with_its_own_version(tmp_path):
    """-e asgi_git_ref: the release is built from `git archive` of the commit (an uncommitted change is not in it),
    and with asgi_version=auto the version is the app's own at that commit."""
    import subprocess

    repo = tmp_path / "repo"
    source = repo / "services/shop"  # the app in a subdirectory of its repository, as monorepos have it
    source.mkdir(parents=True)

    def git(*args):
        subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args], check=True,
                       capture_output=True)  # fmt: skip

    git("init", "-q")
    (source / "pyproject.toml").write_text('[project]\nname = "shop"\nversion = "1.0.0"\n')
    git("add", "-A")
    git("commit", "-qm", "one")
    git("tag", "v1.0.0")
    (source / "pyproject.toml").write_text('[project]\nname = "shop"\nversion = "1.1.0"\n')
    git("commit", "-qam", "two")
    (source / "pyproject.toml").write_text('[project]\nname = "shop"\nversion = "9.9.9"\n')  # not committed
    tree, facts, env = ba.checkout_ref(source, "v1.0.0", tmp_path / "cache")
    assert (tree / "pyproject.toml").read_text().endswith('version = "1.0.0"\n') and not (tree / "services").exists()
    assert facts["git_describe"] == "v1.0.0-0-g" + facts["git_sha"][:7] and facts["dirty"] is False
    assert env == {"SETUPTOOLS_SCM_PRETEND_VERSION": "1.0.0"}
    tree, facts, env = ba.checkout_ref(source, "HEAD", tmp_path / "cache")
    assert 'version = "1.1.0"' in (tree / "pyproject.toml").read_text()  # the commit, never the working tree
    assert env["SETUPTOOLS_SCM_PRETEND_VERSION"].startswith("1.0.1.dev1+g")
    with pytest.raises(ba.BadInput, match="no such commit"):
        ba.checkout_ref(source, "v7", tmp_path / "cache")
