"""The hub role writes any hub setting into hub.toml, and the hub reads it back as written."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import jinja2
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.core.settings import SettingsError, get_settings

ROLE = Path(__file__).resolve().parents[2] / "ansible" / "roles" / "hub"


def _role_filter() -> Any:
    """The role's filter plugin, loaded from its file as Ansible loads it."""
    spec = importlib.util.spec_from_file_location(
        "atelier_toml", ROLE / "filter_plugins" / "atelier_toml.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.FilterModule().filters()["to_toml_value"]


to_toml_value = _role_filter()


def render(name: str, **overrides: Any) -> str:
    variables = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    variables.update(ansible_managed="managed by Ansible", **overrides)
    # The role's defaults hold Ansible expressions; the hub.toml and hub.env templates use none.
    variables = {k: v for k, v in variables.items() if "{{" not in str(v)}
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(ROLE / "templates"),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,  # as Ansible's template module does
    )
    env.filters["to_toml_value"] = to_toml_value  # the role's own filter plugin
    return env.get_template(name).render(**variables)


def load(tmp_path: Path, text: str) -> Any:
    path = tmp_path / "hub.toml"
    path.write_text(text)
    # The role writes the MQTT password to hub.env, which the unit reads as the environment.
    return get_settings(path, mqtt_password="from-hub.env")


def test_the_example_inventory_settings_reach_the_hub(tmp_path: Path) -> None:
    example = yaml.safe_load(
        (ROLE.parents[1] / "inventory" / "example" / "group_vars" / "hub.yml").read_text()
    )
    loaded = load(tmp_path, render("hub.toml.j2", hub_settings=example["hub_settings"]))
    assert loaded.timezone == "Europe/Paris"
    assert loaded.notify_language == "fr"
    assert loaded.agent_broker == "hub.lab.example:8883"
    assert loaded.notify_snapshot_urls == example["hub_settings"]["notify_snapshot_urls"]


def test_a_misspelt_setting_is_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="notify_langage: unknown setting"):
        load(tmp_path, render("hub.toml.j2", hub_settings={"notify_langage": "fr"}))


def test_the_smtp_password_goes_to_the_environment_file_only() -> None:
    toml = render("hub.toml.j2", hub_smtp_password="s3cret")
    env = render("hub.env.j2", hub_smtp_password="s3cret")
    assert "s3cret" not in toml
    assert "ATELIER_SMTP_PASSWORD=s3cret" in env.splitlines()


# Strings an operator could type: quotes, backslashes, NUL, newlines, non-Latin letters.
hostile_text = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=200)


@settings(max_examples=40, deadline=None)
@given(
    site_name=hostile_text,
    raw_hours=st.floats(min_value=1e-6, max_value=1e12, allow_nan=False),
    urls=st.dictionaries(
        st.from_regex(r"[a-z][a-z0-9-]{0,20}", fullmatch=True), hostile_text, max_size=3
    ),
)
def test_any_value_is_written_so_the_hub_reads_it_back_exactly(
    tmp_path_factory: pytest.TempPathFactory, site_name: str, raw_hours: float, urls: dict
) -> None:
    tmp_path = tmp_path_factory.mktemp("toml")
    urls = {machine: "https://" + url for machine, url in urls.items()}
    text = render(
        "hub.toml.j2",
        hub_settings={
            "smtp_from": site_name,
            "telemetry_raw_hours": raw_hours,
            "notify_snapshot_urls": urls,
        },
    )
    loaded = load(tmp_path, text)
    assert loaded.smtp_from == site_name
    assert loaded.telemetry_raw_hours == raw_hours
    assert loaded.notify_snapshot_urls == urls
