"""The import-linter contracts hold on the tree and catch a module that breaks one.

Each violation is written into a copy of the sources, so the check runs on the real contracts
and the real import graph plus one bad module, never on a hand-made config.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("protocol", "edge", "hub")


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("lint-imports")
    command = [str(exe)] if exe.exists() else [sys.executable, "-m", "importlinter.cli"]
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [*command, "--no-cache"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def tree_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tree")
    for package in PACKAGES:
        shutil.copytree(
            REPO / package,
            root / package,
            ignore=shutil.ignore_patterns("__pycache__", "static", "templates", "locale"),
        )
    shutil.copy(REPO / "pyproject.toml", root / "pyproject.toml")
    return root


def test_the_tree_keeps_every_contract() -> None:
    result = lint_imports(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "source", "contract"),
    [
        ("protocol/leak.py", "import edge.config\n", "protocol is the wire contract alone"),
        ("edge/leak.py", "from hub.core import settings\n", "the agent never imports the hub"),
        ("edge/domain/leak.py", "import paho.mqtt.client\n", "the domain packages are pure"),
        ("hub/domain/leak.py", "from sqlmodel import Session\n", "the domain packages are pure"),
        ("hub/services/leak.py", "import typer\n", "services serve every front end"),
        ("hub/services/leak.py", "from fastapi import HTTPException\n", "services serve every"),
        ("hub/web/leak.py", "from hub.api import health\n", "the web calls services"),
        ("edge/logs.py", "import edge.config\n", "the one log setup is standard library only"),
    ],
)
def test_a_deliberate_violation_fails(
    tree_copy: Path, module: str, source: str, contract: str
) -> None:
    bad = tree_copy / module
    original = bad.read_text() if bad.exists() else None
    if original is None:
        bad.write_text(f'"""A module that breaks a boundary on purpose."""\n{source}')
    else:
        bad.write_text(f"{original}\n{source}")  # a module of ours, one import more
    try:
        result = lint_imports(tree_copy)
    finally:
        if original is None:
            bad.unlink()
        else:
            bad.write_text(original)
    assert result.returncode == 1, result.stdout + result.stderr
    broken = result.stdout.split("Broken contracts", 1)[1]
    assert contract in broken
    dotted = module.removesuffix(".py").replace("/", ".")
    assert dotted in broken


def test_an_exception_that_matches_nothing_fails_the_check(tree_copy: Path) -> None:
    """An ignored web -> api import that does not exist fails the check: the web has no
    exception left, and one added for an import since removed would not go unnoticed."""
    pyproject = tree_copy / "pyproject.toml"
    original = pyproject.read_text()
    web_contract = 'forbidden_modules = ["hub.api"]\n'
    assert original.count(web_contract) == 1
    pyproject.write_text(
        original.replace(
            web_contract,
            web_contract + 'ignore_imports = ["hub.web.i18n -> hub.api.health"]\n',
        )
    )
    try:
        result = lint_imports(tree_copy)
    finally:
        pyproject.write_text(original)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "hub.web.i18n -> hub.api.health" in result.stdout + result.stderr
