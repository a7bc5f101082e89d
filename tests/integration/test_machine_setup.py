"""Issue 24: `atelier hub machine add` and `machine check`, from a new laser to its first badge.

A real Mosquitto whose password file and ACL the hub writes (and reloads with SIGHUP), the real
ingest and allow-list publisher, and a real agent started from the config the command wrote.
On SQLite and, when configured, PostgreSQL.
"""

from __future__ import annotations

import re
import socket
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine
from sqlmodel import Session, select
from typer.testing import CliRunner

from edge.agent import Agent
from edge.config import parse_config
from hub.allowlist import AllowListPublisher
from hub.billing_store import BillingRate
from hub.cli.main import app
from hub.core.db import make_engine, migrate
from hub.core.security import load_or_create_signing_key
from hub.core.settings import get_settings
from hub.ingest.consumer import IngestConsumer
from hub.models import Badge, Machine, MachineKind, MachineType, Member, Training, TrainingLevel
from hub.services.broker_accounts import write_credentials
from hub.services.machine_checks import setup_check
from hub.services.machines import (
    CLOCK_TOLERANCE_S,
    AgentTarget,
    MachineChoices,
    MachineSetupError,
    agent_config,
    ask_octoprint,
    check_choices,
    plug_parts,
)
from hub.web.i18n import translator
from protocol.allowlist import public_key_b64
from tests.support.mosquitto import MOSQUITTO_HINT, MosquittoBroker, find_binary
from tests.support.processes import wait_until

runner = CliRunner()
PUBLIC_KEY = public_key_b64(Ed25519PrivateKey.generate().public_key())
BADGE = "0A1B2C3D"


@dataclass
class Lab:
    env: dict[str, str]
    engine: Engine
    broker: MosquittoBroker
    tmp: Path

    def cli(self, *args: str, lang: str = "en_GB.UTF-8") -> tuple[int, str]:
        result = runner.invoke(app, list(args), env={**self.env, "LANG": lang, "LANGUAGE": ""})
        assert result.exception is None or isinstance(result.exception, SystemExit), result.output
        return result.exit_code, result.output


@pytest.fixture
def lab(tmp_path: Path, database_url: str) -> Iterator[Lab]:
    """A lab with a CO2-laser type (kind laser) and nobody trained, and its own broker whose
    accounts the hub writes: the hub's at first, then each machine's as it is added."""
    if find_binary("mosquitto") is None:
        pytest.skip(MOSQUITTO_HINT)
    migrate(database_url)
    engine = make_engine(database_url)
    with Session(engine) as session:
        session.add(MachineType(code="laser-co2", name="CO2 laser", kind=MachineKind.LASER))
        session.commit()
    passwd, acl, secrets = tmp_path / "passwd", tmp_path / "acl", tmp_path / "agents"
    hub_password = "hub-secret-for-tests"
    write_credentials(
        engine,
        password_file=passwd,
        acl_file=acl,
        secrets_dir=secrets,
        hub_user="hub",
        hub_password=hub_password,
        file_mode=0o600,
    )
    broker = MosquittoBroker(tmp_path / "broker", password_file=passwd, acl_file=acl)
    broker.hub_password = hub_password
    broker.start()
    assert broker.process is not None
    env = {
        "ATELIER_DATA_DIR": str(tmp_path / "hub"),
        "ATELIER_DATABASE_URL": database_url,
        "ATELIER_SITE": "lab",
        "ATELIER_MQTT_HOST": broker.host,
        "ATELIER_MQTT_PORT": str(broker.port),
        "ATELIER_MQTT_USERNAME": "hub",
        "ATELIER_MQTT_PASSWORD": hub_password,
        "ATELIER_MQTT_SECRETS_DIR": str(secrets),
        "ATELIER_MQTT_PASSWORD_FILE": str(passwd),
        "ATELIER_MQTT_ACL_FILE": str(acl),
        "ATELIER_MQTT_RELOAD_COMMAND": f"kill -HUP {broker.process.pid}",
        "ATELIER_TIMEZONE": "UTC",
    }
    try:
        yield Lab(env, engine, broker, tmp_path)
    finally:
        broker.stop()
        engine.dispose()


def _train(engine: Engine) -> None:
    """A rate, a trainer and a trained member with a badge: what the check asked for."""
    with Session(engine) as session:
        mtype = session.exec(select(MachineType).where(MachineType.code == "laser-co2")).one()
        trainer = Member(name="Inès Trainer", email="ines@example.org")
        member = Member(name="Léo Member", email="leo@example.org")
        session.add_all([trainer, member])
        session.flush()
        session.add(Badge(uid=BADGE, member_id=member.id or 0))
        session.add(
            Training(
                member_id=trainer.id or 0,
                machine_type_id=mtype.id or 0,
                level=TrainingLevel.TRAINER,
            )
        )
        session.add(
            Training(
                member_id=member.id or 0, machine_type_id=mtype.id or 0, granted_by_id=trainer.id
            )
        )
        session.add(
            BillingRate(
                machine_type="laser-co2",
                category="individual",
                effective_from=date(2026, 1, 1),
                cents_per_hour=1200,
            )
        )
        session.commit()


def _machine(engine: Engine, code: str) -> Machine:
    with Session(engine) as session:
        return session.exec(select(Machine).where(Machine.code == code)).one()


def test_a_laser_added_by_the_command_is_checked_before_and_after_its_agent_connects(
    lab: Lab,
) -> None:
    out = lab.tmp / "out"
    code, output = lab.cli(
        "machine", "add", "laser-9", "--name", "Laser 9", "--type", "laser-co2",
        "--busy-pin", "22", "--out", str(out),
    )  # fmt: skip
    assert code == 0, output
    # No --kind: the machine takes its type's.
    assert _machine(lab.engine, "laser-9").kind == MachineKind.LASER
    written = (out / "laser-9" / "edge.toml").read_text()
    password = (out / "laser-9" / "credentials" / "mqtt-password").read_text().strip()
    assert (out / "laser-9" / "credentials" / "mqtt-password").stat().st_mode & 0o077 == 0
    # The broker's files now hold the new account, confined to its own topics.
    assert re.search(r"^laser-9:\$7\$", (lab.tmp / "passwd").read_text(), re.M)
    assert "topic write atelier/v1/lab/laser-9/event" in (lab.tmp / "acl").read_text()

    code, output = lab.cli("machine", "check", "laser-9")
    assert code == 1, output
    assert "the agent has never connected" in output
    assert "no rate is set for its type laser-co2" in output
    assert "nobody is trained on its type laser-co2 yet" in output
    assert "no trainer exists for its type laser-co2" in output
    assert "laser-9 is not ready yet" in output

    _train(lab.engine)
    settings = get_settings(
        None,
        data_dir=lab.tmp / "hub",
        database_url=lab.env["ATELIER_DATABASE_URL"],
        site="lab",
        mqtt_host=lab.broker.host,
        mqtt_port=lab.broker.port,
        mqtt_username="hub",
        mqtt_password=lab.env["ATELIER_MQTT_PASSWORD"],
    )
    consumer = IngestConsumer(settings, lab.engine)
    publisher = AllowListPublisher(
        settings, lab.engine, load_or_create_signing_key(settings.data_dir)
    )
    consumer.start()
    publisher.start()
    agent = None
    try:
        wait_until(lambda: consumer.connected and publisher.connected, timeout=10, what="the hub")
        publisher.publish()
        # The config as the command wrote it, with what a test bench has instead of a Pi.
        config = tomllib.loads(written)
        config["gpio"]["pin_factory"] = "mock"
        config["reader"] = {"type": "sim"}
        config["agent"]["state_dir"] = str(lab.tmp / "agent")
        config["agent"]["heartbeat_s"] = 1
        config["mqtt"]["password"] = password
        agent = Agent(parse_config(config))
        agent.start()
        wait_until(lambda: agent.state()["acl_version"], timeout=20, what="the allow-list")
        wait_until(
            lambda: (
                _machine(lab.engine, "laser-9").online
                and (_machine(lab.engine, "laser-9").last_status or {}).get("acl_version")
            ),
            timeout=20,
            what="the hub to see laser-9 online with its list",
        )
        code, output = wait_until(
            lambda: (result := lab.cli("machine", "check", "laser-9"))[0] == 0 and result,
            timeout=20,
            what="the check to pass",
        )
        assert "the agent is connected" in output
        assert "its allow-list is the current one" in output
        assert "its clock is right" in output
        assert "laser-9 is ready: the first badge works" in output
        assert agent.tap(BADGE)["decision"] == "granted"
        agent.stop()
        agent = None
        wait_until(
            lambda: not _machine(lab.engine, "laser-9").online, timeout=20, what="laser-9 offline"
        )
        code, output = lab.cli("machine", "check", "laser-9")
        assert code == 1
        seen = _machine(lab.engine, "laser-9").last_seen
        assert seen is not None
        since = seen.replace(tzinfo=seen.tzinfo or UTC).astimezone(UTC).strftime("%H:%M")
        assert f"the agent is offline since {since}" in output
    finally:
        if agent is not None:
            agent.stop()
        publisher.stop()
        consumer.stop()


def test_a_mistake_names_the_option_and_the_fix_in_french_exit_2(lab: Lab) -> None:
    code, output = lab.cli("machine", "add", "laser-9", "--type", "laser-co2", lang="fr_FR.UTF-8")
    assert code == 2
    assert output.startswith("--ruida-host: ")
    assert "un laser" in output.lower() and "Traceback" not in output
    code, output = lab.cli("machine", "check", "nope")
    assert code == 2 and "nope" in output
    with Session(lab.engine) as session:
        assert session.exec(select(Machine)).all() == []


def test_a_whole_lab_from_csv_is_added_whole_or_not_at_all(lab: Lab) -> None:
    sheet = lab.tmp / "lab.csv"
    sheet.write_text(
        "code,name,machine_type,busy_pin,ruida_host\n"
        "laser-a,Laser A,laser-co2,22,\n"
        "laser-b,Laser B,laser-co2,,192.168.10.50\n"
        "laser-c,Laser C,laser-co2,,\n"
    )
    code, output = lab.cli("machine", "add", "--from-csv", str(sheet))
    assert code == 2
    assert f"{sheet} line 4 ruida_host:" in output
    with Session(lab.engine) as session:
        assert session.exec(select(Machine)).all() == []
    sheet.write_text(
        sheet.read_text().replace("laser-c,Laser C,laser-co2,,", "laser-c,Laser C,laser-co2,23,")
    )
    code, output = lab.cli("machine", "add", "--from-csv", str(sheet), "--out", str(lab.tmp / "o"))
    assert code == 0, output
    for machine in ("laser-a", "laser-b", "laser-c"):
        parsed = parse_config(tomllib.loads((lab.tmp / "o" / machine / "edge.toml").read_text()))
        assert parsed.agent.machine == machine and parsed.mqtt.username == machine
    assert (
        parse_config(tomllib.loads((lab.tmp / "o" / "laser-b" / "edge.toml").read_text())).ruida
        is not None
    )
    # The lab's three accounts are in the broker's file.
    assert all(
        re.search(rf"^{m}:", (lab.tmp / "passwd").read_text(), re.M)
        for m in ("laser-a", "laser-b", "laser-c")
    )


def test_a_broker_that_cannot_be_reloaded_leaves_the_machine_added_and_says_what_to_run(
    lab: Lab,
) -> None:
    lab.env["ATELIER_MQTT_RELOAD_COMMAND"] = "false"
    code, output = lab.cli("machine", "add", "laser-9", "--type", "laser-co2", "--busy-pin", "22")
    assert code == 0, output
    assert "run atelier hub mqtt-credentials and reload the broker" in output
    assert "[agent]" in output and 'machine = "laser-9"' in output  # printed without --out
    assert _machine(lab.engine, "laser-9").kind == MachineKind.LASER


# --- bad input, generated --------------------------------------------------------------------
FIELDS = {
    "code", "name", "site", "location", "machine_type", "kind", "reader", "relay_pin",
    "busy_pin", "ruida_host", "octoprint_url", "octoprint_api_key", "plug_kind", "plug_topic",
}  # fmt: skip
nasty = st.one_of(
    st.text(max_size=80),
    st.text(alphabet=st.characters(codec="utf-8"), min_size=250, max_size=400),
    st.sampled_from(["", " ", "\x00", "laser\x00", "-x", "A", "a" * 64, "http://", "tele/#"]),
)
pins = st.one_of(st.none(), st.integers(min_value=-(2**40), max_value=2**40))


@pytest.fixture
def choosing(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'hub.db'}")
    migrate(f"sqlite:///{tmp_path / 'hub.db'}")
    with Session(engine) as session:
        for code, kind in (("laser", "laser"), ("printer", "printer"), ("cnc", "cnc")):
            session.add(MachineType(code=code, name=code, kind=MachineKind(kind)))
        session.commit()
    yield engine
    engine.dispose()


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    code=nasty, name=nasty, site=st.sampled_from(["lab", "Lab", "\x00"]),
    machine_type=st.sampled_from(["laser", "printer", "cnc", "nope", ""]),
    kind=st.one_of(st.none(), st.sampled_from(["laser", "printer", "cnc", "other", "toaster"])),
    reader=st.sampled_from(["mfrc522", "keyboard", "rfid"]), relay_pin=pins, busy_pin=pins,
    ruida_host=st.one_of(st.none(), nasty), octoprint_url=st.one_of(st.none(), nasty),
    octoprint_api_key=st.one_of(st.none(), nasty), plug_topic=st.one_of(st.none(), nasty),
    plug_kind=st.one_of(st.none(), st.sampled_from(["tasmota", "zigbee"])),
)  # fmt: skip
def test_any_choice_is_taken_or_refused_naming_its_field_in_both_languages(
    choosing: Engine, **values: object
) -> None:
    choices = MachineChoices(**values)  # type: ignore[arg-type]
    with Session(choosing) as session:
        try:
            check_choices(session, choices)
        except MachineSetupError as exc:
            assert exc.field in FIELDS
            for language in ("en", "fr"):
                text = exc.text(translator(language).gettext)  # every parameter in both
                assert text and "Traceback" not in text
            return
    # Taken: then every rule held.
    assert 0 <= choices.relay_pin <= 27 and choices.code and "\x00" not in choices.name


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(skew=st.floats(min_value=-10 * 365 * 86400, max_value=10 * 365 * 86400))
def test_the_clock_is_called_off_beyond_a_minute_either_way(choosing: Engine, skew: float) -> None:
    seen = datetime(2026, 12, 7, 14, 5, tzinfo=UTC)
    with Session(choosing) as session:
        machine = session.exec(select(Machine).where(Machine.code == "clock-1")).first()
        if machine is None:
            machine = Machine(code="clock-1", name="Clock", site="lab", machine_type_id=1)
        machine.online = True
        machine.last_seen = seen
        machine.last_status = {"ts": (seen + timedelta(seconds=skew)).isoformat()}
        session.add(machine)
        session.commit()
        found = {f.code: f for f in setup_check(session, code="clock-1", now=seen, tz=UTC)}
    assert ("clock_off" in found) == (abs(skew) > CLOCK_TOLERANCE_S)
    assert ("clock_ok" in found) == (abs(skew) <= CLOCK_TOLERANCE_S)
    if "clock_off" in found:
        assert f"{round(skew)} s" in found["clock_off"].text()


@settings(max_examples=40, deadline=None)
@given(
    plug=st.sampled_from(["tasmota", "shelly-gen2", "shelly-gen1"]),
    ident=st.from_regex(r"[a-z][a-z0-9-]{0,20}", fullmatch=True),
    channel=st.integers(min_value=0, max_value=7),
)
def test_each_plug_topic_shape_gives_the_agent_the_topic_it_subscribes_to(
    plug: str, ident: str, channel: int
) -> None:
    """The hub's ACL names the whole topic; the agent builds it again from its config's parts:
    both must be the same topic, or the broker refuses the agent's subscription."""
    from edge.config import PowerMeterOptions
    from edge.integrations.power_meter import plug_topic

    topic = {
        "tasmota": f"tele/{ident}/SENSOR",
        "shelly-gen2": f"{ident}/status/switch:{channel}",
        "shelly-gen1": f"shellies/{ident}/relay/{channel}/power",
    }[plug]
    parts = plug_parts(plug, topic)
    assert parts is not None
    options = PowerMeterOptions(kind=plug, topic=parts[0], channel=parts[1])  # type: ignore[arg-type]
    assert plug_topic(options) == topic
    assert plug_parts("tasmota" if plug != "tasmota" else "shelly-gen1", topic) is None


def test_an_octoprint_nobody_listens_for_is_unreachable_not_refused() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    answer = ask_octoprint(f"http://127.0.0.1:{port}", "KEY", timeout_s=2)
    assert answer.state == "unreachable" and answer.detail == "ConnectError"


@settings(max_examples=40, deadline=None)
@given(name=st.text(min_size=1, max_size=300), location=st.text(max_size=50))
def test_any_machine_name_leaves_the_agent_config_valid(name: str, location: str) -> None:
    """Names come from the API too (any text): the config is still TOML the agent takes."""
    machine = Machine(code="m-1", name=name, site="lab", location=location, machine_type_id=1)
    target = AgentTarget(hub_public_key=PUBLIC_KEY, broker_host="hub.lab", broker_port=8883)
    parsed = parse_config(tomllib.loads(agent_config(machine, "laser", target)))
    assert parsed.agent.machine == "m-1" and parsed.mqtt.port == 8883
