"""Bad configs stop the workflow at start-up with one line naming the field."""
import pytest
import yaml

from conftest import REPO, TINY_CONFIG, snakemake
from slicepick.config import check_config

SCHEMA = REPO / "config" / "schema.yaml"


def check_config_lines(cfg: dict) -> list[str]:
    try:
        check_config(cfg, yaml.safe_load(SCHEMA.read_text()))
    except ValueError as err:
        return str(err).splitlines()
    return []


def _with(tmp_path, edit):
    cfg = yaml.safe_load(TINY_CONFIG.read_text())
    cfg.pop("report")  # its budgets default from the schedule, which some cases change
    edit(cfg)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


CASES = {
    "wrong key": (lambda c: c["training"].update(learning_rate=0.1),
                  "config: training.learning_rate: unknown key"),
    "schedule does not increase": (lambda c: c.update(schedule=[0.1, 0.3, 0.2]),
                                   "config: schedule.2: 0.2 does not increase on 0.3"),
    "fraction above 1": (lambda c: c.update(schedule=[0.1, 1.5]), "config: schedule.1: 1.5 is greater than the maximum of 1"),
    "fraction zero": (lambda c: c.update(schedule=[0.0, 0.5]), "config: schedule.0: 0.0 is less than or equal to the minimum of 0"),
    "unknown method": (lambda c: c["methods"].update(oracel={}), "config: methods.oracel: unknown method 'oracel'"),
    "unknown module": (lambda c: c["methods"].update(abl={"module": "nope"}), "config: methods.abl: unknown method 'nope'"),
    "table budget not in schedule": (lambda c: c.update(report={"budgets": [0.15, 0.25]}),
                                     "config: report.budgets.1: 0.25 is not an entry of schedule"),
    "ablation budget not in schedule": (lambda c: c.update(report={"ablation_budgets": [0.2]}),
                                        "config: report.ablation_budgets.0: 0.2 is not an entry of schedule"),
    "unknown loss": (lambda c: c["training"].update(loss="focal"), "config: training.loss: 'focal' is not one of"),
    "unknown method setting": (lambda c: c["methods"]["ggs"].update(angular_treshold=0.3),
                               "config: methods.ggs.angular_treshold: unknown key for method 'ggs'"),
    "region label not declared": (lambda c: c["dataset"]["regions"].update(XX=[7]),
                                  "config: dataset.regions.XX: label values [7] are not in dataset.label_values"),
}


@pytest.mark.parametrize("case", CASES)
def test_bad_config_gives_one_clear_line(case, tmp_path):
    edit, expected = CASES[case]
    proc = snakemake(tmp_path, "-n", configfile=_with(tmp_path, edit), check=False)
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if line.startswith("config: ")]
    assert len(lines) == 1 and lines[0].startswith(expected), proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "results").exists()


def test_good_config_fills_defaults_and_plans(tmp_path):
    def drop_optional_blocks(cfg):
        cfg.pop("evaluation")
        cfg.pop("unet")  # the paper's network, not a KeyError in a rule

    proc = snakemake(tmp_path, "-n", configfile=_with(tmp_path, drop_optional_blocks))
    assert "Job stats" in proc.stdout and "train" in proc.stdout


def test_paper_configs_report_the_papers_budgets():
    """GGS paper: BraTS 0.5%, 1%, then +1% to 9%; Tables 3-4 at 3% and 7%, Tables 1-2 at 3% and 6%;
    MALC +6% a round to 60%, Table 5 at 24% and 42%."""
    brats = yaml.safe_load((REPO / "config" / "brats2019.yaml").read_text())
    malc = yaml.safe_load((REPO / "config" / "malc.yaml").read_text())
    assert brats["schedule"] == [0.005, 0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.07, 0.08, 0.09]
    assert brats["report"]["budgets"] == [0.03, 0.07]
    assert brats["report"]["ablation_budgets"] == [0.03, 0.06]
    assert malc["schedule"] == [0.06, 0.12, 0.18, 0.24, 0.30, 0.36, 0.42, 0.48, 0.54, 0.60]
    assert malc["report"]["budgets"] == [0.24, 0.42]
    for cfg in (brats, malc):
        assert check_config_lines(cfg) == []


def test_schema_defaults_are_the_papers_network_and_augmentation_on():
    from snakemake.utils import validate

    from slicepick.training import build_augmentation

    cfg = yaml.safe_load(TINY_CONFIG.read_text())
    cfg.pop("unet")
    cfg["training"]["augment"] = {}
    validate(cfg, str(SCHEMA))
    assert cfg["unet"]["features"] == [32, 64, 128, 256, 512, 32]
    assert cfg["training"]["augment"]["enabled"] is True
    # {} means "defaults on" in the library too, so the schema and a notebook user agree
    assert build_augmentation({}) is not None
    assert build_augmentation(cfg["training"]["augment"]) is not None
    assert build_augmentation({"enabled": False}) is None and build_augmentation(None) is None


def test_one_entry_schedule_reports_that_fraction_and_full_at_one():
    from slicepick.strategies import n_rounds, round_fraction

    assert n_rounds("random", [0.05]) == 1 and n_rounds("full", [0.05]) == 1
    assert round_fraction("random", [0.05], 0) == 0.05 and round_fraction("ggs", [0.05], 0) == 0.05
    assert round_fraction("full", [0.05], 0) == 1.0
    assert round_fraction("random", [0.05, 0.1], 1) == 0.1


def test_one_entry_schedule_plans_and_refuses_other_report_budgets(tmp_path):
    def one_entry(cfg):
        cfg["schedule"] = [0.3]

    proc = snakemake(tmp_path, "-n", configfile=_with(tmp_path, one_entry))
    out = proc.stdout + proc.stderr
    assert "paper_tables" in out and "run_chain" not in out and "round=1" not in out

    def budget_outside(cfg):
        cfg.update(schedule=[0.3], report={"budgets": [0.3, 1.0]})

    proc = snakemake(tmp_path, "-n", configfile=_with(tmp_path, budget_outside), check=False)
    assert proc.returncode != 0
    assert "config: report.budgets.1: 1.0 is not an entry of schedule [0.3]" in proc.stderr, proc.stderr
