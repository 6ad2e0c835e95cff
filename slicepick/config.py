"""Config checks beyond the JSON schema, each failing with one line that names the field."""
from __future__ import annotations

from jsonschema import Draft202012Validator

from slicepick.allocation.grid import config_errors as allocation_errors
from slicepick.strategies import available, declared, module_name
from slicepick.strategies.base import SHARED_KEYS


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
    blocks = {f"methods.{m}": b for m, b in (config.get("methods") or {}).items()}
    blocks.update({f"ablations.variants.{m}": b for m, b in
                   ((config.get("ablations") or {}).get("variants") or {}).items()})
    for where, block in blocks.items():
        name = module_name(where.rsplit(".", 1)[1], block)
        if name not in known:
            lines.append(f"config: {where}: unknown method '{name}' (available: {', '.join(known)})")
            continue
        allowed = [*(declared(name, "DEFAULTS") or {}), *SHARED_KEYS]
        for key in sorted(set(block or {}) - set(allowed)):
            lines.append(f"config: {where}.{key}: unknown key for method '{name}' (allowed: {', '.join(allowed)})")
    ablations = config.get("ablations") or {}
    runnable = set(config.get("methods") or {}) | set(ablations.get("variants") or {})
    for table, methods in (ablations.get("tables") or {}).items():
        for m in sorted(set(methods) - runnable):
            lines.append(f"config: ablations.tables.{table}: '{m}' is neither a method nor a variant")
    report = config.get("report") or {}
    for i, budget in enumerate([*(report.get("budgets") or []), report.get("figure_budget")]):
        if budget is not None and not any(abs(budget - f) < 1e-9 for f in schedule):
            where = "report.figure_budget" if i == len(report.get("budgets") or []) else f"report.budgets.{i}"
            lines.append(f"config: {where}: {budget} is not an entry of schedule {schedule}")
    dataset = config.get("dataset", {})
    values = set(dataset.get("label_values", []))
    for region, labels in (dataset.get("regions") or {}).items():
        missing = sorted(set(labels) - values)
        if missing:
            lines.append(f"config: dataset.regions.{region}: label values {missing} are not in dataset.label_values")
    if config.get("allocation") is not None:
        lines += allocation_errors(config["allocation"], synthetic_train_volumes(dataset))
    return lines


def synthetic_train_volumes(dataset: dict) -> int | None:
    """Training volumes the synthetic generator will give (the split rule of prepare.split_cases);
    unknown (None) for real data, whose cases the allocation planning job counts."""
    if dataset.get("layout") != "synthetic":
        return None
    n = int((dataset.get("synthetic") or {}).get("n_cases", 16))
    n_test = min(max(1, int(round(float(dataset.get("test_fraction", 0.25)) * n))), n - 1)
    return n - n_test


def check_config(config: dict, schema: dict) -> None:
    """Raise ConfigError listing every problem, one line each."""
    lines = schema_errors(config, schema)
    if not lines and config.get("allocation") is not None:  # the grid's defaults, before Snakemake fills them in
        grid = schema["properties"]["allocation"]["properties"]
        config = {**config, "allocation": {"budgets": grid["budgets"]["default"],
                                           "n_volumes": grid["n_volumes"]["default"], **config["allocation"]}}
    if not lines:
        lines = semantic_errors(config)
    if lines:
        raise ConfigError("\n".join(lines))
