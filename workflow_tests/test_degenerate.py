"""A model that has not learned is flagged: in metrics.csv, in the job log and in the tables."""
import numpy as np
import pandas as pd
import torch

from slicepick.evaluation import evaluate_model, is_degenerate
from slicepick.reporting import summary_table, wide_table


class Constant(torch.nn.Module):
    """Predicts one class everywhere."""

    def __init__(self, cls: int, n_classes: int = 4):
        super().__init__()
        self.cls, self.n = cls, n_classes

    def forward(self, x):
        out = torch.zeros(x.shape[0], self.n, *x.shape[2:])
        out[:, self.cls] = 1.0
        return out


def test_rule():
    assert is_degenerate(0.9, 1000) and is_degenerate(0.0, 0)
    assert not is_degenerate(0.01, 1000) and not is_degenerate(0.5, 10)


def test_all_foreground_and_all_background_models_are_degenerate(tiny_store):
    tumour = evaluate_model(Constant(2), tiny_store, "cpu")
    # every stored slice predicted tumour (blank end slices, never predicted, stay background)
    assert tumour.degenerate.all() and tumour.foreground_on_background.iloc[0] > 0.5
    empty = evaluate_model(Constant(0), tiny_store, "cpu")
    assert empty.degenerate.all() and (empty.predicted_foreground == 0).all()


def test_tables_mark_degenerate_rows():
    rows = []
    for seed, degenerate in ((0, False), (1, True)):
        for method in ("random", "ggs"):
            rows.append({"dataset": "d", "method": method, "seed": seed, "round": 0, "fraction": 0.1,
                         "n_annotated": 5, "case": "c", "region": "WT", "dice": 0.5, "hd95": 3.0,
                         "degenerate": degenerate and method == "ggs"})
    wide = wide_table(summary_table(pd.DataFrame(rows)))
    marked = dict(zip(wide["method"], wide["degenerate seeds"]))
    assert marked == {"ggs †": 1, "random": 0}
    assert np.isfinite(wide.filter(like="Dice").apply(lambda c: c.str.len()).to_numpy()).all()
