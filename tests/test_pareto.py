"""The Pareto front of accuracy and size: the definition, checked on arbitrary tables."""

from __future__ import annotations

import pandas as pd
from hypothesis import given
from hypothesis import strategies as st

from search.pareto import front, front_records

rows = st.lists(
    st.tuples(st.integers(1, 50), st.integers(0, 20)), min_size=1, max_size=30
)  # (params, accuracy in twentieths: ties happen)


def _table(pairs: list[tuple[int, int]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "trial_id": [str(i) for i in range(len(pairs))],
            "params": [p for p, _ in pairs],
            "val_accuracy": [a / 20 for _, a in pairs],
        }
    )


def _dominates(a: pd.Series, b: pd.Series) -> bool:
    """``a`` is at most as large and more accurate, or smaller and at least as accurate."""
    return (a["params"] <= b["params"] and a["val_accuracy"] > b["val_accuracy"]) or (
        a["params"] < b["params"] and a["val_accuracy"] >= b["val_accuracy"]
    )


@given(rows)
def test_the_front_is_exactly_the_undominated_points(pairs: list[tuple[int, int]]) -> None:
    table = _table(pairs)
    on = front(table)
    assert list(on["params"]) == sorted(on["params"])  # smallest first
    assert on["val_accuracy"].is_monotonic_increasing and on["params"].is_unique
    points = [r for _, r in table.iterrows()]
    for _, f in on.iterrows():
        assert not any(_dominates(p, f) for p in points)
    front_keys = {(r["params"], r["val_accuracy"]) for _, r in on.iterrows()}
    for p in points:
        if (p["params"], p["val_accuracy"]) not in front_keys:
            assert any(_dominates(f, p) for _, f in on.iterrows())


def test_front_records_use_the_full_budget_and_name_the_baseline() -> None:
    trials = pd.DataFrame(
        {
            "trial_id": ["baseline", "1", "2", "3", "4"],
            "status": ["completed", "completed", "completed", "failed", "completed"],
            "epochs": [20, 20, 20, 20, 3],
            "params": [1000, 200, 500, 100, 50],
            "val_accuracy": [0.60, 0.65, 0.70, None, 0.99],  # 4 trained 3 epochs: not compared
            "dropout": [0.25, 0.1, 0.2, 0.3, 0.4],
        }
    )
    recs = front_records(trials, 20)
    assert [r["trial_id"] for r in recs] == ["1", "2"]  # the baseline is dominated by 2
    assert recs[0]["size_bytes"] == 800 and recs[1]["values"]["dropout"] == 0.2
    assert recs[0]["latency_ms_per_image"] is None  # nothing measured yet
    timed = front_records(trials, 20, latency={"2": {"batch_1": 3.0, "batch_32": 1.0}})
    assert timed[1]["latency_ms_per_image"] == {"batch_1": 3.0, "batch_32": 1.0}
