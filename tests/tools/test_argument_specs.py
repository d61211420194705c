"""tools/argument_specs.py: the CI check that keeps defaults and specs in step."""

from pathlib import Path

import argument_specs
import pytest
import yaml


def make_role(root: Path, name: str, defaults: dict, options: dict) -> Path:
    role = root / name
    (role / "tasks").mkdir(parents=True)
    (role / "tasks" / "main.yml").write_text("---\n[]\n")
    (role / "defaults").mkdir()
    (role / "defaults" / "main.yml").write_text(yaml.safe_dump(defaults))
    (role / "meta").mkdir()
    spec = {"argument_specs": {"main": {"short_description": "A role", "options": options}}}
    (role / "meta" / "argument_specs.yml").write_text(yaml.safe_dump(spec))
    return role


def opt(default, **extra):
    return {"type": "str", "description": "What it does.", "default": default, **extra}


def test_matching_defaults_and_specs_pass(tmp_path):
    role = make_role(tmp_path, "web", {"web_port": "8000"}, {"web_port": opt("8000")})
    assert argument_specs.check_role(role) == []


def test_different_default_values_are_reported(tmp_path):
    role = make_role(tmp_path, "web", {"web_port": "8000"}, {"web_port": opt("9000")})
    [problem] = argument_specs.check_role(role)
    assert "default differs" in problem
    assert "9000" in problem


def test_key_missing_from_specs_is_reported(tmp_path):
    role = make_role(tmp_path, "web", {"web_port": "8000", "web_extra": 1}, {"web_port": opt("8000")})
    assert argument_specs.check_role(role) == ["web: `web_extra` is in defaults/main.yml but not in argument_specs"]


def test_optional_option_without_default_is_reported(tmp_path):
    role = make_role(tmp_path, "web", {}, {"web_port": opt("8000")})
    [problem] = argument_specs.check_role(role)
    assert "no value in defaults" in problem


def test_required_option_needs_no_default(tmp_path):
    options = {"web_version": {"type": "str", "description": "Version.", "required": True}}
    role = make_role(tmp_path, "web", {}, options)
    assert argument_specs.check_role(role) == []


@pytest.mark.parametrize(
    ("option", "expected"),
    [
        ({"description": "x", "default": 1}, "has no type"),
        ({"type": "int", "default": 1}, "has no description"),
        ({"type": "str", "description": "x", "default": "c", "choices": ["a", "b"]}, "not among its choices"),
    ],
)
def test_incomplete_options_are_reported(tmp_path, option, expected):
    default = option["default"]
    role = make_role(tmp_path, "web", {"web_opt": default}, {"web_opt": option})
    problems = argument_specs.check_role(role)
    assert any(expected in p for p in problems), problems


def test_unprefixed_public_name_is_reported(tmp_path):
    role = make_role(tmp_path, "web", {"port": 1}, {"port": opt(1, type="int")})
    assert any("does not start with `web_`" in p for p in argument_specs.check_role(role))


def test_cli_exits_non_zero_on_any_problem(tmp_path, capsys):
    make_role(tmp_path, "good", {"good_a": 1}, {"good_a": opt(1, type="int")})
    make_role(tmp_path, "bad", {"bad_a": 1}, {"bad_a": opt(2, type="int")})
    assert argument_specs.main(["check", str(tmp_path)]) == 1
    assert "bad: option `bad_a` default differs" in capsys.readouterr().err


def test_readme_is_generated_from_specs_and_checked(tmp_path):
    options = {"web_port": opt("8000", choices=["8000", "9000"])}
    role = make_role(tmp_path, "web", {"web_port": "8000"}, options)
    assert argument_specs.main(["readme", "--check", str(tmp_path)]) == 1
    assert argument_specs.main(["readme", str(tmp_path)]) == 0
    readme = (role / "README.md").read_text()
    assert "| `web_port` | str | `8000` | `8000`, `9000` | What it does\\. |" in readme
    assert argument_specs.main(["readme", "--check", str(tmp_path)]) == 0


def test_an_entry_point_without_its_tasks_file_and_a_playbook_naming_none_are_refused(tmp_path):
    import yaml

    role = tmp_path / "roles/web"
    (role / "meta").mkdir(parents=True)
    (role / "tasks").mkdir()
    (role / "tasks/main.yml").write_text("---\n[]\n")
    specs = {"argument_specs": {"main": {"options": {}}, "finish": {"options": {}}}}
    (role / "meta/argument_specs.yml").write_text(yaml.safe_dump(specs))
    (tmp_path / "playbooks").mkdir()
    play = [
        {"hosts": "all", "tasks": [{"ansible.builtin.import_role": {"name": "asgi.deploy.web", "tasks_from": "go"}}]}
    ]
    (tmp_path / "playbooks/go.yml").write_text(yaml.safe_dump(play))
    assert argument_specs.entry_point_problems(role) == [
        "web: entry point `finish` has no tasks/finish.yml",
        "go.yml: tasks_from go is no entry point of web",
    ]


def test_ansible_markup_in_a_spec_is_rendered_not_left_raw():
    assert "O(" not in argument_specs._md("Set O(web_port) and C(x)") and "<code>x</code>" in argument_specs._md("C(x)")
