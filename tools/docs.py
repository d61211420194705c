#!/usr/bin/env python3
"""The docs are tests: every shell block of README.md and docs/*.md runs as written, or says why it cannot.

    tools/docs.py check   every ```sh block is marked; fails naming the ones that are not
    tools/docs.py list    each block, its marker and where it is
    tools/docs.py run     run the blocks marked to run, against the lab, as a user would paste them

A block is marked by the HTML comment on the line before it:

    <!-- docs-test: run -->              run it, in order, in one shell session per file (cwd and variables carry on)
    <!-- docs-test: run-last -->         run it after every other block (a removal, say)
    <!-- docs-test: skip: <reason> -->   never run; the reason says why (interactive, needs a certificate, ...)

Runs happen in a sandbox: HOME is a new directory, whose ~/.ssh/config reaches the lab's hosts (`make lab`) under the
docs' names (web1.example.net ... as the unprivileged user with sudo the docs use), so an inventory written as the
docs write it works as it is. The app the docs deploy, billing, is tests/docs/billing, made a git repository with
tags v1.4.0 and v1.5.0 and its three locks committed. The collection is the checkout's (.collections), as if
installed. SUBSTITUTIONS is the one place where what is written differs from what runs, the same for every block.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ["README.md", "docs/README.md", "docs/your-app.md", "docs/app-contract.md", "docs/benchmarks.md"]
SHELLS = ("sh", "bash", "shell", "console")
MARKER = re.compile(r"^<!-- docs-test: (run|run-last|skip: (?P<reason>.+?)) -->$")
FIXTURE = ROOT / "tests/docs/billing"
# What is written, and what runs instead: the same for every block. Each says why.
SUBSTITUTIONS = [
    # The app's repository: a git repository the test makes of tests/docs/billing.
    ("/src/billing", "{sandbox}/src/billing"),
    # No one types a vault password in CI: the same password, from a file.
    ("--ask-vault-pass", "--vault-password-file {sandbox}/vault-password"),
    # The lab's containers cap open files at 4096 (no CAP_SYS_RESOURCE): a unit may not ask for more.
    ("service_limit_nofile: 65536", "service_limit_nofile: 4096"),
    # The lab publishes each host's port 8000 on loopback (8081-8083).
    ("http://web1.example.net:8000", "http://127.0.0.1:8081"),
]
LAB_HOSTS = {"web1.example.net": 2221, "web2.example.net": 2222, "web3.example.net": 2223}
VERSIONS = ("1.4.0", "1.5.0")
# The three ways docs/your-app.md locks an app, as it writes them: the fixture's commits hold their output.
LOCKS = [
    "uv lock",
    "uv export --frozen --no-dev --no-emit-project --format pylock.toml -o pylock.toml",
    "uv pip compile --universal --generate-hashes pyproject.toml -o requirements.lock",
]


@dataclass
class Block:
    path: str
    line: int
    lang: str
    text: str
    mode: str  # run, run-last, skip, "" (unmarked)
    reason: str = ""


def blocks(paths=DOCS):
    """Every fenced block of the docs, with its marker."""
    found = []
    for name in paths:
        lines = (ROOT / name).read_text().splitlines()
        index = 0
        while index < len(lines):
            opening = re.match(r"^\s*```(\w*)\s*$", lines[index])
            if not opening:
                index += 1
                continue
            end = next(i for i in range(index + 1, len(lines)) if lines[i].strip().startswith("```"))
            marker = MARKER.match(lines[index - 1].strip()) if index else None
            mode = (marker.group(1).split(":")[0] if marker else "").strip()
            indent = len(lines[index]) - len(lines[index].lstrip())
            text = "\n".join(line[indent:] for line in lines[index + 1 : end]) + "\n"
            found.append(Block(name, index + 1, opening.group(1), text, mode,
                               (marker.group("reason") or "") if marker else ""))  # fmt: skip
            index = end + 1
    return found


def problems(found):
    """Shell blocks without a marker, and markers that do not say why a block is skipped."""
    said = []
    for block in found:
        if block.lang in SHELLS and not block.mode:
            said.append(f"{block.path}:{block.line}: a shell block without <!-- docs-test: run|run-last|skip: why -->")
        if block.mode == "skip" and len(block.reason.strip()) < 10:
            said.append(f"{block.path}:{block.line}: say why the block is not run")
        if block.mode and block.lang not in SHELLS:
            said.append(f"{block.path}:{block.line}: only shell blocks run (this one is {block.lang or 'text'})")
    return said


def substitute(text, sandbox):
    for written, runs in SUBSTITUTIONS:
        text = text.replace(written, runs.format(sandbox=sandbox))
    return text


def make_fixture(sandbox, env):
    """tests/docs/billing as a team's repository: a commit per version, its three locks in it, tagged."""
    repo = sandbox / "src/billing"
    shutil.copytree(FIXTURE, repo)

    def sh(*argv):
        subprocess.run(list(argv), cwd=repo, env=env, check=True, capture_output=True, text=True)

    sh("git", "init", "-q", "-b", "main")
    for version in VERSIONS:
        project = repo / "pyproject.toml"
        project.write_text(re.sub(r'(?m)^version = ".*"$', f'version = "{version}"', project.read_text()))
        for command in LOCKS:
            sh("bash", "-c", command)
        sh("git", "add", "-A")
        sh("git", "-c", "user.name=docs", "-c", "user.email=docs@example.net", "commit", "-qm", f"billing {version}")
        sh("git", "tag", f"v{version}")


def make_sandbox():
    sandbox = Path(tempfile.mkdtemp(prefix="asgi-docs-"))
    ssh = sandbox / ".ssh"
    ssh.mkdir(mode=0o700)
    key = ROOT / ".lab/id_ed25519"
    (ssh / "config").write_text("".join(
        f"Host {name}\n  HostName 127.0.0.1\n  Port {port}\n  User deploy\n  IdentityFile {key}\n"
        "  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n  LogLevel ERROR\n"
        for name, port in LAB_HOSTS.items()))  # fmt: skip
    (sandbox / "vault-password").write_text("docs-test-vault-password\n")
    # OpenSSH reads the home of the passwd entry, not $HOME: an ssh first on PATH reads the sandbox's config, for
    # ansible and for the docs' own ssh commands alike.
    (sandbox / "bin").mkdir()
    wrapper = sandbox / "bin/ssh"
    wrapper.write_text(f'#!/bin/sh\nexec {shutil.which("ssh")} -F {ssh / "config"} "$@"\n')
    wrapper.chmod(0o755)
    home = Path(os.environ.get("HOME", "/root"))
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "MAKE", "MFLAGS"))},
        "HOME": str(sandbox),
        "PATH": f"{sandbox / 'bin'}:{ROOT / '.venv/bin'}:{os.environ['PATH']}",
        # The collection as if installed: asgi.deploy.deploy and the others are the checkout's.
        "ANSIBLE_COLLECTIONS_PATH": f"{ROOT / '.collections'}:{ROOT / '.venv/lib/python3.11/site-packages'}",
        "ANSIBLE_NOCOLOR": "1",
        # Downloads are the machine's to share: a new HOME need not fetch every wheel again.
        "UV_CACHE_DIR": os.environ.get("UV_CACHE_DIR", str(home / ".cache/uv")),
        "PIP_CACHE_DIR": os.environ.get("PIP_CACHE_DIR", str(home / ".cache/pip")),
    }
    make_fixture(sandbox, env)
    # What the first (skipped) block of docs/your-app.md does: the recommended ansible.cfg beside the inventory.
    (sandbox / "deploy/billing").mkdir(parents=True)
    shutil.copy(ROOT / "docs/ansible.cfg", sandbox / "deploy/billing/ansible.cfg")
    return sandbox, env


def script(chosen, sandbox):
    """One shell session: each block as written (substituted), announced, stopping at the first failure."""
    parts = ["set -eo pipefail", f"cd {ROOT}"]
    for block in chosen:
        parts.append(f"echo '::: docs-test: {block.path}:{block.line}'")
        parts.append(substitute(block.text, sandbox).rstrip())
    return "\n".join(parts) + "\n"


def run(found):
    """Each file's blocks in one shell session (its run-last blocks at the end), the files in DOCS order; the lab
    is started for every file but the README (whose own blocks start it and take it down)."""
    sandbox, env = make_sandbox()
    report, started, ran = [], time.monotonic(), 0
    try:
        for path in DOCS:
            chosen = [b for b in found if b.path == path and b.mode == "run"]
            chosen += [b for b in found if b.path == path and b.mode == "run-last"]
            if not chosen:
                continue
            if path != "README.md":
                subprocess.run(["make", "--no-print-directory", "lab"], cwd=ROOT, env=env, check=True,
                               capture_output=True)  # fmt: skip
            began = time.monotonic()
            done = subprocess.run(["bash", "-c", script(chosen, sandbox)], cwd=ROOT, env=env, text=True,
                                  capture_output=True, stdin=subprocess.DEVNULL)  # fmt: skip
            seen = re.findall(r"^::: docs-test: (\S+)$", done.stdout, re.M)
            report.append({"file": path, "blocks": len(chosen), "seconds": round(time.monotonic() - began, 1)})
            if done.returncode != 0:
                print((done.stdout + done.stderr)[-8000:])
                print(f"docs-test: FAILED in the block at {seen[-1] if seen else path} (exit {done.returncode}); "
                      "it is run as written, after SUBSTITUTIONS (tools/docs.py)", file=sys.stderr)  # fmt: skip
                return 1
            ran += len(chosen)
    finally:
        subprocess.run(["make", "--no-print-directory", "lab-down"], cwd=ROOT, env=env, check=False,
                       capture_output=True)  # fmt: skip
        shutil.rmtree(sandbox, ignore_errors=True)
    skipped = sum(1 for b in found if b.mode == "skip")
    print(json.dumps(report))
    print(f"docs-test: {ran} blocks ran as written in {time.monotonic() - started:.0f}s; {skipped} skipped, each "
          "saying why")  # fmt: skip
    return 0


def main(argv):
    found = blocks()
    command = argv[1] if len(argv) > 1 else "check"
    said = problems(found)
    if said:
        print("\n".join(said), file=sys.stderr)
        return 1
    if command == "check":
        ran = sum(1 for b in found if b.mode in ("run", "run-last"))
        print(f"docs: {ran} blocks run, {sum(1 for b in found if b.mode == 'skip')} skipped with a reason")
        return 0
    if command == "list":
        for b in found:
            if b.lang in SHELLS:
                print(f"{b.path}:{b.line}: {b.mode}{': ' + b.reason if b.reason else ''}")
        return 0
    if command == "run":
        return run(found)
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
