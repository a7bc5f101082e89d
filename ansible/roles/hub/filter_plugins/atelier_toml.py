"""`to_toml_value`: one setting's value as TOML, so hub.toml reads back what the inventory says.

JSON is not TOML: json.dumps writes astral characters as surrogate pairs and leaves DEL raw,
both of which a TOML reader refuses, and a mapping needs TOML's inline-table syntax.
"""

from __future__ import annotations

import math
from typing import Any


def _string(text: str) -> str:
    out = []
    for char in text:
        if char in ('"', "\\"):
            out.append("\\" + char)
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04X}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def to_toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, dict):
        items = ", ".join(f"{_string(str(k))} = {to_toml_value(v)}" for k, v in value.items())
        return "{ " + items + " }" if items else "{}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(to_toml_value(v) for v in value) + "]"
    raise TypeError(
        f"hub_settings: {value!r} cannot be written to hub.toml"
        " (use text, numbers, true/false, lists or mappings)"
    )


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"to_toml_value": to_toml_value}
