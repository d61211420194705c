"""The docs test's rules: every shell block is marked, a skipped one says why, substitutions are one table."""

import subprocess
from pathlib import Path

import docs


def test_every_shell_block_of_the_docs_is_marked_and_each_skip_says_why():
    assert docs.problems(docs.blocks()) == []


def test_an_unmarked_shell_block_and_a_skip_without_a_reason_are_named(tmp_path, monkeypatch):
    monkeypatch.setattr(docs, "ROOT", tmp_path)
    (tmp_path / "d.md").write_text(
        "```sh\nls\n```\n\n<!-- docs-test: skip: x -->\n```sh\nls\n```\n\n"
        "<!-- docs-test: run -->\n  ```sh\n  make demo\n  ```\n\n```yaml\na: 1\n```\n"
    )
    found = docs.blocks(["d.md"])
    assert [(b.line, b.mode) for b in found] == [(1, ""), (6, "skip"), (11, "run"), (15, "")]
    assert found[2].text == "make demo\n"  # a block in a list item, unindented as a user pastes it
    assert docs.problems(found) == ["d.md:1: a shell block without <!-- docs-test: run|run-last|skip: why -->",
                                    "d.md:6: say why the block is not run"]  # fmt: skip


def test_substitutions_are_the_same_for_every_block():
    text = "git -C /src/billing checkout v1\nansible-playbook x --ask-vault-pass\n"
    assert docs.substitute(text, "/sandbox") == (
        "git -C /sandbox/src/billing checkout v1\nansible-playbook x --vault-password-file /sandbox/vault-password\n"
    )


def test_make_docs_test_runs_the_docs_and_make_test_reaches_it():
    # A phony target without a recipe does nothing and says so quietly: CI would pass without the docs test.
    # (Only `make -n docs-test`: make runs recipe lines that call $(MAKE) even under -n.)
    root = Path(docs.__file__).resolve().parents[1]
    dry = subprocess.run(["make", "-n", "-C", root, "docs-test"], capture_output=True, text=True, check=True).stdout
    assert "tools/docs.py run" in dry, dry
    makefile = (root / "Makefile").read_text()
    recipe = makefile.split("\nline-checks:", 1)[1].split("\n\n", 1)[0]
    assert "docs-test" in recipe.split("\n", 1)[1], recipe
