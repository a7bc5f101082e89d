"""The machine TOML (firmware_config/*.toml), validated with every error reported at once.

Validated with msgspec, as the agent's side of the wire contract is (protocol/lite.py): the
agent loads no pydantic, about 20 MB less on a Pi (docs/performance.md). Each field is checked
on its own, so one pass reports every problem; a section's cross-field rules (`__post_init__`)
run once its fields are right.
"""

from __future__ import annotations

import os
import tomllib
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, TypeVar, Union

import msgspec
from msgspec import Meta

from edge.errors import ConfigError as ConfigError  # re-exported: its first home
from protocol.signed import load_public_key
from protocol.topics import SLUG_PATTERN

PinFactoryName = Literal["mock", "lgpio", "rpigpio", "pigpio", "native"]
BcmPin = Annotated[int, Meta(ge=0, le=27, description="a BCM GPIO number, 0..27")]
Slug = Annotated[str, Meta(pattern=SLUG_PATTERN)]
Port = Annotated[int, Meta(ge=1, le=65535)]


def _range(ge: float | None = None, le: float | None = None, gt: float | None = None) -> Meta:
    bounds: dict[str, Any] = {"ge": ge, "le": le, "gt": gt}
    meta: Meta = Meta(**{k: v for k, v in bounds.items() if v is not None})
    return meta


class _Section(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    # Checks of one field (its name: a function raising ValueError), run once it has its type.
    checks: ClassVar[dict[str, Callable[[Any], object]]] = {}


def _key(value: str) -> None:
    load_public_key(value)


class AgentSection(_Section, frozen=True, kw_only=True):
    site: Slug
    machine: Slug
    state_dir: Path
    hub_public_key: str
    machine_type: str = "other"
    heartbeat_s: Annotated[float, _range(ge=1, le=3600)] = 30

    checks: ClassVar[dict[str, Callable[[Any], object]]] = {"hub_public_key": _key}


class MqttSection(_Section, frozen=True, kw_only=True):
    host: str = "127.0.0.1"
    port: Port = 1883
    username: str | None = None
    password: str | None = None
    password_file: Path | None = None
    protocol: Literal["5", "3.1.1"] = "5"
    keepalive_s: Annotated[int, _range(ge=5, le=600)] = 30
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


class GpioSection(_Section, frozen=True, kw_only=True):
    pin_factory: PinFactoryName


class RelaySection(_Section, frozen=True, kw_only=True):
    pin: BcmPin
    active_high: bool = True


class ReaderSection(_Section, frozen=True, kw_only=True):
    type: Literal["sim", "mfrc522", "keyboard"]
    # mfrc522
    bus: Annotated[int, _range(ge=0, le=6)] = 0
    device: Annotated[int, _range(ge=0, le=2)] = 0
    rst_pin: Annotated[int, _range(ge=0, le=27)] = 25
    poll_interval_s: Annotated[float, _range(gt=0, le=5)] = 0.1
    # secure mode (protocol/card_keys.py): per-card keys derived from the site secret
    secure: bool = False
    secure_sector: Annotated[int, _range(ge=1, le=15)] = 1
    tag_sector: Annotated[int, _range(ge=1, le=15)] = 2
    site_key_file: Path | None = None
    # The key A blank cards come with (the transport key), used only to enrol them.
    sector_key: Annotated[str, Meta(pattern=r"^[0-9A-Fa-f]{12}$")] = "FFFFFFFFFFFF"
    # keyboard (USB wedge)
    input_device: Path | None = None
    format: Literal["hex", "decimal10"] = "hex"

    def __post_init__(self) -> None:
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


class OutputPin(_Section, frozen=True, kw_only=True):
    pin: BcmPin
    active_high: bool = True


class InputPin(_Section, frozen=True, kw_only=True):
    pin: BcmPin
    pull_up: bool = False
    active_state: bool | None = None
    bounce_s: Annotated[float, _range(ge=0, le=5)] = 0.05


InterlockKind = Literal["extraction", "chiller_flow", "lid", "fire_suppression", "other"]


class InterlockInput(InputPin, frozen=True, kw_only=True):
    """One [[interlock]]: an input that must be active (OK) for the relay to close.

    Wire it so the input is active when the condition holds: air flowing (or the extractor
    drawing current), coolant flowing, the lid closed, the fire suppression armed."""

    name: Slug
    kind: InterlockKind
    # Time the input may take to come up once the relay has closed (an extractor the agent
    # itself starts, through an [[accessory]]); 0: it must be OK before the badge opens.
    grace_s: Annotated[float, _range(ge=0, le=600)] = 0


class AccessoryOutput(OutputPin, frozen=True, kw_only=True):
    """One [[accessory]]: a relay that follows the machine's (extractor, air assist, rotary)."""

    name: Slug
    # Keeps running this long after the machine's relay opens (an extractor clearing fumes).
    run_on_s: Annotated[float, _range(ge=0, le=24 * 3600)] = 0
    # A machine type whose training the member needs for this accessory (a rotary axis):
    # the hub lists each member's trainings in the allow-list; untrained, it stays off.
    training: Slug | None = None


class SafetySection(_Section, frozen=True, kw_only=True):
    """[safety]: what an interlock fault during a session does."""

    # "end-session": the session ends and the relay opens (only once the machine is no longer
    # busy, unless session.cut_while_busy); "warn": buzzer and LED only.
    on_fault: Literal["end-session", "warn"] = "end-session"


class SessionSection(_Section, frozen=True, kw_only=True):
    idle_timeout_s: Annotated[float, _range(ge=5, le=24 * 3600)] = 900
    warning_s: Annotated[float, _range(ge=0, le=3600)] = 60
    card_present: bool = False
    # Cutting power while the machine works can ruin a job or a tool; only an emergency stop
    # wiring makes it acceptable.
    cut_while_busy: bool = False
    # A spool's tag tapped after the badge (issue 21): "off" ignores spools, "optional" takes
    # one when tapped, "required" keeps the power off until one is.
    spool: Literal["off", "optional", "required"] = "off"


class OctoPrintOptions(_Section, frozen=True, kw_only=True):
    """The [octoprint] table of an agent's config."""

    url: Annotated[str, Meta(pattern=r"^https?://")]
    api_key: str | None = None
    api_key_file: Path | None = None
    poll_interval_s: Annotated[float, _range(gt=0, le=300)] = 2.0
    request_timeout_s: Annotated[float, _range(gt=0, le=120)] = 5.0
    telemetry_min_interval_s: Annotated[float, _range(ge=0, le=3600)] = 5.0
    no_session_policy: Literal["pause", "cancel"] = "pause"

    def __post_init__(self) -> None:
        if bool(self.api_key) == bool(self.api_key_file):
            raise ValueError(
                "set exactly one of api_key or api_key_file (an OctoPrint application key)"
            )

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


class PlugBrokerOptions(_Section, frozen=True, kw_only=True):
    """[power_meter.broker]: the plugs' own broker, when they do not publish on the lab's."""

    host: Annotated[str, Meta(min_length=1)]
    port: Port = 1883
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


class PowerMeterOptions(_Section, frozen=True, kw_only=True):
    """The [power_meter] table: a Tasmota or Shelly plug's watts make the machine busy.

    Busy once the power stays above `busy_above_w` for `busy_after_s`, idle again once it
    stays below `idle_below_w` for `idle_after_s`; a plug heard from for no `silent_after_s`
    is reported and taken as idle."""

    kind: Literal["tasmota", "shelly-gen2", "shelly-gen1"]
    topic: str
    channel: Annotated[int, _range(ge=0, le=7)] = 0
    busy_above_w: Annotated[float, _range(gt=0, le=100_000)] = 50
    busy_after_s: Annotated[float, _range(ge=0, le=3600)] = 5
    idle_below_w: Annotated[float, _range(ge=0, le=100_000)] = 20
    idle_after_s: Annotated[float, _range(ge=0, le=3600)] = 30
    silent_after_s: Annotated[float, _range(gt=0, le=24 * 3600)] = 120
    telemetry_min_interval_s: Annotated[float, _range(ge=0, le=3600)] = 10
    broker: PlugBrokerOptions | None = None

    checks: ClassVar[dict[str, Callable[[Any], object]]] = {"topic": _plain_topic}

    def __post_init__(self) -> None:
        if self.idle_below_w > self.busy_above_w:
            raise ValueError(
                f"idle_below_w ({self.idle_below_w:g} W) must not be above busy_above_w "
                f"({self.busy_above_w:g} W): the gap between them is the hysteresis band "
                "(e.g. busy_above_w = 50, idle_below_w = 20)"
            )


class RuidaOptions(_Section, frozen=True, kw_only=True):
    """The [ruida] table: a Ruida laser controller's job state and laser-on counter, over UDP."""

    host: Annotated[str, Meta(min_length=1)]
    port: Port = 50200
    # Controllers answer on UDP port 40200; 0 takes any free port (a simulator answers the
    # sender).
    source_port: Annotated[int, _range(ge=0, le=65535)] = 40200
    magic: Annotated[int, Meta(ge=0, le=255, description="swizzle key; 0x88 on RDC644x")] = 0x88
    poll_interval_s: Annotated[float, _range(gt=0, le=300)] = 2.0
    timeout_s: Annotated[float, _range(gt=0, le=30)] = 1.0
    silent_after_s: Annotated[float, _range(gt=0, le=3600)] = 30
    telemetry_min_interval_s: Annotated[float, _range(ge=0, le=3600)] = 10


class AgentConfig(_Section, frozen=True, kw_only=True):
    agent: AgentSection
    gpio: GpioSection
    relay: RelaySection
    reader: ReaderSection
    mqtt: MqttSection = msgspec.field(default_factory=MqttSection)
    session: SessionSection = msgspec.field(default_factory=SessionSection)
    led: OutputPin | None = None
    buzzer: OutputPin | None = None
    busy_input: InputPin | None = None
    incident_button: InputPin | None = None
    octoprint: OctoPrintOptions | None = None
    power_meter: PowerMeterOptions | None = None
    ruida: RuidaOptions | None = None
    interlock: Annotated[list[InterlockInput], Meta(max_length=8)] = msgspec.field(
        default_factory=list
    )
    accessory: Annotated[list[AccessoryOutput], Meta(max_length=8)] = msgspec.field(
        default_factory=list
    )
    safety: SafetySection = msgspec.field(default_factory=SafetySection)

    def __post_init__(self) -> None:
        self._pins_and_names_are_distinct()
        self._reader_supports_mode()

    def _pins_and_names_are_distinct(self) -> None:
        used: dict[int, str] = {self.relay.pin: "relay.pin"}
        named: list[tuple[str, Any]] = [
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

    def _reader_supports_mode(self) -> None:
        if self.session.card_present and self.reader.type == "keyboard":
            raise ValueError(
                "session.card_present needs a reader that sees the card leave: a keyboard-wedge "
                'reader cannot; use reader.type = "mfrc522" or set card_present = false'
            )
        if self.reader.type == "keyboard" and self.reader.input_device is None:
            raise ValueError(
                "reader.input_device is required for a keyboard reader (see ls /dev/input/by-id/)"
            )

    @property
    def sim_socket(self) -> Path:
        return self.agent.state_dir / "sim-reader.sock"


S = TypeVar("S", bound=_Section)


# -- checking, with every problem named --------------------------------------------------------
def _dec_hook(kind: type, value: Any) -> Any:
    if kind is Path:
        if isinstance(value, str):
            return Path(value)
        raise ValueError(f"Expected a path as text, got {type(value).__name__}")
    raise NotImplementedError(kind)  # msgspec's hook contract: "not a type this hook knows"


def _plain(annotation: Any) -> tuple[Any, list[Meta]]:
    """The type under Annotated[...] and its constraints."""
    metas: list[Meta] = []
    while typing.get_origin(annotation) is Annotated:
        metas += [m for m in annotation.__metadata__ if isinstance(m, Meta)]
        annotation = annotation.__origin__
    return annotation, metas


def _options(annotation: Any) -> list[Any]:
    plain, _ = _plain(annotation)
    if typing.get_origin(plain) in (Union, types.UnionType):
        return [a for a in typing.get_args(plain) if a is not type(None)]
    return [plain]


def _struct_of(annotation: Any) -> type[_Section] | None:
    for option in _options(annotation):
        if isinstance(option, type) and issubclass(option, _Section):
            return option
    return None


def _list_item(annotation: Any) -> type[_Section] | None:
    for option in _options(annotation):
        if typing.get_origin(option) is list:
            item = typing.get_args(option)[0]
            if isinstance(item, type) and issubclass(item, _Section):
                return item
    return None


def _describe(where: str, message: str, annotation: Any, value: Any) -> str:
    """A msgspec refusal in words that name the fix."""
    text = message.partition(" - at `$")[0]
    literal = [a for a in _options(annotation) if typing.get_origin(a) is Literal]
    if literal:
        choices = [repr(c) for c in typing.get_args(literal[0])]
        wanted = ", ".join(choices[:-1]) + f" or {choices[-1]}" if len(choices) > 1 else choices[0]
        return f"{where}: Input should be {wanted} (got {value!r})"
    slug = any(
        getattr(m, "pattern", None) == SLUG_PATTERN
        for option in [annotation, *_options(annotation)]
        for m in _plain(option)[1]
    )
    if slug and "matching regex" in text:
        return f"{where}: use 1-63 lowercase letters, digits, '-' or '_' (got {value!r})"
    if where.endswith("pin") or ".pin" in where:
        return f"{where}: {text} (a BCM GPIO number 0..27, got {value!r})"
    return f"{where}: {text} (got {value!r})"


def _check(kind: type[_Section], data: Any, where: str, errors: list[str]) -> None:
    """Every problem of `data` as a `kind`, each field on its own."""
    if not isinstance(data, dict):
        errors.append(f"{where or '(top level)'}: expected a table (got {data!r})")
        return
    hints = typing.get_type_hints(kind, include_extras=True)
    fields = {f.name: f for f in msgspec.structs.fields(kind)}
    prefix = f"{where}." if where else ""
    before = len(errors)
    for key in data:
        if key not in fields:
            allowed = ", ".join(sorted(fields))
            errors.append(
                f"{prefix}{key}: unknown field (check the spelling); allowed here: {allowed}"
            )
    for name, field in fields.items():
        path = f"{prefix}{name}"
        if name not in data:
            if field.required:
                errors.append(f"{path}: required field is missing")
            continue
        value, annotation = data[name], hints[name]
        section, item = _struct_of(annotation), _list_item(annotation)
        if section is not None and isinstance(value, dict):
            _check(section, value, path, errors)
            continue
        if item is not None and isinstance(value, list):
            _, metas = _plain(annotation)
            most = next((m.max_length for m in metas if m.max_length is not None), None)
            if most is not None and len(value) > most:
                errors.append(f"{path}: at most {most} (got {len(value)})")
            for index, entry in enumerate(value):
                _check(item, entry, f"{path}.{index}", errors)
            continue
        try:
            converted = msgspec.convert(value, annotation, strict=False, dec_hook=_dec_hook)
            if name in kind.checks:
                kind.checks[name](converted)
        except msgspec.ValidationError as exc:
            errors.append(_describe(path, str(exc), annotation, value))
        except ValueError as exc:
            errors.append(f"{path}: {exc}")
    if len(errors) == before:
        try:
            msgspec.convert(data, kind, strict=False, dec_hook=_dec_hook)
        except msgspec.ValidationError as exc:
            # The section's own rules (__post_init__): named at the section.
            errors.append(f"{where or '(top level)'}: {str(exc).partition(' - at `$')[0]}")


def check_config(data: dict[str, Any]) -> tuple[AgentConfig | None, list[str]]:
    """The config, or every problem found in `data` as 'section.field: message'."""
    errors: list[str] = []
    _check(AgentConfig, data, "", errors)
    if errors:
        return None, errors
    return msgspec.convert(data, AgentConfig, strict=False, dec_hook=_dec_hook), []


def section(kind: type[S], **fields: Any) -> S:
    """One table checked as in a config file (a `[octoprint]` given in code), or ConfigError."""
    errors: list[str] = []
    _check(kind, fields, kind.__name__, errors)
    if errors:
        raise ConfigError(f"<{kind.__name__}>", errors)
    return msgspec.convert(fields, kind, strict=False, dec_hook=_dec_hook)


def config_schema() -> dict[str, Any]:
    """The JSON Schema of the machine TOML (firmware_config/schema.json, for editors)."""

    def hook(kind: type) -> dict[str, Any]:
        if kind is Path:
            return {"type": "string", "format": "path"}
        raise NotImplementedError(kind)  # msgspec's hook contract, as in _dec_hook

    schema: dict[str, Any] = msgspec.json.schema(AgentConfig, schema_hook=hook)
    return schema


def parse_config(data: dict[str, Any], path: Path | str = "<config>") -> AgentConfig:
    config, errors = check_config(data)
    if config is None:
        raise ConfigError(path, errors)
    return config


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
