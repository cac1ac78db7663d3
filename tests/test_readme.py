"""The README's examples run as written."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def commands(block: str) -> list[str]:
    """The shell commands of one README block (continuations joined, comments dropped)."""
    found = []
    for line in block.replace("\\\n", " ").splitlines():
        command = re.sub(r"\s+#.*$", "", line).strip()
        if command:
            found.append(command)
    return found


def run_shell(command: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    env.pop("CALLOUT_EGRESS_ALLOW", None)
    env["CALLOUT_DATA_DIR"] = str(data_dir)
    # The README says `.venv/bin/callout`; run the callout of the interpreter under test.
    command = command.replace(".venv/bin/callout", f"{sys.executable} -m callout")
    return subprocess.run(  # noqa: S602  the README's own commands, run as a reader would
        command, shell=True, cwd=ROOT, capture_output=True, text=True, env=env, check=False
    )


def test_readme_starts_with_the_two_commands() -> None:
    """The first block is `make run` and `make test`."""
    first = blocks("sh")[0]
    assert "make run" in first
    assert "make test" in first


def test_python_example_runs() -> None:
    """The embedding example runs and prints the run's status, path and greeting."""
    (code,) = blocks("python")
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert out.stdout.strip() == "completed ['start', 'greet'] Hi Ada"


def test_shell_examples_run_and_say_what_the_readme_says(tmp_path: Path) -> None:
    """`callout run` is refused by the port rule and falls back; the guard blocks metadata and
    allows the public address."""
    cmds = commands(blocks("sh")[1]) + commands(blocks("sh")[2])
    assert len(cmds) == 3
    run, metadata, public = (run_shell(c, tmp_path) for c in cmds)
    result = json.loads(run.stdout)
    assert result["status"] == "completed"
    assert result["vars"]["httpError"]["outcome"] == "blocked"
    assert "port" in result["vars"]["httpError"]["message"]
    assert result["path"][-1] == "sorry"
    assert metadata.returncode == 1
    assert metadata.stdout.startswith("blocked")
    assert public.returncode == 0
    assert json.loads(public.stdout)["allowed"] is True


def test_store_and_history_examples_run_in_order(tmp_path: Path) -> None:
    """The saved-integration and history blocks run as written, each command succeeding."""
    for block in blocks("sh")[3:]:
        for command in commands(block):
            done = run_shell(command, tmp_path)
            assert done.returncode == 0, f"{command}: {done.stderr}"
    listed = run_shell(".venv/bin/callout conn list --org acme --json", tmp_path)
    (connection,) = json.loads(listed.stdout)
    assert connection["integration"] == "slack"
    assert set(connection["secrets"]) == {"botToken"}
