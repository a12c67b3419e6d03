"""The JSON Schema of job files, from the declarations: editors (Taplo, VS Code's Even Better TOML)
complete keys, show each one's help and default, and flag a value of the wrong type or range."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from prunepilot.settings.declare import Setting

__all__ = ["job_file_schema"]

_TYPES = {"str": "string", "int": "integer", "float": "number", "bool": "boolean"}
# Draft 7: what editors (Taplo, VS Code) read most widely; every keyword used here means the same in 2020-12.
_DIALECT = "http://json-schema.org/draft-07/schema#"


def _property(declared: Setting) -> dict[str, Any]:
    if declared.kind.endswith("_list"):
        found: dict[str, Any] = {"type": "array", "items": {"type": _TYPES[declared.kind[: -len("_list")]]}}
    else:
        found = {"type": _TYPES[declared.kind]}
    if declared.check is not None:
        rule = declared.check.schema()
        if "items" in rule:
            rule = {**rule, "items": {**found.get("items", {}), **rule["items"]}}
        found.update(rule)
    default = f" (default: {declared.default_text})" if declared.default_text else ""
    found["description"] = declared.help + default
    if declared.default is not None:
        found["default"] = list(declared.default) if isinstance(declared.default, tuple) else declared.default
    return found


def job_file_schema(settings: Sequence[Setting], sections: Mapping[str, str]) -> dict[str, Any]:
    """The schema of a job file holding ``settings`` (those with a key), one table per section
    (``sections``: section -> title, in order); unknown keys and sections are refused, as the loader
    refuses them."""
    keyed = [s for s in settings if s.key]
    properties: dict[str, Any] = {}
    for section, title in sections.items():
        members = {s.key.split(".", 1)[-1]: _property(s) for s in keyed if s.section == section}
        if not members:
            continue
        if section == "":
            properties.update(members)
        else:
            properties[section] = {"type": "object", "description": title, "properties": members,
                                   "additionalProperties": False}  # fmt: skip
    return {
        "$schema": _DIALECT,
        "title": "prunepilot job file",
        "description": "A prunepilot search job (prunepilot search JOB.toml); flags given override it.",
        "type": "object",
        "properties": properties,
        "additionalProperties": False,
    }
