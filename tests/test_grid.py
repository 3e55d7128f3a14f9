import pytest

from ablations.errors import UserError
from ablations.grid import available_grids, grid_from_dict, load_grid, only


def test_named_grids_exist_and_validate():
    assert {"smoke", "quick", "seed", "full"} <= set(available_grids())
    for name in ("smoke", "quick", "seed", "full"):
        assert load_grid(name).configs()


def test_smoke_expands_to_axes_times_seeds_with_stable_ids():
    grid = load_grid("smoke")
    configs = grid.configs()
    assert len(configs) == 2 * 2 * 2  # augment x weight decay x seeds
    assert len({c.run_id for c in configs}) == 8 and len({c.cell_id for c in configs}) == 4
    assert [c.run_id for c in configs] == [c.run_id for c in load_grid("smoke").configs()]
    assert {c.dataset for c in configs} == {"synthetic"}


def test_seed_grid_is_the_notebook_factorial():
    configs = load_grid("seed").configs()
    assert len(configs) == 2 * 2 * 2 * 3
    c = configs[0]
    assert (c.dataset, c.model, c.image_size, c.batch_size, c.lr, c.epochs) == ("mnist", "seed_resnet", 96, 64, 0.1, 20)
    assert {x.augment for x in configs} == {"none", "seed"}
    assert {x.weight_decay for x in configs} == {0.0, 1e-3}
    assert {x.schedule for x in configs} == {"constant", "step"}
    assert all(x.milestones == (15.0,) and x.gamma == 0.1 for x in configs)


def test_quick_grid_is_big_enough_to_show_differences():
    grid = load_grid("quick")
    assert len(grid.axes["augment"]) >= 2 and len(grid.axes["weight_decay"]) >= 3
    assert len(grid.axes["schedule"]) >= 3 and len(grid.seeds) >= 2
    assert {c.dataset for c in grid.configs()} == {"mnist"}


def test_command_line_edits():
    grid = load_grid("smoke").with_fixed(["epochs=2", "weight-decay=5e-4"]).with_axes(["schedule=constant,step"])
    configs = grid.with_seeds(3).configs()
    assert len(configs) == 2 * 2 * 3  # weight decay became fixed, schedule an axis
    assert {c.epochs for c in configs} == {2} and {c.weight_decay for c in configs} == {5e-4}
    assert len(only(configs, ["augment=hflip", "seed=0"])) == 2


@pytest.mark.parametrize(
    "call,message",
    [
        (lambda: load_grid("nope"), "unknown grid 'nope'; choose one of: full, quick, seed, smoke"),
        (lambda: load_grid("smoke").with_axes(["colour=red"]), "unknown setting 'colour'"),
        (lambda: load_grid("smoke").with_axes(["augment=none,mixup"]).configs(), "unknown augmentation policy 'mixup'"),
        (lambda: load_grid("smoke").with_fixed(["epochs"]), "--set 'epochs': expected key=value"),
        (lambda: load_grid("smoke").with_fixed(["epochs=many"]), "epochs: 'many' is not a valid int"),
        (lambda: grid_from_dict("g", {"axes": {"lr": []}}), "axis 'lr' needs a non-empty list"),
        (lambda: grid_from_dict("g", {"axis": {}}), "unknown key"),
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
