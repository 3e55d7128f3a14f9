import pytest

from ablations.errors import UserError
from ablations.grid.spec import available_grids, grid_from_dict, load_grid, only, parse_assignments, parse_axes


def test_named_grids_exist_and_validate():
    assert {"smoke", "quick", "notebook", "full"} <= set(available_grids())
    for name in ("smoke", "quick", "notebook", "full"):
        assert load_grid(name).configs()


def test_smoke_expands_to_axes_times_seeds_with_stable_ids():
    grid = load_grid("smoke")
    configs = grid.configs()
    assert len(configs) == 2 * 2 * 2  # augment x weight decay x seeds
    assert len({c.run_id for c in configs}) == 8 and len({c.cell_id for c in configs}) == 4
    assert [c.run_id for c in configs] == [c.run_id for c in load_grid("smoke").configs()]
    assert {c.dataset for c in configs} == {"synthetic"}


def test_runs_come_seed_major_so_any_prefix_is_a_balanced_design():
    grid = load_grid("smoke").with_seeds(3)
    configs = grid.configs()
    cells = len({c.cell_id for c in configs})
    assert [c.seed for c in configs] == [s for s in (0, 1, 2) for _ in range(cells)]
    for prefix in range(cells, len(configs) + 1, cells):  # every whole round holds each cell once per seed
        head = configs[:prefix]
        assert {c.cell_id for c in head} == {c.cell_id for c in configs}
        assert len({(c.cell_id, c.seed) for c in head}) == prefix


def test_a_folder_named_like_a_grid_is_never_read_as_one(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "quick").mkdir()
    (tmp_path / "smoke").mkdir()
    assert load_grid("quick").name == "quick" and load_grid("smoke").configs()
    with pytest.raises(UserError, match=r"grid file quick does not exist \(it is a folder\)"):
        load_grid("quick/")


def test_the_cpu_study_is_the_notebook_factorial_at_native_size_with_five_seeds():
    grid = load_grid("notebook_cpu")
    configs = grid.configs()
    assert grid.axes == {"augment": ["none", "notebook"], "weight_decay": [0.0, 1e-3], "schedule": ["constant", "step"]}
    assert len(grid.seeds) >= 5 and len(configs) == 8 * len(grid.seeds)
    c = configs[0]
    assert (c.model, c.image_size, c.batch_size, c.lr, c.momentum) == ("notebook_resnet_adaptive", None, 64, 0.1, 0.0)
    assert all(x.milestones == (0.75 * x.epochs,) and x.gamma == 0.1 for x in configs)  # the step at 75%


def test_the_notebook_grid_pins_fp32_as_the_notebook():
    assert {c.precision for c in load_grid("notebook").configs()} == {"fp32"}


def test_seed_grid_is_the_notebook_factorial():
    configs = load_grid("notebook").configs()
    assert len(configs) == 2 * 2 * 2 * 3
    c = configs[0]
    assert (c.dataset, c.model, c.image_size, c.batch_size, c.lr, c.epochs) == ("mnist", "notebook_resnet", 96, 64, 0.1, 20)
    assert {x.augment for x in configs} == {"none", "notebook"}
    assert {x.weight_decay for x in configs} == {0.0, 1e-3}
    assert {x.schedule for x in configs} == {"constant", "step"}
    assert all(x.milestones == (15.0,) and x.gamma == 0.1 for x in configs)


def test_quick_grid_is_big_enough_to_show_differences():
    grid = load_grid("quick")
    assert len(grid.axes["augment"]) >= 2 and len(grid.axes["weight_decay"]) >= 3
    assert len(grid.axes["schedule"]) >= 3 and len(grid.seeds) >= 2
    assert {c.dataset for c in grid.configs()} == {"mnist"}


def test_command_line_edits():
    grid = load_grid("smoke").with_fixed_values(parse_assignments(["epochs=2", "weight-decay=5e-4"], "--set")).with_axis_values(
        parse_axes(["schedule=constant,step"]))
    configs = grid.with_seeds(3).configs()
    assert len(configs) == 2 * 2 * 3  # weight decay became fixed, schedule an axis
    assert {c.epochs for c in configs} == {2} and {c.weight_decay for c in configs} == {5e-4}
    assert len(only(configs, parse_assignments(["augment=hflip", "seed=0"], "--only"))) == 2


@pytest.mark.parametrize(
    "call,message",
    [
        (lambda: load_grid("nope"), f"unknown grid 'nope'; choose one of: {', '.join(available_grids())}"),
        (lambda: load_grid("seed"), "unknown grid 'seed'"),
        (lambda: grid_from_dict("g", {"seeds": "two"}), "seeds: expected a count such as 5 or a list"),
        (lambda: grid_from_dict("g", {"seeds": 2.5}), "seeds: expected a count such as 5 or a list"),
        (lambda: grid_from_dict("g", {"seeds": 0}), "seeds must be 1 or more, got 0"),
        (lambda: grid_from_dict("g", {"seeds": [0, 0]}), "seed 0 is listed twice"),
        (lambda: grid_from_dict("g", {"seeds": [0, -1]}), "seeds: expected a count"),
        (lambda: grid_from_dict("g", {"fixed": 3}), r"\[fixed\] must be a table of settings"),
        (lambda: load_grid("smoke").with_seeds(0), "--seeds must be 1 or more, got 0"),
        (lambda: load_grid("smoke").with_axis_values(parse_axes(["colour=red"])), "unknown setting 'colour'"),
        (lambda: load_grid("smoke").with_axis_values(parse_axes(["augment=none,mixup"])).configs(), "unknown augmentation policy 'mixup'"),
        (lambda: load_grid("smoke").with_fixed_values(parse_assignments(["epochs"], "--set")), "--set 'epochs': expected key=value"),
        (lambda: load_grid("smoke").with_fixed_values(parse_assignments(["epochs=many"], "--set")), "epochs: 'many' is not a valid int"),
        (lambda: grid_from_dict("g", {"axes": {"lr": []}}), "axis 'lr' needs a non-empty list"),
        (lambda: grid_from_dict("g", {"axis": {}}), "unknown key"),
        (lambda: load_grid("smoke").with_axis_values(parse_axes(["augment=none,none"])), "axis 'augment' lists 'none' twice"),
        (lambda: load_grid("smoke").with_axis_values(parse_axes(["weight-decay=0,0.0"])), "axis 'weight_decay' lists '0.0' twice"),
        (lambda: grid_from_dict("g", {"axes": {"augment": ["none", "hflip", "none"]}}, source="g.toml"),
         "g.toml: axis 'augment' lists 'none' twice"),
        (lambda: grid_from_dict("g", {"axes": {"epochs": [1, 2]}, "fixed": {"epochs": 3}}, source="g.toml"),
         r"g.toml: 'epochs' is in both \[axes\] and \[fixed\]"),
        (lambda: grid_from_dict("g", {"fixed": {"weight-decay": 0, "weight_decay": 1e-3}}, source="g.toml"),
         r"g.toml: 'weight_decay' is given twice in \[fixed\]"),
    ],
)
def test_bad_grids_are_one_line_errors(call, message):
    with pytest.raises(UserError, match=message) as err:
        call()
    assert "\n" not in str(err.value)


def test_malformed_toml_names_the_file(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text("[axes\naugment = ['none']\n")
    with pytest.raises(UserError, match=r"broken.toml is not valid TOML"):
        load_grid(str(path))


def test_a_grid_file_that_is_not_utf8_names_the_file_and_the_line(tmp_path):
    path = tmp_path / "latin1.toml"
    path.write_bytes('description = "a grid"\n[axes]\naugment = ["none"] # r\u00e9sum\u00e9\n'.encode("latin-1"))
    with pytest.raises(UserError, match=r"latin1.toml is not UTF-8 text \(byte 0xe9 on line 3\); save it as UTF-8"):
        load_grid(str(path))
