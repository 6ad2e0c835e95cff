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
    named = [(f"report.{key}.{i}", b) for key in ("budgets", "ablation_budgets")
             for i, b in enumerate(report.get(key) or [])]
    named.append(("report.figure_budget", report.get("figure_budget")))
    for where, budget in named:
        if budget is not None and not any(abs(budget - f) < 1e-9 for f in schedule):
            lines.append(f"config: {where}: {budget} is not an entry of schedule {schedule}")
    dataset = config.get("dataset", {})
    if config.get("mode") == "annotate":
        lines += annotate_errors(config, known)
    values = set(dataset.get("label_values", []))
    for region, labels in (dataset.get("regions") or {}).items():
        missing = sorted(set(labels) - values)
        if missing:
            lines.append(f"config: dataset.regions.{region}: label values {missing} are not in dataset.label_values")
    if config.get("allocation") is not None:
        lines += allocation_errors(config["allocation"], synthetic_train_volumes(dataset))
    return lines


def annotate_errors(config: dict, known: list[str]) -> list[str]:
    """Annotate mode: a method that needs no ground truth, an ignore value outside the label set."""
    lines = []
    annotate = config.get("annotate") or {}
    method = annotate.get("method", "ggs")
    block = (config.get("methods") or {}).get(method)
    name = module_name(method, block)
    usable = [m for m in known if not declared(m, "NEEDS_GROUND_TRUTH", False)]
    if name not in known:
        lines.append(f"config: annotate.method: unknown method '{method}' (available: {', '.join(usable)})")
    elif declared(name, "NEEDS_GROUND_TRUTH", False):
        lines.append(f"config: annotate.method: '{method}' needs the ground truth of unannotated slices, which "
                     f"annotate mode does not have (use one of: {', '.join(usable)})")
    dataset = config.get("dataset", {})
    ignore = annotate.get("ignore_value", 255)
    raw = set(dataset.get("label_values") or [])
    for group in (dataset.get("label_groups") or {}).values():
        raw.update(group)
    if ignore in raw:
        lines.append(f"config: annotate.ignore_value: {ignore} is a label value; the ignore value marks voxels not "
                     "annotated yet and must be outside the label set")
    if dataset.get("resize"):
        lines.append("config: dataset.resize: not supported in annotate mode (slices keep the image's grid)")
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
