"""A grid's pre-registered [analysis]: parsed and checked at the edge, recorded in the store's grid
spec, read back by the report, and without effect on run ids or on resuming a store written before it."""

from __future__ import annotations

from pathlib import Path

import pytest

from ablations.errors import UserError
from ablations.grid.spec import Analysis, grid_from_dict, load_grid
from ablations.report.runs import load_runs
from ablations.store import Store, store_path

RAW = {"seeds": 2, "fixed": {"dataset": "synthetic", "epochs": 1},
       "axes": {"augment": ["none", "notebook"], "weight_decay": [0.0, 1e-3], "schedule": ["constant", "step"]}}
ANALYSIS = {"endpoint": "final_test_acc", "scale": "logit",
            "margins": {"augment": 0.5, "weight_decay": 0.3, "schedule": 0.3}, "plateau_points": 0.2}


def test_an_analysis_table_is_parsed_and_recorded_in_the_spec() -> None:
    grid = grid_from_dict("study", {**RAW, "analysis": ANALYSIS})
    assert grid.analysis == Analysis("final_test_acc", "logit", ANALYSIS["margins"], 0.2, declared=True)
    assert grid.spec()["analysis"] == ANALYSIS
    plain = grid_from_dict("study", RAW)
    assert plain.analysis == Analysis() and "analysis" not in plain.spec()  # grids without one record what they did
    assert [c.run_id for c in grid.configs()] == [c.run_id for c in plain.configs()]  # run ids hash configs only


def test_every_shipped_grid_loads_with_or_without_one() -> None:
    for name in ("quick", "smoke", "notebook_cpu"):
        assert load_grid(name).analysis.scale == "logit"


@pytest.mark.parametrize("analysis, words", [
    ({"scale": "log"}, "analysis.scale 'log' is not one of: logit, points"),
    ({"endpoint": "test_loss"}, "analysis.endpoint 'test_loss' is not one of"),
    ({"margin": {"augment": 0.5}}, "unknown key analysis.margin; [analysis] has endpoint, scale, margins"),
    ({"margins": {"lr": 0.5}},
     "analysis.margins.lr is not an axis of this grid; axes: augment, schedule, weight_decay"),
    ({"margins": {"augment": -1}}, "analysis.margins.augment must be a number of accuracy points between 0 and 100"),
    ({"plateau_points": "0.2"}, "analysis.plateau_points must be a number"),
    ("logit", "[analysis] must be a table"),
])
def test_a_bad_analysis_is_one_line_naming_the_file_and_key(tmp_path: Path, analysis, words) -> None:
    path = tmp_path / "study.toml"
    path.write_text("")
    with pytest.raises(UserError) as err:
        grid_from_dict("study", {**RAW, "analysis": analysis}, source=str(path))
    assert words in str(err.value) and str(path) in str(err.value) and "\n" not in str(err.value)


def test_a_store_written_before_the_key_resumes_and_a_new_one_keeps_it(tmp_path: Path) -> None:
    plain, declared = grid_from_dict("study", RAW), grid_from_dict("study", {**RAW, "analysis": ANALYSIS})
    with Store(store_path(tmp_path / "old")) as store:
        store.enqueue(plain.configs(), grid="study", grid_spec=plain.spec())
        store.check_grid(declared.spec())  # the same grid: it resumes
        assert store.enqueue(declared.configs(), grid="study", grid_spec=declared.spec()) == 0
    with Store(store_path(tmp_path / "new")) as store:
        store.enqueue(declared.configs(), grid="study", grid_spec=declared.spec())
        assert store.grid()["analysis"] == ANALYSIS
    # the report reads what the store recorded; nothing recorded: the defaults
    from test_report_store import build_store

    build_store(tmp_path / "report", extras=False, grid_meta={**declared.spec(), "axes": declared.spec()["axes"]})
    with Store.open_existing(store_path(tmp_path / "report")) as store:
        plan = load_runs(store).plan
    assert plan.declared and plan.margins == ANALYSIS["margins"]


def test_the_analysis_may_change_until_a_run_starts_and_never_after(tmp_path: Path) -> None:
    declared = grid_from_dict("study", {**RAW, "analysis": ANALYSIS})
    wider = grid_from_dict("study", {**RAW, "analysis": {**ANALYSIS, "margins": {"augment": 1.0}}})
    with Store(store_path(tmp_path)) as store:
        store.enqueue(declared.configs(), grid="study", grid_spec=declared.spec())
        store.enqueue(wider.configs(), grid="study", grid_spec=wider.spec())  # nothing ran: still a plan
        assert store.grid()["analysis"]["margins"] == {"augment": 1.0}
        assert store.claim(declared.configs()[0].run_id, "owner") == 1  # the first run starts
        before = store.grid()
        for changed in (declared, grid_from_dict("study", RAW)):  # another margin, or none declared at all
            with pytest.raises(UserError, match="whose \\[analysis\\] was fixed when its first run started") as err:
                store.check_grid(changed.spec())
            assert '"augment": 1.0' in str(err.value) and "another --results folder" in str(err.value)
            with pytest.raises(UserError):
                store.enqueue(changed.configs(), grid="study", grid_spec=changed.spec())
        store.enqueue(wider.configs(), grid="study", grid_spec=wider.spec())  # the same analysis resumes
        assert store.grid() == before
