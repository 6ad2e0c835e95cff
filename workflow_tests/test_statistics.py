"""Wilcoxon signed-rank paired over cases, Holm, the paper-style table and the figures."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from slicepick.reporting import paper_outputs, paper_table, plot_region_dice, plot_training_loss, read_train_logs, write_paper_table
from slicepick.statistics import holm, pairwise_wilcoxon, two_best, wilcoxon_paired

CASES = ["c1", "c2", "c3", "c4", "c5"]


def rows(method, fraction, dice_by_case, seeds=(0, 1), spread=0.02, region="WT", hd=5.0):
    """Per-seed values centred on ``dice_by_case`` (seed 0: -spread, seed 1: +spread)."""
    out = []
    for s, seed in enumerate(seeds):
        for case, d in zip(CASES, dice_by_case):
            value = d + (spread if s % 2 else -spread)
            out.append({"dataset": "t", "method": method, "seed": seed, "round": 1, "fraction": fraction,
                        "n_annotated": 10, "case": case, "region": region, "dice": value, "hd95": hd - value})
    return out


def frame(*parts):
    return pd.DataFrame([r for p in parts for r in p])


A = [0.80, 0.70, 0.60, 0.50, 0.40]
B = [0.79, 0.72, 0.57, 0.46, 0.35]  # A - B = 0.01, -0.02, 0.03, 0.04, 0.05


def test_wilcoxon_matches_hand_computation():
    # |d| ranks 1..5, negative rank 2: W = min(13, 2) = 2; exact two-sided p = 2 * 3 / 32 (subsets
    # of {1..5} summing to at most 2: {}, {1}, {2}).
    metrics = frame(rows("a", 0.1, A), rows("b", 0.1, B))
    test = wilcoxon_paired(metrics, "a", "b", fraction=0.1, region="WT")
    assert test["n_cases"] == 5
    assert test["statistic"] == 2.0
    assert test["p_value"] == pytest.approx(0.1875)
    assert test["mean_a"] == pytest.approx(np.mean(A))  # seeds averaged per case


def test_identical_methods_give_p_one():
    metrics = frame(rows("a", 0.1, A), rows("b", 0.1, A))
    assert wilcoxon_paired(metrics, "a", "b", fraction=0.1, region="WT")["p_value"] == 1.0


def test_holm_matches_hand_computation():
    # sorted 0.01, 0.03, 0.04 -> 3 * 0.01, max(0.03, 2 * 0.03), max(0.06, 1 * 0.04)
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])


def test_two_best_excludes_upper_references_and_pairwise_uses_holm():
    better = [d + 0.1 for d in A]
    metrics = frame(rows("a", 0.1, A), rows("b", 0.1, B), rows("c", 0.1, [d - 0.2 for d in A]),
                    rows("oracle", 0.1, better), rows("full", 1.0, better))
    assert two_best(metrics, 0.1, "WT") == ("a", "b")
    pairs = pairwise_wilcoxon(metrics, 0.1, "WT")
    assert len(pairs) == 3 and set(pairs.method_a) | set(pairs.method_b) == {"a", "b", "c"}
    assert pairs.p_holm.to_numpy() == pytest.approx(holm(pairs.p_value))


def test_paper_table_layout(tmp_path):
    parts = []
    for region in ("WT", "ET"):
        for fraction, shift in ((0.03, 0.0), (0.07, 0.05)):
            parts += [rows("random", fraction, [d + shift for d in B], region=region),
                      rows("dal", fraction, [d + shift for d in A], region=region),
                      rows("oracle", fraction, [d + shift + 0.1 for d in A], region=region)]
        parts.append(rows("full", 1.0, [d + 0.15 for d in A], region=region))
    metrics = frame(*parts)
    table, tests = paper_table(metrics, [0.03, 0.07], ["WT", "ET"])
    assert list(table.method) == ["random", "dal", "oracle", "full", "p (Wilcoxon)"]
    assert list(table.columns)[1:5] == ["3% Dice WT", "3% Dice ET", "3% HD95 (mm) WT", "3% HD95 (mm) ET"]
    assert len(table.columns) == 1 + 2 * 2 * 2
    seed_std = f"{0.04 / np.sqrt(2):.3f}"  # seed means differ by 2 * spread
    full = table.set_index("method").loc["full"]
    assert full["3% Dice WT"] == full["7% Dice WT"] == f"{np.mean(A) + 0.15:.3f} ± {seed_std}"
    assert table.set_index("method").loc["dal", "3% Dice WT"] == f"{np.mean(A):.3f} ± {seed_std}"
    assert "dal vs random, n=5" in table.iloc[-1]["7% Dice ET"]
    assert len(tests) == 8 and set(tests.n_cases) == {5}
    write_paper_table(table, tmp_path / "t.csv", tmp_path / "t.md", tmp_path / "t.tex")
    assert "paired over test cases" in (tmp_path / "t.md").read_text()
    assert r"$\pm$" in (tmp_path / "t.tex").read_text()


def test_paper_table_with_one_competitor_has_no_test():
    metrics = frame(rows("random", 0.1, B), rows("oracle", 0.1, A), rows("full", 1.0, A))
    table, tests = paper_table(metrics, [0.1], ["WT"])
    assert table.iloc[-1]["10% Dice WT"].startswith("–") and tests.empty


def test_figures(tmp_path):
    metrics = frame(rows("random", 0.1, B), rows("dal", 0.1, A), rows("full", 1.0, A))
    plot_region_dice(metrics, 0.1, tmp_path / "d.pdf", tmp_path / "d.png")
    paths = []
    for method in ("random", "dal"):
        for seed in (0, 1):
            for k in (0, 1):
                p = tmp_path / "runs" / method / f"seed{seed}" / f"round{k}" / "train_log.csv"
                p.parent.mkdir(parents=True)
                log = pd.DataFrame({"epoch": [1, 2], "loss": [0.9 - 0.1 * k - 0.01 * seed, 0.8 - 0.1 * k],
                                    "seconds": 1.0, "samples_per_s": 10.0, "n_samples": 10})
                if method == "dal":  # ensembles log one row per member and epoch
                    log = pd.concat([log.assign(member=0), log.assign(member=1, loss=log.loss + 0.02)])
                log.to_csv(p, index=False)
                paths.append(p)
    logs = read_train_logs(paths)
    assert set(logs.columns) >= {"method", "seed", "round", "epoch", "loss"}
    assert len(logs) == 8 + 2 * 8  # random: seeds x rounds x epochs; dal: also x members
    plot_training_loss(logs, tmp_path / "l.pdf", tmp_path / "l.png")
    assert (tmp_path / "d.png").stat().st_size > 0 and (tmp_path / "l.png").stat().st_size > 0
    with pytest.raises(ValueError, match="not a runs/"):
        read_train_logs([tmp_path / "elsewhere.csv"])


def test_statistics_does_not_import_reporting():
    """One-way dependency: reporting lays the tests out in tables, statistics knows nothing of tables."""
    import ast
    import slicepick.statistics as statistics

    tree = ast.parse(open(statistics.__file__).read())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not any("reporting" in name for name in imported if name), imported


def test_paper_outputs_with_a_one_entry_schedule(tmp_path):
    """One budget: the methods at it, full at 1.0; the tables and figures are written."""
    metrics = frame(rows("random", 0.05, B), rows("ggs", 0.05, A), rows("full", 1.0, A))
    metrics.to_csv(tmp_path / "metrics.csv", index=False)
    logs = []
    for method in ("random", "ggs", "full"):
        for seed in (0, 1):
            p = tmp_path / "runs" / method / f"seed{seed}" / "round0" / "train_log.csv"
            p.parent.mkdir(parents=True)
            pd.DataFrame({"epoch": [1, 2], "loss": [0.9, 0.8], "seconds": 1.0, "samples_per_s": 10.0,
                          "n_samples": 10}).to_csv(p, index=False)
            logs.append(p)
    names = ["table_csv", "table_md", "table_tex", "tests_csv", "pairs_csv", "pairs_md", "region_pdf",
             "region_png", "loss_pdf", "loss_png"]
    out = {name: tmp_path / name.replace("_", ".") for name in names}
    paper_outputs(tmp_path / "metrics.csv", logs, out, budgets=[0.05], figure_budget=0.05)
    table = pd.read_csv(out["table_csv"]).set_index("method")
    assert list(table.index) == ["random", "ggs", "full", "p (Wilcoxon)"]
    assert "ggs vs random" in table.loc["p (Wilcoxon)", "5% Dice WT"]
    assert all(out[name].stat().st_size > 0 for name in names)
