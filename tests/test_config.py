import dataclasses

import pytest

from ablations.config import TrainConfig
from ablations.errors import UserError


def test_defaults_follow_the_notebook():
    cfg = TrainConfig()
    assert (cfg.lr, cfg.momentum, cfg.weight_decay, cfg.batch_size, cfg.epochs) == (0.1, 0.0, 0.0, 64, 20)
    assert cfg.input_size(28) == 28
    assert dataclasses.replace(cfg, model="notebook_resnet").input_size(28) == 96


def test_config_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        TrainConfig().lr = 1.0  # type: ignore[misc]


def test_from_mapping_parses_strings_and_accepts_both_spellings():
    cfg = TrainConfig.from_mapping(
        {"weight-decay": "1e-3", "epochs": "3", "channels_last": "true", "milestones": "1,2", "gamma": "none"}
    )
    assert cfg.weight_decay == 0.001 and cfg.epochs == 3 and cfg.channels_last is True
    assert cfg.milestones == (1.0, 2.0) and cfg.gamma is None


def test_from_mapping_accepts_native_toml_values():
    cfg = TrainConfig.from_mapping({"weight_decay": 0, "lr": 1, "train_subset": 100, "milestones": [2]})
    assert cfg.weight_decay == 0.0 and isinstance(cfg.weight_decay, float)
    assert cfg.train_subset == 100 and cfg.milestones == (2.0,)


def test_run_id_is_stable_and_ignores_where_the_run_executes():
    a = TrainConfig(weight_decay=1e-3, seed=1)
    assert a.run_id == TrainConfig.from_mapping({"weight-decay": "0.001", "seed": "1"}).run_id
    assert a.run_id == dataclasses.replace(a, device="cpu", data_root="/elsewhere").run_id
    assert a.run_id != dataclasses.replace(a, seed=2).run_id
    assert a.cell_id == dataclasses.replace(a, seed=2).cell_id
    assert a.cell_id != dataclasses.replace(a, weight_decay=0.0).cell_id
    assert len(a.run_id) == 16 and int(a.run_id, 16) >= 0


@pytest.mark.parametrize(
    "values,message",
    [
        ({"dataset": "imagenet"}, "unknown dataset 'imagenet'; choose one of: cifar10, fashion_mnist, imagefolder:PATH, mnist, synthetic, torchvision:CLASS"),
        ({"schedule": "linear"}, "unknown schedule 'linear'; choose one of: constant, cosine"),
        ({"augment": "hflip+mixup"}, "unknown augmentation policy 'mixup'; choose one of:"),
        ({"augment": "none+hflip"}, "'none' cannot be combined"),
        ({"colour": "red"}, "unknown setting 'colour'; choose one of:"),
        ({"weight_decay": "-1e-3"}, "weight-decay must be 0 or more, got -0.001"),
        ({"batch_size": "0"}, "batch-size must be above 0, got 0"),
        ({"train_subset": "0"}, "train-subset must be above 0"),
        ({"epochs": "two"}, "epochs: 'two' is not a valid int"),
        ({"lr": "nan"}, "lr must be a finite number"),
        ({"nesterov": "true"}, "nesterov needs a momentum above 0"),
        ({"milestones": "25"}, r"milestones \[25.0\] must lie strictly between 0 and epochs \(20\)"),
        ({"device": "tpu"}, "unknown device 'tpu'"),
        ({"precision": "fp8"}, "unknown precision 'fp8'"),
    ],
)
def test_bad_values_are_one_line_errors_that_say_what_to_do(values, message):
    with pytest.raises(UserError, match=message) as err:
        TrainConfig.from_mapping(values)
    assert "\n" not in str(err.value)


def test_wrong_types_are_refused_even_from_python():
    with pytest.raises(UserError, match="epochs"):
        TrainConfig(epochs=2.5)  # type: ignore[arg-type]


def test_a_setting_added_later_keeps_earlier_run_ids_at_its_default():
    base = TrainConfig(train_subset=1000)
    # the id of this config before subset_per_seed existed (published stores hold it)
    assert "subset_per_seed" not in base.canonical_json()
    per_seed = TrainConfig(train_subset=1000, subset_per_seed=True)
    assert per_seed.run_id != base.run_id and per_seed.train_subset_seed != TrainConfig(
        train_subset=1000, subset_per_seed=True, seed=1).train_subset_seed
    assert base.train_subset_seed is None
