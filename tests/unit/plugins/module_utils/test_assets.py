"""Asset bridging: what the front door serves during and after a handover, and what a failure puts back."""

from __future__ import annotations

import os

import pytest
from ansible_collections.asgi.deploy.plugins.module_utils import assets
from ansible_collections.asgi.deploy.plugins.module_utils.assets import AssetsFailed, bridge, prune, unbridge
from ansible_collections.asgi.deploy.tests.unit.plugins.fakes import make_release

STATIC = "venv/lib/python3*/site-packages/staticfiles"
OLD, NEW, OLDER = "1.0.0-aaaa1111", "2.0.0-bbbb2222", "0.9.0-cccc3333"


def with_static(app, release_id, files, built_at="2026-11-01T00:00:00Z", python="python3.11"):
    path = make_release(app, release_id, built_at=built_at)
    static = os.path.join(path, "venv", "lib", python, "site-packages", "staticfiles")
    for name, content in files.items():
        os.makedirs(os.path.dirname(os.path.join(static, name)), exist_ok=True)
        with open(os.path.join(static, name), "w") as stream:
            stream.write(content)
    return static


def served(app):
    top = os.path.join(app.root, "assets", "current")
    return {name: open(os.path.join(top, name)).read() for name in assets.files_of(top)}


def test_the_new_release_files_win_and_old_hashed_files_stay_under_their_names(app):
    with_static(app, OLDER, {"app.0123456789ab.css": "older", "gone.css": "older"}, "2026-10-01T00:00:00Z")
    with_static(app, OLD, {"polls/style.css": "green", "polls/style.1111aaaa2222.css": "green",
                           "app-Ab3_x9Zq.js": "vite old"}, "2026-11-01T00:00:00Z")  # fmt: skip
    with_static(app, NEW, {"polls/style.css": "blue", "polls/style.3333bbbb4444.css": "blue"}, "2026-11-02T00:00:00Z")
    made, before = bridge(app, NEW, STATIC)
    assert before == "" and os.readlink(os.path.join(app.root, "assets", "current")) == made
    assert served(app) == {
        "polls/style.css": "blue",  # the release's own, never an older one's
        "polls/style.3333bbbb4444.css": "blue",
        "polls/style.1111aaaa2222.css": "green",  # a page of 1.0.0 still finds its stylesheet
        "app-Ab3_x9Zq.js": "vite old",
        "app.0123456789ab.css": "older",  # every release kept
    }  # an older release's unhashed file is not bridged (gone.css)


def test_a_failed_handover_puts_the_previous_files_back_and_removes_what_it_made(app):
    with_static(app, OLD, {"a.css": "old"})
    with_static(app, NEW, {"a.css": "new"}, "2026-11-02T00:00:00Z")
    first = bridge(app, OLD, STATIC)[0]
    made, before = bridge(app, NEW, STATIC)
    assert before == first and served(app) == {"a.css": "new"}
    unbridge(app, made, before)
    assert served(app) == {"a.css": "old"} and not os.path.exists(os.path.join(app.root, "assets", made))


def test_a_rollback_bridges_the_newer_releases_hashed_files_too(app):
    with_static(app, OLD, {"s.1111aaaa2222.css": "old"})
    with_static(app, NEW, {"s.3333bbbb4444.css": "new"}, "2026-11-02T00:00:00Z")
    bridge(app, NEW, STATIC)
    bridge(app, OLD, STATIC)  # pages the newer release rendered keep working after the rollback
    assert served(app) == {"s.1111aaaa2222.css": "old", "s.3333bbbb4444.css": "new"}
    assert len(prune(app)) == 1
    left = sorted(os.listdir(os.path.join(app.root, "assets")))
    assert left == sorted(["current", os.readlink(os.path.join(app.root, "assets", "current"))])


def test_links_and_special_files_in_a_release_are_never_followed_or_copied(app, tmp_path):
    static = with_static(app, NEW, {"ok.css": "fine"})
    secret = tmp_path / "secret"
    secret.write_text("root's")
    os.symlink(secret, os.path.join(static, "leak.1111aaaa2222.css"))
    os.mkfifo(os.path.join(static, "hang.css"))
    bridge(app, NEW, STATIC)
    assert served(app) == {"ok.css": "fine"}


@pytest.mark.parametrize(
    ("layout", "said"),
    [({}, "has no directories matching"), ({"python3.13": {"x.css": ""}}, "has 2 directories matching")],
    ids=["none", "two"],
)
def test_a_static_dir_that_names_no_or_several_directories_is_refused(app, layout, said):
    with_static(app, NEW, {"x.css": ""}) if layout else make_release(app, NEW)
    for python, files in layout.items():
        with_static(app, NEW, files, python=python)
    with pytest.raises(AssetsFailed, match=said):
        bridge(app, NEW, STATIC)
    assert not os.path.lexists(os.path.join(app.root, "assets", "current"))
