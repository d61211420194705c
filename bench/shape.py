"""The engine's shape, measured: the collection's files a deploy reads on the controller, and the plugins' Python
lines and longest function (issue #24: a deploy crosses <= 30 files, no plugin function over 60 lines, plugin lines
do not grow)."""

from __future__ import annotations

import ast
import re
import subprocess
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PLUGIN_LINES_AT_24 = 9980  # plugins/**/*.py when issue #24 was filed
# Every file Python opens in ansible-playbook and its workers (forks inherit the hook), appended to a log.
AUDIT = """
import os, sys
_LOG, _ROOT = os.environ["ASGI_FILES_LOG"], os.environ["ASGI_FILES_ROOT"]
def _opened(event, args):
    path = os.fsdecode(args[0]) if event == "open" and isinstance(args[0], (str, bytes)) else ""
    if ("ansible_collections/asgi/deploy/" in path or path.startswith(_ROOT)) and path != _LOG:
        with open(_LOG, "a", encoding="utf-8") as log:
            log.write(path + "\\n")
sys.addaudithook(_opened)
"""
PYC = re.compile(r"__pycache__/(?P<name>[^/]+?)\.cpython-\d+(\.opt-\d)?\.pyc$")


def audit_env(log: Path) -> dict:
    """The environment that makes ansible-playbook log every collection file it opens to ``log``."""
    site = Path(tempfile.mkdtemp(prefix="asgi-files-"))
    (site / "sitecustomize.py").write_text(AUDIT)
    return {"PYTHONPATH": str(site), "ASGI_FILES_LOG": str(log), "ASGI_FILES_ROOT": f"{ROOT}/"}


def files_read(log: Path) -> list[str]:
    """The collection's files in the log (git-tracked, under playbooks/, roles/, plugins/ and meta/; not the
    project's ansible.cfg or the app's lock), relative to it, a compiled module counted as its source."""
    tracked = set(subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True).stdout.split())
    found = set()
    for line in log.read_text().splitlines():
        path = line.split("ansible_collections/asgi/deploy/", 1)[-1].removeprefix(f"{ROOT}/")
        found.add(PYC.sub(lambda m: m["name"] + ".py", path))
    return sorted(path for path in found & tracked if path.startswith(("playbooks/", "roles/", "plugins/", "meta/")))


def plugin_code() -> dict:
    """Lines of plugins/**/*.py, and the longest function or method there."""
    lines, longest = 0, ("", 0)
    for path in sorted((ROOT / "plugins").rglob("*.py")):
        text = path.read_text()
        lines += len(text.splitlines())
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1
                if length > longest[1]:
                    longest = (f"{path.relative_to(ROOT)}:{node.name}", length)
    return {"lines": lines, "lines_at_24": PLUGIN_LINES_AT_24, "longest_function": longest[0],
            "longest_function_lines": longest[1]}  # fmt: skip
