"""A real converge of site.yml (hub, broker, edge_agent) into a Debian bookworm root via chroot."""

# The root is made once with debootstrap and cached under .tools/ (keyed by the package list
# and the build script; the downloaded .debs are kept beside it), then copied per run. Services
# cannot start in a chroot, so the roles run with atelier_manage_services=false: units are
# written and verified, not started, and the PostgreSQL role/database creation (which needs a
# running server) is skipped; the hub uses SQLite there so migrations, keys and broker accounts
# still run for real. Only /proc is mounted in the root, and it is unmounted before anything
# there is removed, whatever happened; the host's systemd is never asked anything.
from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

# Measured on the 2-core machine: cold (debootstrap, packages, wheels) 4 minutes, warm 2.5.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = Path(__file__).with_name("build_root.sh")
# What the roles install (so the converge finds them present), plus systemd for
# `systemd-analyze verify` and sudo for `become`.
PACKAGES = [
    "python3-venv",
    "python3-pip",
    "systemd",
    "mosquitto",
    "openssl",
    "logrotate",
    "sqlite3",
    "sudo",
]
EXTRAS = "edge,hub"
BIN = Path(sys.executable).parent
HOST = "bookworm-root"
TOOLS = REPO / ".tools"
HUB_MQTT_PASSWORD = "hub-password-for-the-test"
log = logging.getLogger(__name__)


def cache_key(*parts: bytes) -> str:
    return hashlib.sha256(b"\0".join(parts)).hexdigest()[:16]


def requirements() -> None:
    if os.geteuid() != 0:
        pytest.skip("the chroot converge needs root (debootstrap, chroot, mount)")
    if shutil.which("debootstrap") is None:
        pytest.skip("debootstrap is not installed: apt-get install -y debootstrap")
    if not (BIN / "ansible-playbook").exists():
        pytest.skip("ansible is not installed in this venv: pip install -e '.[dev]'")


@contextmanager
def tools_lock() -> Iterator[None]:
    """Two test runs on one checkout converge one after the other: the cached root and wheels
    are built once, and neither mistakes the other's mounted /proc for a stale one."""
    TOOLS.mkdir(exist_ok=True)
    with (TOOLS / "converge.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def mounts_under(path: Path) -> list[str]:
    prefix = str(path)
    points = [
        line.split()[1].replace("\\040", " ")
        for line in Path("/proc/self/mounts").read_text().splitlines()
    ]
    return [p for p in points if p == prefix or p.startswith(prefix + "/")]


def unmount_under(path: Path) -> None:
    """Innermost first; refuses to go on (so nothing is removed) if one stays mounted."""
    for point in sorted(mounts_under(path), reverse=True):
        if subprocess.run(["umount", point], check=False, timeout=60).returncode != 0:
            subprocess.run(["umount", "-l", point], check=False, timeout=60)
    left = mounts_under(path)
    if left:
        raise RuntimeError(f"still mounted, not removing {path}: {left}")


def host_atelier_units() -> list[str]:
    return sorted(p.name for p in Path("/etc/systemd/system").glob("atelier*"))


def cached_root() -> Path:
    key = cache_key(b"bookworm", " ".join(PACKAGES).encode(), BUILD_SCRIPT.read_bytes())
    root = TOOLS / f"debian-root-{key}"
    if not root.exists():
        for stale in TOOLS.glob("debian-root-*"):
            unmount_under(stale)
            shutil.rmtree(stale)
        subprocess.run(
            ["sh", str(BUILD_SCRIPT), str(root), " ".join(PACKAGES), str(TOOLS / "debian-debs")],
            check=True,
            timeout=900,
        )
    return root


def wheelhouse() -> Path:
    """Every dependency as a wheel, so pip in the root installs offline (and fast) from it."""
    key = cache_key((REPO / "pyproject.toml").read_bytes(), EXTRAS.encode())
    house = TOOLS / f"wheelhouse-{key}"
    if not house.exists():
        for stale in TOOLS.glob("wheelhouse-*"):
            shutil.rmtree(stale)
        partial = house.with_suffix(".partial")
        shutil.rmtree(partial, ignore_errors=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "-q", "-w", str(partial), f".[{EXTRAS}]"],
            cwd=REPO,
            check=True,
            timeout=600,
        )
        for own in partial.glob("atelier-*.whl"):
            own.unlink()
        partial.rename(house)
    return house


def build_wheel(dest: Path) -> Path:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dest), str(REPO)],
        check=True,
        timeout=300,
    )
    (wheel,) = dest.glob("atelier-*.whl")
    return wheel


@pytest.fixture(scope="module")
def converged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    requirements()
    with tools_lock():
        yield from converge_once(tmp_path_factory)


def converge_once(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    # Under the lock no other converge runs, so a /proc still mounted under an old pytest
    # directory is from a run killed outright (SIGKILL): unmount it before pytest's clean-up
    # of old temporary directories walks there.
    for stale in mounts_under(tmp_path_factory.getbasetemp().parent.resolve()):
        if re.search(r"/converge\d*/root/", stale + "/"):
            subprocess.run(["umount", "-l", stale], check=False, timeout=60)
    work = tmp_path_factory.mktemp("converge").resolve()
    root = work / "root"
    started = time.monotonic()
    cached, house = cached_root(), wheelhouse()
    log.info("cached root and wheels ready: %.0f s", time.monotonic() - started)

    def stopped(signum: int, frame: object) -> None:
        raise SystemExit(f"stopped by signal {signum}")

    # A CI timeout sends SIGTERM: turned into an exception, it still runs the clean-up below.
    previous = signal.signal(signal.SIGTERM, stopped)
    try:
        yield from converge(work, root, cached, house)
    finally:
        signal.signal(signal.SIGTERM, previous)
        unmount_under(root)
        # --one-file-system: even a mount unmount_under missed is never descended into.
        subprocess.run(["rm", "-rf", "--one-file-system", str(work)], check=False, timeout=300)


def converge(work: Path, root: Path, cached: Path, house: Path) -> Iterator[dict[str, object]]:
    subprocess.run(["cp", "-a", str(cached), str(root)], check=True, timeout=300)
    shutil.copytree(house, root / "opt" / "wheelhouse")
    wheel = build_wheel(work / "dist")
    # A Raspberry Pi OS boot config, so the SPI task has something to turn on.
    (root / "boot" / "firmware").mkdir(parents=True)
    (root / "boot" / "firmware" / "config.txt").write_text("dtparam=audio=on\n#dtparam=spi=on\n")
    shutil.copy("/etc/resolv.conf", root / "etc" / "resolv.conf")
    inventory = work / "inventory.yml"
    inventory.write_text(
        f"""
all:
  vars:
    ansible_connection: community.general.chroot
    ansible_host: {root}
    ansible_python_interpreter: /usr/bin/python3
    atelier_manage_services: false
    atelier_venv_package_wheel: {wheel}
    atelier_venv_pip_extra_args: --no-index --find-links /opt/wheelhouse
    hub_package_extra: "{EXTRAS}"
    edge_agent_package_extra: "{EXTRAS}"
    hub_site: demo-lab
    hub_database_url: sqlite:////var/lib/atelier/atelier.db
    hub_mqtt_password: {HUB_MQTT_PASSWORD}
    edge_agent_site: demo-lab
    edge_agent_machine: laser-1
    edge_agent_machine_type: laser
    edge_agent_hub_public_key: "{{{{ hub_public_key }}}}"
    edge_agent_mqtt_password: laser-password-for-the-test
    edge_agent_busy_input_pin: 27
    broker_bridge_enabled: true
    broker_bridge_site: demo-lab
    broker_bridge_address: region.example.org
    broker_bridge_password: bridge-password-for-the-test
  children:
    hub: {{hosts: {{{HOST}: {{}}}}}}
    broker: {{hosts: {{{HOST}: {{}}}}}}
    edge: {{hosts: {{{HOST}: {{}}}}}}
"""
    )
    host_units = host_atelier_units()
    subprocess.run(["mount", "-t", "proc", "proc", str(root / "proc")], check=True, timeout=60)
    runs = []
    for _ in range(2):
        started = time.monotonic()
        result = playbook(inventory)
        runs.append((result, time.monotonic() - started))
        log.info("converge run %d: %.0f s", len(runs), runs[-1][1])
    yield {"root": root, "runs": runs, "host_units": host_units}


def playbook(inventory: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(REPO / "ansible" / "ansible.cfg"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
        # One module run per task instead of copy+run+remove, and facts gathered once for
        # the four plays on the one host: together they halve the converge time.
        "ANSIBLE_PIPELINING": "1",
        "ANSIBLE_GATHERING": "smart",
    }
    return subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", str(inventory), "site.yml"],
        cwd=REPO / "ansible",
        env=env,
        capture_output=True,
        text=True,
        timeout=480,
        check=False,
    )


def recap(result: subprocess.CompletedProcess[str]) -> dict[str, int]:
    match = re.search(rf"^{HOST}\s*:\s*(.*)$", result.stdout, re.MULTILINE)
    assert match, result.stdout[-3000:] + result.stderr[-3000:]
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", match.group(1))}


def owner(root: Path, path: str) -> tuple[str, str, int]:
    """User, group (as the root's own /etc/passwd and /etc/group name them) and mode."""
    st = (root / path.lstrip("/")).stat()
    users = {
        int(f[2]): f[0]
        for f in (line.split(":") for line in (root / "etc/passwd").read_text().splitlines())
    }
    groups = {
        int(f[2]): f[0]
        for f in (line.split(":") for line in (root / "etc/group").read_text().splitlines())
    }
    return users[st.st_uid], groups[st.st_gid], st.st_mode & 0o7777


def in_root(root: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["chroot", str(root), *argv], capture_output=True, text=True, timeout=120, check=False
    )


def test_first_run_converges(converged: dict[str, object]) -> None:
    (result, seconds), _ = converged["runs"]  # type: ignore[misc]
    counts = recap(result)
    assert counts["failed"] == 0 and counts["unreachable"] == 0, result.stdout[-6000:]
    assert counts["changed"] > 0
    log.info("first converge: %.0f s", seconds)


def test_second_run_changes_nothing(converged: dict[str, object]) -> None:
    _, (result, seconds) = converged["runs"]  # type: ignore[misc]
    counts = recap(result)
    blocks = re.split(r"\n(?=TASK \[|RUNNING HANDLER \[)", result.stdout)
    changed = [block.strip() for block in blocks if re.search(r"^changed: ", block, re.MULTILINE)]
    assert counts["failed"] == 0, result.stdout[-6000:]
    assert counts["changed"] == 0, "\n".join(changed)
    log.info("idempotence run: %.0f s", seconds)


def test_units_are_written(converged: dict[str, object]) -> None:
    root: Path = converged["root"]  # type: ignore[assignment]
    # Written into the root, and nothing of ours reached the host's systemd.
    assert host_atelier_units() == converged["host_units"]
    for unit in (
        "atelier-edge.service",
        "atelier-hub.service",
        "atelier-ingest@.service",
        "atelier-backup.service",
        "atelier-backup.timer",
    ):
        assert owner(root, f"/etc/systemd/system/{unit}") == ("root", "root", 0o644)
    edge = (root / "etc/systemd/system/atelier-edge.service").read_text()
    assert "ExecStart=/opt/atelier/venv/bin/atelier-agent --config /etc/atelier/edge.toml" in edge
    assert "SupplementaryGroups=gpio spi input" in edge
    assert owner(root, "/etc/atelier/credentials/mqtt-password") == ("root", "root", 0o600)
    assert (
        root / "etc/atelier/credentials/mqtt-password"
    ).read_text() == "laser-password-for-the-test\n"
    groups = (root / "etc/group").read_text()
    assert re.search(r"^gpio:.*atelier-edge", groups, re.MULTILINE)
    assert re.search(r"^spi:.*atelier-edge", groups, re.MULTILINE)
    assert "dtparam=spi=on" in (root / "boot/firmware/config.txt").read_text().splitlines()


def test_the_venv_has_atelier_and_the_rendered_config_passes(
    converged: dict[str, object],
) -> None:
    root: Path = converged["root"]  # type: ignore[assignment]
    imported = in_root(
        root, "/opt/atelier/venv/bin/python", "-c", "import atelier_cli, edge.agent, hub.app"
    )
    assert imported.returncode == 0, imported.stderr
    check = in_root(
        root, "/opt/atelier/venv/bin/atelier", "edge", "check-config", "/etc/atelier/edge.toml"
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert owner(root, "/etc/atelier/edge.toml") == ("root", "atelier-edge", 0o640)
    # The key the agent trusts is the one the hub role created.
    keys = in_root(
        root,
        "runuser",
        "-u",
        "atelier",
        "--",
        "env",
        f"ATELIER_MQTT_PASSWORD={HUB_MQTT_PASSWORD}",
        "/opt/atelier/venv/bin/atelier",
        "hub",
        "keys",
        "--config",
        "/etc/atelier/hub.toml",
    )
    assert keys.returncode == 0, keys.stderr
    assert (
        f'hub_public_key = "{keys.stdout.split()[-1]}"'
        in (root / "etc/atelier/edge.toml").read_text()
    )
    assert owner(root, "/var/lib/atelier/hub_ed25519.pem") == ("atelier", "atelier", 0o600)
    # The checker really checks: a broken copy is refused with exit 2.
    broken = (
        (root / "etc/atelier/edge.toml")
        .read_text()
        .replace('machine = "laser-1"', 'machine = "Laser 1"')
    )
    (root / "tmp/broken.toml").write_text(broken)
    refused = in_root(
        root, "/opt/atelier/venv/bin/atelier", "edge", "check-config", "/tmp/broken.toml"
    )
    assert refused.returncode == 2, refused.stdout + refused.stderr


def test_mosquitto_files_have_the_right_owners_and_modes(converged: dict[str, object]) -> None:
    root: Path = converged["root"]  # type: ignore[assignment]
    assert owner(root, "/etc/mosquitto/mosquitto.conf") == ("root", "root", 0o644)
    assert owner(root, "/etc/mosquitto/atelier.passwd") == ("root", "mosquitto", 0o640)
    assert owner(root, "/etc/mosquitto/atelier.acl") == ("root", "mosquitto", 0o640)
    assert owner(root, "/etc/mosquitto/certs/server.key") == ("root", "mosquitto", 0o640)
    assert owner(root, "/etc/mosquitto/certs/server.crt") == ("root", "mosquitto", 0o644)
    conf = (root / "etc/mosquitto/mosquitto.conf").read_text()
    assert "allow_anonymous false" in conf and "persistence true" in conf
    assert "max_queued_messages 100000" in conf
    acl = (root / "etc/mosquitto/atelier.acl").read_text()
    assert "user atelier-hub" in acl
    passwd = (root / "etc/mosquitto/atelier.passwd").read_text()
    assert passwd.startswith("atelier-hub:$7$")
    # The bridge to the region holds a password: mosquitto reads it, nobody else.
    assert "include_dir /etc/mosquitto/bridge.d" in conf
    assert owner(root, "/etc/mosquitto/bridge.d") == ("root", "mosquitto", 0o750)
    bridge_file = "/etc/mosquitto/bridge.d/atelier-bridge.conf"
    assert owner(root, bridge_file) == ("root", "mosquitto", 0o640)
    bridge = (root / bridge_file.lstrip("/")).read_text()
    assert "address region.example.org:8883" in bridge
    assert "topic atelier/v1/demo-lab/# both 1" in bridge and "cleansession false" in bridge
