import pytest
import torch

from ablations.errors import UserError
from ablations.models.notebook import build_model, count_parameters


def notebook_parameter_count(in_channels: int, num_classes: int) -> int:
    """The notebook's layer list, counted by hand: conv weights + biases, BN gamma/beta, linear."""

    def block(a: int, b: int, same_shape: bool) -> int:
        n = a * b * 9 + 2 * b + b * b * 9 + 2 * b
        return n if same_shape else n + a * b + b  # 1x1 projection with bias

    return (
        in_channels * 32 * 9 + 32  # block1: Conv2d(in, 32, 3) with bias
        + 2 * block(32, 32, True)
        + block(32, 64, False) + block(64, 64, True)
        + block(64, 128, False) + block(128, 128, True)
        + block(128, 256, False) + block(256, 256, True)
        + 256 * num_classes + num_classes
    )


@pytest.mark.parametrize("in_channels,num_classes", [(1, 10), (3, 10)])
def test_notebook_resnet_matches_the_notebook_network(in_channels, num_classes):
    model = build_model("notebook_resnet", in_channels=in_channels, num_classes=num_classes, image_size=96)
    assert count_parameters(model) == notebook_parameter_count(in_channels, num_classes)
    assert isinstance(model.block5[-1], torch.nn.AvgPool2d) and model.block5[-1].kernel_size == 4
    assert model.block1.padding == (0, 0) and model.block1.bias is not None
    assert model.block3[0].conv3.kernel_size == (1, 1) and model.block3[0].conv3.bias is not None
    out = model(torch.zeros(2, in_channels, 96, 96))
    assert out.shape == (2, num_classes)


def test_notebook_resnet_casts_integer_input_to_float_as_the_notebook():
    model = build_model("notebook_resnet", in_channels=1, num_classes=10, image_size=96).eval()
    x = torch.randint(0, 2, (1, 1, 96, 96))
    assert torch.equal(model(x), model(x.float()))


def test_adaptive_variant_has_the_same_parameters_and_runs_at_native_size():
    seed = build_model("notebook_resnet", in_channels=1, num_classes=10, image_size=96)
    adaptive = build_model("notebook_resnet_adaptive", in_channels=1, num_classes=10, image_size=28)
    assert count_parameters(adaptive) == count_parameters(seed)
    assert adaptive(torch.zeros(3, 1, 28, 28)).shape == (3, 10)
    assert adaptive(torch.zeros(3, 1, 32, 32)).shape == (3, 10)


@pytest.mark.parametrize("size", [52, 96, 115])
def test_notebook_resnet_accepts_its_whole_input_range(size):
    model = build_model("notebook_resnet", in_channels=1, num_classes=10, image_size=size)
    assert model(torch.zeros(1, 1, size, size)).shape == (1, 10)


def test_too_small_input_states_the_minimum_size():
    with pytest.raises(UserError, match=r"notebook_resnet needs inputs of at least 52 px, got 28 px.*--image-size 96"):
        build_model("notebook_resnet", in_channels=1, num_classes=10, image_size=28)
    # and the bound is real: one pixel below it, the notebook network cannot run
    model = build_model("notebook_resnet", in_channels=1, num_classes=10, image_size=52)
    with pytest.raises(RuntimeError):
        model(torch.zeros(1, 1, 51, 51))


def test_too_large_input_is_refused_with_the_maximum():
    with pytest.raises(UserError, match="at most 115 px"):
        build_model("notebook_resnet", in_channels=1, num_classes=10, image_size=128)


def test_unknown_model_lists_the_choices():
    with pytest.raises(UserError, match="unknown model 'resnet50'; choose one of: notebook_resnet, notebook_resnet_adaptive"):
        build_model("resnet50", in_channels=1, num_classes=10, image_size=28)
