"""The Ansible playbook and roles pass ansible-lint's production profile and a syntax check."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ANSIBLE_DIR = Path(__file__).resolve().parents[2] / "ansible"
BIN = Path(sys.executable).parent


def tool(name: str) -> Path:
    path = BIN / name
    if not path.exists():
        pytest.skip(f"{name} is not installed in this venv: pip install -e '.[dev]'")
    return path


def run(argv: list[str | Path]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ANSIBLE_CONFIG": str(ANSIBLE_DIR / "ansible.cfg"), "NO_COLOR": "1"}
    return subprocess.run(
        [str(a) for a in argv],
        cwd=ANSIBLE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def test_site_playbook_passes_the_syntax_check() -> None:
    result = run([tool("ansible-playbook"), "--syntax-check", "site.yml"])
    assert result.returncode == 0, result.stdout + result.stderr


def test_roles_pass_ansible_lint_production_profile() -> None:
    result = run([tool("ansible-lint"), "--profile", "production", "--offline", "--nocolor"])
    assert result.returncode == 0, result.stdout + result.stderr


def test_units_in_deploy_match_the_roles_templates() -> None:
    """deploy/systemd is the by-hand copy; the roles render the same units by default."""
    jinja2 = pytest.importorskip("jinja2")
    deploy = ANSIBLE_DIR.parent / "deploy" / "systemd"
    defaults = {
        "edge_agent_venv_path": "/opt/atelier/venv",
        "edge_agent_config_dir": "/etc/atelier",
        "edge_agent_user": "atelier-edge",
        "edge_agent_groups": ["gpio", "spi", "input"],
        "hub_venv_path": "/opt/atelier/venv",
        "hub_config_dir": "/etc/atelier",
        "hub_user": "atelier",
        "hub_backup_dir": "/var/backups/atelier",
        "hub_backup_keep": 14,
        "hub_backup_on_calendar": "*-*-* 02:30:00",
        "ansible_managed": "MANAGED",
    }
    templates = {
        "atelier-edge.service": "edge_agent",
        "atelier-hub.service": "hub",
        "atelier-ingest@.service": "hub",
        "atelier-backup.service": "hub",
        "atelier-backup.timer": "hub",
    }
    for unit, role in templates.items():
        source = (ANSIBLE_DIR / "roles" / role / "templates" / f"{unit}.j2").read_text()
        rendered = jinja2.Template(source, keep_trailing_newline=True).render(**defaults)
        expected = "# MANAGED\n" + (deploy / unit).read_text()
        assert rendered == expected, f"{unit}: roles/{role}/templates differs from deploy/systemd"


def test_role_files_match_deploy() -> None:
    root = ANSIBLE_DIR.parent
    pairs = {
        "deploy/backup/atelier-backup": "ansible/roles/hub/files/atelier-backup",
        "deploy/logrotate/atelier": "ansible/roles/hub/files/atelier.logrotate",
        "deploy/mosquitto/mosquitto.conf.j2": "ansible/roles/broker/templates/mosquitto.conf.j2",
    }
    for deploy_file, role_file in pairs.items():
        assert (root / deploy_file).read_text() == (root / role_file).read_text(), role_file
