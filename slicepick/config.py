"""Config checks beyond the JSON schema, each failing with one line that names the field."""
from __future__ import annotations

from jsonschema import Draft202012Validator

from slicepick.strategies import available, module_name


class ConfigError(ValueError):
    pass


def _field(path) -> str:
    return ".".join(str(p) for p in path) or "(top level)"


def schema_errors(config: dict, schema: dict) -> list[str]:
    """One line per schema violation, naming the field."""
    lines = []
    for err in sorted(Draft202012Validator(schema).iter_errors(config), key=lambda e: list(map(str, e.path))):
        if err.validator == "additionalProperties":
            extra = sorted(set(err.instance) - set(err.schema.get("properties", {})))
            lines.append(f"config: {_field(list(err.path) + extra[:1])}: unknown key (allowed: "
                         f"{', '.join(sorted(err.schema.get('properties', {})))})")
        else:
            lines.append(f"config: {_field(err.path)}: {err.message}")
    return lines


def semantic_errors(config: dict) -> list[str]:
    lines = []
    schedule = config.get("schedule", [])
    for i in range(1, len(schedule)):
        if schedule[i] <= schedule[i - 1]:
            lines.append(f"config: schedule.{i}: {schedule[i]} does not increase on {schedule[i - 1]} "
                         "(cumulative fractions must strictly increase)")
    known = available()
    for method, block in (config.get("methods") or {}).items():
        name = module_name(method, block)
        if name not in known:
            lines.append(f"config: methods.{method}: unknown method '{name}' (available: {', '.join(known)})")
    dataset = config.get("dataset", {})
    values = set(dataset.get("label_values", []))
    for region, labels in (dataset.get("regions") or {}).items():
        missing = sorted(set(labels) - values)
        if missing:
            lines.append(f"config: dataset.regions.{region}: label values {missing} are not in dataset.label_values")
    return lines


def check_config(config: dict, schema: dict) -> None:
    """Raise ConfigError listing every problem, one line each."""
    lines = schema_errors(config, schema)
    if not lines:
        lines = semantic_errors(config)
    if lines:
        raise ConfigError("\n".join(lines))
