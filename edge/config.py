"""The machine TOML (firmware_config/*.toml), validated with every error reported at once."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from edge.errors import ConfigError as ConfigError  # re-exported: its first home
from protocol.allowlist import load_public_key
from protocol.topics import SLUG_PATTERN

PinFactoryName = Literal["mock", "lgpio", "rpigpio", "pigpio", "native"]
BCM_PIN = Field(ge=0, le=27, description="a BCM GPIO number, 0..27")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AgentSection(_Section):
    site: str = Field(pattern=SLUG_PATTERN)
    machine: str = Field(pattern=SLUG_PATTERN)
    machine_type: str = "other"
    state_dir: Path
    hub_public_key: str
    heartbeat_s: float = Field(default=30, ge=1, le=3600)

    @field_validator("hub_public_key")
    @classmethod
    def _key(cls, value: str) -> str:
        load_public_key(value)
        return value


class MqttSection(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    username: str | None = None
    password: str | None = None
    password_file: Path | None = None
    protocol: Literal["5", "3.1.1"] = "5"
    keepalive_s: int = Field(default=30, ge=5, le=600)
    tls: bool = False
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None

    def resolve_password(self) -> str | None:
        """Secrets from systemd credentials or the environment win over the file.

        The variable is ATELIER_EDGE_MQTT_PASSWORD, not the hub's ATELIER_MQTT_PASSWORD, so an
        agent and a hub on one machine (the demo, a test bench) never take each other's."""
        cred_dir = os.environ.get("CREDENTIALS_DIRECTORY")
        if cred_dir and (Path(cred_dir) / "mqtt-password").exists():
            return (Path(cred_dir) / "mqtt-password").read_text().strip()
        if os.environ.get("ATELIER_EDGE_MQTT_PASSWORD"):
            return os.environ["ATELIER_EDGE_MQTT_PASSWORD"]
        if self.password_file is not None:
            return self.password_file.read_text().strip()
        return self.password


class GpioSection(_Section):
    pin_factory: PinFactoryName


class RelaySection(_Section):
    pin: int = BCM_PIN
    active_high: bool = True


class ReaderSection(_Section):
    type: Literal["sim", "mfrc522", "keyboard"]
    # mfrc522
    bus: int = Field(default=0, ge=0, le=6)
    device: int = Field(default=0, ge=0, le=2)
    rst_pin: int = Field(default=25, ge=0, le=27)
    poll_interval_s: float = Field(default=0.1, gt=0, le=5)
    # secure mode (protocol/card_keys.py): per-card keys derived from the site secret
    secure: bool = False
    secure_sector: int = Field(default=1, ge=1, le=15)
    tag_sector: int = Field(default=2, ge=1, le=15)
    site_key_file: Path | None = None
    # The key A blank cards come with (the transport key), used only to enrol them.
    sector_key: str = Field(default="FFFFFFFFFFFF", pattern=r"^[0-9A-Fa-f]{12}$")

    @model_validator(mode="after")
    def _secure_mode(self) -> ReaderSection:
        if self.secure and self.type != "mfrc522":
            raise ValueError(
                'reader.secure needs reader.type = "mfrc522": only it reads the card\'s sectors'
            )
        if self.secure and self.site_key_file is None:
            raise ValueError(
                "reader.secure needs reader.site_key_file: the file holding the site secret "
                "(at least 16 random bytes, the same on every reader of the site)"
            )
        if self.tag_sector == self.secure_sector:
            raise ValueError(
                f"reader.tag_sector and reader.secure_sector are both {self.tag_sector}: "
                "give two different sectors (e.g. secure_sector = 1, tag_sector = 2)"
            )
        return self

    # keyboard (USB wedge)
    input_device: Path | None = None
    format: Literal["hex", "decimal10"] = "hex"


class OutputPin(_Section):
    pin: int = BCM_PIN
    active_high: bool = True


class InputPin(_Section):
    pin: int = BCM_PIN
    pull_up: bool = False
    active_state: bool | None = None
    bounce_s: float = Field(default=0.05, ge=0, le=5)


InterlockKind = Literal["extraction", "chiller_flow", "lid", "fire_suppression", "other"]


class InterlockInput(InputPin):
    """One [[interlock]]: an input that must be active (OK) for the relay to close.

    Wire it so the input is active when the condition holds: air flowing (or the extractor
    drawing current), coolant flowing, the lid closed, the fire suppression armed."""

    name: str = Field(pattern=SLUG_PATTERN)
    kind: InterlockKind
    # Time the input may take to come up once the relay has closed (an extractor the agent
    # itself starts, through an [[accessory]]); 0: it must be OK before the badge opens.
    grace_s: float = Field(default=0, ge=0, le=600)


class AccessoryOutput(OutputPin):
    """One [[accessory]]: a relay that follows the machine's (extractor, air assist, rotary)."""

    name: str = Field(pattern=SLUG_PATTERN)
    # Keeps running this long after the machine's relay opens (an extractor clearing fumes).
    run_on_s: float = Field(default=0, ge=0, le=24 * 3600)
    # A machine type whose training the member needs for this accessory (a rotary axis):
    # the hub lists each member's trainings in the allow-list; untrained, it stays off.
    training: str | None = Field(default=None, pattern=SLUG_PATTERN)


class SafetySection(_Section):
    """[safety]: what an interlock fault during a session does."""

    # "end-session": the session ends and the relay opens (only once the machine is no longer
    # busy, unless session.cut_while_busy); "warn": buzzer and LED only.
    on_fault: Literal["end-session", "warn"] = "end-session"


class SessionSection(_Section):
    idle_timeout_s: float = Field(default=900, ge=5, le=24 * 3600)
    warning_s: float = Field(default=60, ge=0, le=3600)
    card_present: bool = False
    # Cutting power while the machine works can ruin a job or a tool; only an emergency stop
    # wiring makes it acceptable.
    cut_while_busy: bool = False
    # A spool's tag tapped after the badge (issue 21): "off" ignores spools, "optional" takes
    # one when tapped, "required" keeps the power off until one is.
    spool: Literal["off", "optional", "required"] = "off"


class OctoPrintOptions(BaseModel):
    """The [octoprint] table of an agent's config."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(pattern=r"^https?://")
    api_key: str | None = None
    api_key_file: Path | None = None
    poll_interval_s: float = Field(default=2.0, gt=0, le=300)
    request_timeout_s: float = Field(default=5.0, gt=0, le=120)
    telemetry_min_interval_s: float = Field(default=5.0, ge=0, le=3600)
    no_session_policy: Literal["pause", "cancel"] = "pause"

    @model_validator(mode="after")
    def _one_key(self) -> OctoPrintOptions:
        if bool(self.api_key) == bool(self.api_key_file):
            raise ValueError(
                "set exactly one of api_key or api_key_file (an OctoPrint application key)"
            )
        return self

    def resolve_api_key(self) -> str:
        if self.api_key:
            return self.api_key
        assert self.api_key_file is not None
        try:
            key = self.api_key_file.read_text().strip()
        except OSError as exc:
            raise ValueError(
                f"octoprint.api_key_file: cannot read {self.api_key_file} ({exc.strerror})"
            ) from None
        if not key:
            raise ValueError(f"octoprint.api_key_file: {self.api_key_file} is empty")
        return key


def _plain_topic(value: str) -> str:
    # The topic is put inside a subscription: a wildcard would watch every plug at once.
    if not value or value != value.strip() or any(c in value for c in "#+ \t\n"):
        raise ValueError(
            f"{value!r} is not a plug topic: give the plug's own topic, without spaces or the "
            "MQTT wildcards + and # (Tasmota: its %topic%, e.g. tasmota_5A1B2C; Shelly Gen2: its "
            "prefix, e.g. shellyplusplugs-abc123; Shelly Gen1: its id, e.g. shellyplug-s-ABC123)"
        )
    if value.startswith("/") or value.endswith("/"):
        raise ValueError(f"{value!r}: a plug topic neither starts nor ends with '/'")
    return value


class PlugBrokerOptions(_Section):
    """[power_meter.broker]: the plugs' own broker, when they do not publish on the lab's."""

    host: str = Field(min_length=1)
    port: int = Field(default=1883, ge=1, le=65535)
    username: str | None = None
    password: str | None = None
    password_file: Path | None = None
    # Tasmota and Shelly firmware speak MQTT 3.1.1.
    protocol: Literal["5", "3.1.1"] = "3.1.1"
    tls: bool = False
    ca_file: Path | None = None

    def resolve_password(self) -> str | None:
        if self.password_file is not None:
            try:
                return self.password_file.read_text().strip()
            except OSError as exc:
                raise ValueError(
                    f"power_meter.broker.password_file: cannot read {self.password_file} "
                    f"({exc.strerror})"
                ) from None
        return self.password


class PowerMeterOptions(_Section):
    """The [power_meter] table: a Tasmota or Shelly plug's watts make the machine busy.

    Busy once the power stays above `busy_above_w` for `busy_after_s`, idle again once it
    stays below `idle_below_w` for `idle_after_s`; a plug heard from for no `silent_after_s`
    is reported and taken as idle."""

    kind: Literal["tasmota", "shelly-gen2", "shelly-gen1"]
    topic: str
    channel: int = Field(default=0, ge=0, le=7)
    busy_above_w: float = Field(default=50, gt=0, le=100_000)
    busy_after_s: float = Field(default=5, ge=0, le=3600)
    idle_below_w: float = Field(default=20, ge=0, le=100_000)
    idle_after_s: float = Field(default=30, ge=0, le=3600)
    silent_after_s: float = Field(default=120, gt=0, le=24 * 3600)
    telemetry_min_interval_s: float = Field(default=10, ge=0, le=3600)
    broker: PlugBrokerOptions | None = None

    @field_validator("topic")
    @classmethod
    def _topic(cls, value: str) -> str:
        return _plain_topic(value)

    @model_validator(mode="after")
    def _band(self) -> PowerMeterOptions:
        if self.idle_below_w > self.busy_above_w:
            raise ValueError(
                f"idle_below_w ({self.idle_below_w:g} W) must not be above busy_above_w "
                f"({self.busy_above_w:g} W): the gap between them is the hysteresis band "
                "(e.g. busy_above_w = 50, idle_below_w = 20)"
            )
        return self


class RuidaOptions(_Section):
    """The [ruida] table: a Ruida laser controller's job state and laser-on counter, over UDP."""

    host: str = Field(min_length=1)
    port: int = Field(default=50200, ge=1, le=65535)
    # Controllers answer on UDP port 40200; 0 takes any free port (a simulator answers the
    # sender).
    source_port: int = Field(default=40200, ge=0, le=65535)
    magic: int = Field(default=0x88, ge=0, le=255, description="swizzle key; 0x88 on RDC644x")
    poll_interval_s: float = Field(default=2.0, gt=0, le=300)
    timeout_s: float = Field(default=1.0, gt=0, le=30)
    silent_after_s: float = Field(default=30, gt=0, le=3600)
    telemetry_min_interval_s: float = Field(default=10, ge=0, le=3600)


class AgentConfig(_Section):
    agent: AgentSection
    mqtt: MqttSection = MqttSection()
    gpio: GpioSection
    relay: RelaySection
    reader: ReaderSection
    session: SessionSection = SessionSection()
    led: OutputPin | None = None
    buzzer: OutputPin | None = None
    busy_input: InputPin | None = None
    incident_button: InputPin | None = None
    octoprint: OctoPrintOptions | None = None
    power_meter: PowerMeterOptions | None = None
    ruida: RuidaOptions | None = None
    interlock: list[InterlockInput] = Field(default_factory=list, max_length=8)
    accessory: list[AccessoryOutput] = Field(default_factory=list, max_length=8)
    safety: SafetySection = SafetySection()

    @model_validator(mode="after")
    def _pins_and_names_are_distinct(self) -> AgentConfig:
        used: dict[int, str] = {self.relay.pin: "relay.pin"}
        named: list[tuple[str, OutputPin | InputPin | None]] = [
            ("led", self.led),
            ("buzzer", self.buzzer),
            ("busy_input", self.busy_input),
            ("incident_button", self.incident_button),
        ]
        named += [(f"interlock {i.name!r}", i) for i in self.interlock]
        named += [(f"accessory {a.name!r}", a) for a in self.accessory]
        for where, device in named:
            if device is None:
                continue
            if device.pin in used:
                raise ValueError(
                    f"{where}: GPIO{device.pin} is already {used[device.pin]}; "
                    "give each device its own pin"
                )
            used[device.pin] = f"{where}.pin"
        for kind, items in (("interlock", self.interlock), ("accessory", self.accessory)):
            names = [item.name for item in items]
            if len(names) != len(set(names)):
                raise ValueError(f"{kind}: two share a name; give each its own name")
        return self

    @model_validator(mode="after")
    def _reader_supports_mode(self) -> AgentConfig:
        if self.session.card_present and self.reader.type == "keyboard":
            raise ValueError(
                "session.card_present needs a reader that sees the card leave: a keyboard-wedge "
                'reader cannot; use reader.type = "mfrc522" or set card_present = false'
            )
        if self.reader.type == "keyboard" and self.reader.input_device is None:
            raise ValueError(
                "reader.input_device is required for a keyboard reader (see ls /dev/input/by-id/)"
            )
        return self

    @property
    def sim_socket(self) -> Path:
        return self.agent.state_dir / "sim-reader.sock"


def _allowed_fields(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The fields the section at `loc` accepts, to suggest the right spelling."""
    current: Any = model
    for part in loc[:-1]:
        field = current.model_fields.get(part) if isinstance(part, str) else None
        if field is None:
            return []
        annotation = field.annotation
        candidates = [
            a
            for a in getattr(annotation, "__args__", (annotation,))
            if isinstance(a, type) and issubclass(a, BaseModel)
        ]
        if not candidates:
            return []
        current = candidates[0]
    return sorted(current.model_fields)


def describe_errors(exc: ValidationError, model: type[BaseModel] = AgentConfig) -> list[str]:
    out = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        where = ".".join(str(p) for p in loc) or "(top level)"
        kind = err["type"]
        if kind == "extra_forbidden":
            allowed = _allowed_fields(model, loc)
            hint = f"; allowed here: {', '.join(allowed)}" if allowed else ""
            out.append(f"{where}: unknown field (check the spelling){hint}")
        elif kind == "string_pattern_mismatch":
            out.append(
                f"{where}: use 1-63 lowercase letters, digits, '-' or '_' "
                f"(got {err.get('input')!r})"
            )
        elif kind == "missing":
            out.append(f"{where}: required field is missing")
        elif where.endswith("pin") or ".pin" in where:
            out.append(f"{where}: {err['msg']} (a BCM GPIO number 0..27, got {err.get('input')!r})")
        elif kind == "value_error":
            out.append(f"{where}: {str(err['ctx'].get('error', err['msg']))}")
        else:
            out.append(f"{where}: {err['msg']} (got {err.get('input')!r})")
    return out


def parse_config(data: dict[str, Any], path: Path | str = "<config>") -> AgentConfig:
    try:
        return AgentConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(path, describe_errors(exc)) from None


def load_config(path: Path | str) -> AgentConfig:
    """Read and validate a machine TOML; raises ConfigError listing every problem."""
    file = Path(path)
    try:
        data = tomllib.loads(file.read_text())
    except FileNotFoundError:
        raise ConfigError(path, ["file not found: give the path of the machine's TOML"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, [f"not valid TOML: {exc}"]) from None
    return parse_config(data, path)
