"""The batched augmentation path against its per-sample PIL reference, and its randomness.

Differences are measured on the normalized [-1, 1] scale, where one uint8 step is
STEP = 2/255 ~ 0.0078. PIL stores every intermediate image as uint8 and truncates or rounds
each result (resize, rotate, blend), so a single PIL operation is up to one STEP off the
batched float path even when both compute the same interpolation.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision import transforms as T
from torchvision.transforms import functional as TF

from ablations.augment.ops import OPS
from ablations.augment.policy import GEOMETRIC_OPS, PHOTOMETRIC_OPS, ROTATE_DEGREES, build_policy
from ablations.config import AUGMENT_OPS
from ablations.errors import UserError

STEP = 2 / 255
N_STATS = 4096  # samples for the distribution checks: binomial sd of a flip rate is 0.8%
# chi-square quantiles at p = 1e-4 (scipy.stats.chi2.ppf(1 - 1e-4, df)): a fair draw fails
# one of these checks about once in 10,000 runs; the seeds are fixed, so never in CI
CHI2_P1E4 = {8: 31.83, 9: 33.72, 24: 58.61}


# ---- images ------------------------------------------------------------------------------
def smooth_images(n: int, channels: int, size: int, seed: int = 0) -> torch.Tensor:
    """Random uint8 images with structure up to the border: noise at 1/4 size, upsampled."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, channels, size // 4, size // 4, generator=g)
    x = F.interpolate(low, size=(size, size), mode="bicubic", align_corners=False).clamp(0, 1)
    return (x * 255).round().to(torch.uint8)


def digit_images(n: int, size: int = 28, seed: int = 0) -> torch.Tensor:
    """MNIST-like: a bright stroke (an elliptic ring) on black, inside the central 20x20 px."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size) + 0.5, torch.arange(size) + 0.5, indexing="ij")
    centre = size / 2 + (torch.rand(n, 2, generator=g) - 0.5) * 3  # px
    radii = 4 + torch.rand(n, 2, generator=g) * 3  # px
    r = (((xx - centre[:, 0, None, None]) / radii[:, 0, None, None]) ** 2
         + ((yy - centre[:, 1, None, None]) / radii[:, 1, None, None]) ** 2).sqrt()
    stroke = torch.exp(-(((r - 1) * 4) ** 2))  # about 2 px wide
    return (stroke * 255).round().to(torch.uint8).unsqueeze(1)


def to_pil(image: torch.Tensor) -> Image.Image:
    array = image.permute(1, 2, 0).numpy()
    return Image.fromarray(array[..., 0] if array.shape[2] == 1 else array)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def batched_and_reference(policy, images: torch.Tensor, seed: int = 1):
    params = policy.sample(len(images), gen(seed), "cpu")
    batched = policy.apply(images, params)
    reference = torch.stack([policy.reference_apply(to_pil(img), params, i) for i, img in enumerate(images)])
    return batched, reference


# ---- batched path == PIL reference with the same parameters --------------------------------
# (policy, channels, native px, output px, max |diff|, mean |diff|)
# 1e-5: integer moves of uint8 pixels (flips, padded crops) are exact; grid_sample at pixel
#   centres leaves only float32 rounding (measured 1.4e-6).
# 1.5 STEP max / 0.6 STEP mean: one interpolation or blend, computed alike, which PIL
#   rounds or truncates to uint8 (<= 1 STEP); contrast adds PIL's integer-rounded mean.
ONE_PIL_OP = (1.5 * STEP, 0.6 * STEP)
SAME_CASES = [
    ("none", 1, 28, 28, 1e-5, 1e-5),
    ("hflip", 1, 28, 28, 1e-5, 1e-5),
    ("vflip", 3, 32, 32, 1e-5, 1e-5),
    ("crop", 1, 28, 28, 1e-5, 1e-5),
    ("crop", 3, 32, 32, 1e-5, 1e-5),
    ("hflip+vflip+crop", 3, 32, 32, 1e-5, 1e-5),
    ("none", 1, 28, 96, *ONE_PIL_OP),
    ("none", 1, 28, 14, *ONE_PIL_OP),  # shrinking: antialiased like PIL
    ("notebook", 1, 28, 96, *ONE_PIL_OP),  # the notebook: Resize(120), flip, RandomCrop(96)
    ("notebook", 1, 28, 28, *ONE_PIL_OP),
    ("notebook", 3, 32, 32, *ONE_PIL_OP),
    ("center_crop", 1, 28, 28, *ONE_PIL_OP),
    ("center_crop", 1, 28, 96, *ONE_PIL_OP),
    ("rotate", 1, 28, 28, *ONE_PIL_OP),
    ("rotate", 3, 32, 32, *ONE_PIL_OP),
    ("brightness", 1, 28, 28, *ONE_PIL_OP),
    ("brightness", 3, 32, 32, *ONE_PIL_OP),
    ("contrast", 1, 28, 28, *ONE_PIL_OP),
    ("contrast", 3, 32, 32, *ONE_PIL_OP),
    ("hflip+rotate", 1, 28, 28, *ONE_PIL_OP),
    ("rotate+crop", 1, 28, 28, *ONE_PIL_OP),  # the crop's padding stays zero, not re-rotated source
    ("crop+hflip+brightness", 3, 32, 32, *ONE_PIL_OP),
]


@pytest.mark.parametrize(("name", "channels", "native", "size", "max_tol", "mean_tol"), SAME_CASES)
def test_batched_matches_reference(name, channels, native, size, max_tol, mean_tol):
    policy = build_policy(name, native_size=native, out_size=size, channels=channels)
    batched, reference = batched_and_reference(policy, smooth_images(8, channels, native))
    assert batched.shape == reference.shape == (8, channels, size, size)
    diff = (batched - reference).abs()
    assert diff.max() <= max_tol and diff.mean() <= mean_tol, (diff.max().item(), diff.mean().item())


# Chains the reference interpolates twice (rotate after a resize or another rotate, a resize
# after a rotation) while the batched path samples the source once; and zero fill that a later
# PIL interpolation blends into the image edge, which the batched path approximates as the
# clamped edge sample times the blended coverage. Re-interpolating blurs by up to a source px,
# so the bound scales with how fast the test images change (features of 4+ px): measured mean
# <= 0.014, at most 3.4% of pixels off by more than 0.05, max 0.25.
TWO_INTERPOLATIONS = [
    ("notebook+rotate+contrast", 1, 28, 96),
    ("rotate", 1, 28, 96),
    ("rotate+rotate", 1, 28, 28),
    ("crop", 1, 28, 32),
    ("crop+rotate", 1, 28, 40),
    ("crop+rotate+vflip", 3, 32, 32),
    ("crop+notebook+hue", 3, 32, 64),  # hue also carries PIL's 8-bit HSV rounding
]


@pytest.mark.parametrize(("name", "channels", "native", "size"), TWO_INTERPOLATIONS)
def test_chains_the_reference_interpolates_twice_stay_close(name, channels, native, size):
    policy = build_policy(name, native_size=native, out_size=size, channels=channels)
    batched, reference = batched_and_reference(policy, smooth_images(16, channels, native))
    diff = (batched - reference).abs()
    assert diff.mean() <= 2.5 * STEP and (diff > 0.05).float().mean() <= 0.05 and diff.max() <= 0.35


@pytest.mark.parametrize(("name", "channels", "native", "size"), TWO_INTERPOLATIONS)
def test_zero_fill_and_its_blended_edge_match_pil(name, channels, native, size):
    # On a white image each output pixel is the share of image versus zero fill, which is all
    # that the composed warp has to get right at the fill's edge: one uint8 rounding per PIL pass.
    policy = build_policy(name, native_size=native, out_size=size, channels=channels)
    white = torch.full((8, channels, native, native), 255, dtype=torch.uint8)
    batched, reference = batched_and_reference(policy, white)
    assert (batched - reference).abs().max() <= 2 * STEP
    assert (batched < 0).any()  # some zero fill is in view


def test_hue_matches_reference_within_pil_hsv_quantization():
    # PIL converts to 8-bit HSV and shifts hue by int(255 * shift) 1/256ths of the circle, so
    # a hue lands up to ~2/256 of the circle off (measured: mean 0.006, max 0.13, 1.7% > 0.05).
    policy = build_policy("hue", native_size=32, out_size=32, channels=3)
    batched, reference = batched_and_reference(policy, smooth_images(8, 3, 32))
    diff = (batched - reference).abs()
    assert diff.mean() <= 1.5 * STEP and (diff > 0.05).float().mean() <= 0.03 and diff.max() <= 0.2


@pytest.mark.parametrize("name", ["brightness", "contrast", "hue"])
def test_photometric_matches_torchvision_tensor_ops(name):
    # Same float formulas as torchvision's tensor ColorJitter, with no uint8 rounding: tight.
    policy = build_policy(name, native_size=32, out_size=32, channels=3)
    images = smooth_images(16, 3, 32)
    params = policy.sample(16, gen(2), "cpu")
    (key, values), = params.items()
    op = {"brightness": TF.adjust_brightness, "contrast": TF.adjust_contrast, "hue": TF.adjust_hue}[name]
    expected = torch.stack([op(img.float() / 255, v.item()) for img, v in zip(images, values, strict=True)])
    assert torch.allclose(policy.apply(images, params), (expected - 0.5) / 0.5, atol=1e-4)


# ---- shapes, eval side, reference pipelines -----------------------------------------------
def test_seed_at_96_from_28_shape_and_eval_side():
    policy = build_policy("notebook", native_size=28, out_size=96, channels=1)
    images = digit_images(6)
    assert policy(images, gen(0)).shape == (6, 1, 96, 96)
    notebook_test = T.Compose([T.Resize(96), T.ToTensor(), T.Normalize((0.5,), (0.5,))])
    expected = torch.stack([notebook_test(to_pil(img)) for img in images])
    assert policy.eval_transform(images).shape == (6, 1, 96, 96)
    assert (policy.eval_transform(images) - expected).abs().max() <= 1.5 * STEP  # PIL rounds to uint8
    assert torch.equal(torch.stack([policy.reference_eval()(to_pil(img)) for img in images]), expected)


def test_eval_side_at_native_size_is_just_normalization():
    policy = build_policy("notebook", native_size=32, out_size=32, channels=3)
    images = smooth_images(4, 3, 32)
    assert torch.allclose(policy.eval_transform(images), images.float() / 127.5 - 1, atol=1e-6)


@pytest.mark.parametrize(("name", "channels", "native", "size"),
                         [("notebook", 1, 28, 96), ("crop+hflip+rotate", 3, 32, 32), ("hue+contrast", 3, 32, 40),
                          ("center_crop+brightness", 1, 28, 28)])
def test_reference_train_runs_on_a_pil_image(name, channels, native, size):
    policy = build_policy(name, native_size=native, out_size=size, channels=channels)
    torch.manual_seed(0)  # torchvision's random transforms draw from the global generator
    out = policy.reference_train()(to_pil(smooth_images(1, channels, native)[0]))
    assert out.shape == (channels, size, size) and out.dtype == torch.float32
    assert out.min() >= -1 and out.max() <= 1


@pytest.mark.parametrize("name", AUGMENT_OPS)
def test_every_op_builds_and_runs(name):
    for channels, native, size in ((1, 28, 28), (1, 28, 96), (3, 32, 32), (3, 32, 24)):
        if name == "hue" and channels == 1:
            continue
        policy = build_policy(name, native_size=native, out_size=size, channels=channels)
        out = policy(smooth_images(3, channels, native), gen(0))
        assert out.shape == (3, channels, size, size) and out.dtype == torch.float32
        assert torch.isfinite(out).all() and out.min() >= -1 and out.max() <= 1
        assert policy.ops == (name,) and policy.name == name


def test_registry_implements_exactly_the_config_names():
    # config validates names without torch; the registry is what implements them
    assert tuple(OPS) == AUGMENT_OPS


def test_op_families_partition_the_ops_at_every_size():
    assert set(GEOMETRIC_OPS) | set(PHOTOMETRIC_OPS) | {"none"} == set(AUGMENT_OPS)
    assert not set(GEOMETRIC_OPS) & set(PHOTOMETRIC_OPS)
    assert "notebook" in GEOMETRIC_OPS and "hue" in PHOTOMETRIC_OPS
    for canvas, out in ((28, 96), (32, 24), (96, 28)):  # the families were derived at 32 px
        for name in GEOMETRIC_OPS:
            assert any(step.geometric for step in OPS[name](canvas, out)), name
        for name in PHOTOMETRIC_OPS:
            assert not any(step.geometric for step in OPS[name](canvas, out)), name


def test_identity_chain_skips_grid_sample(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("grid_sample called on an identity chain")

    monkeypatch.setattr(F, "grid_sample", refuse)
    images = smooth_images(4, 3, 32)
    for name in ("none", "brightness+contrast+hue"):
        build_policy(name, native_size=32, out_size=32, channels=3)(images, gen(0))
    out = build_policy("none", native_size=32, out_size=32, channels=3)(images, gen(0))
    assert torch.allclose(out, images.float() / 127.5 - 1, atol=1e-6)


# ---- errors ------------------------------------------------------------------------------
def test_hue_on_grayscale_says_it_needs_rgb():
    with pytest.raises(UserError, match=r"hue.*RGB.*cifar10"):
        build_policy("hflip+hue", native_size=28, out_size=28, channels=1)


def test_unknown_op_lists_the_choices():
    with pytest.raises(UserError) as err:
        build_policy("hflip+blur", native_size=28, out_size=28, channels=1)
    message = str(err.value)
    assert "augmentation policy 'blur'" in message
    assert all(name in message for name in AUGMENT_OPS)


def test_none_does_not_combine():
    with pytest.raises(UserError, match="none"):
        build_policy("none+hflip", native_size=28, out_size=28, channels=1)


def test_wrong_image_shape_is_refused():
    policy = build_policy("hflip", native_size=28, out_size=28, channels=1)
    with pytest.raises(ValueError, match="uint8"):
        policy(smooth_images(2, 1, 28).float(), gen(0))
    with pytest.raises(ValueError, match=r"\(N, 1, 28, 28\)"):
        policy(smooth_images(2, 3, 32), gen(0))


# ---- randomness is per sample --------------------------------------------------------------
def test_parameter_keys_shapes_and_device():
    policy = build_policy("notebook+rotate+brightness", native_size=28, out_size=96, channels=1)
    params = policy.sample(5, gen(0), "cpu")
    assert set(params) == {"1.hflip.flip", "2.crop.top", "2.crop.left", "3.rotate.angle", "4.brightness.factor"}
    assert all(v.shape == (5,) and v.device.type == "cpu" for v in params.values())


def test_flips_are_independent_fair_coins_applied_per_sample():
    policy = build_policy("hflip", native_size=28, out_size=28, channels=1)
    ramp = (torch.arange(28) * 9).to(torch.uint8).expand(1, 1, 28, 28)  # left-right asymmetric
    images = ramp.expand(N_STATS, 1, 28, 28).contiguous()
    params = policy.sample(N_STATS, gen(0), "cpu")
    flips = params["0.hflip.flip"]
    assert abs(flips.sum().item() - N_STATS / 2) <= 4 * math.sqrt(N_STATS / 4)  # 4 binomial sd
    out = policy.apply(images, params)
    mirrored = policy.eval_transform(ramp.flip(-1))
    assert torch.equal(torch.isclose(out, mirrored, atol=1e-5).flatten(1).all(1), flips)


@pytest.mark.parametrize(("name", "native", "size", "key", "offsets"),
                         [("crop", 28, 28, "0.crop", 9), ("notebook", 28, 96, "2.crop", 25)])
def test_crop_offsets_cover_the_valid_range_uniformly(name, native, size, key, offsets):
    policy = build_policy(name, native_size=native, out_size=size, channels=1)
    params = policy.sample(N_STATS, gen(3), "cpu")
    top, left = params[f"{key}.top"], params[f"{key}.left"]
    for values in (top, left):
        assert values.min() == 0 and values.max() == offsets - 1
        counts = torch.bincount(values, minlength=offsets).float()
        expected = N_STATS / offsets
        assert ((counts - expected) ** 2 / expected).sum() <= CHI2_P1E4[offsets - 1]
    correlation = torch.corrcoef(torch.stack([top.float(), left.float()]))[0, 1]
    assert abs(correlation) <= 4 / math.sqrt(N_STATS)  # x and y drawn independently


def test_rotation_angles_are_uniform_within_the_limit():
    policy = build_policy("rotate", native_size=28, out_size=28, channels=1)
    angles = policy.sample(N_STATS, gen(4), "cpu")["0.rotate.angle"]
    assert angles.min() >= -ROTATE_DEGREES and angles.max() <= ROTATE_DEGREES
    sd = 2 * ROTATE_DEGREES / math.sqrt(12)  # of U[-15, 15]: 8.66 degrees
    assert abs(angles.std().item() - sd) <= 0.03 * sd  # the sample sd's own sd is ~0.7%
    assert abs(angles.mean().item()) <= 4 * sd / math.sqrt(N_STATS)
    counts = torch.histc(angles, bins=10, min=-ROTATE_DEGREES, max=ROTATE_DEGREES)
    assert ((counts - N_STATS / 10) ** 2 / (N_STATS / 10)).sum() <= CHI2_P1E4[9]


def test_photometric_factors_span_their_ranges():
    policy = build_policy("brightness+hue", native_size=32, out_size=32, channels=3)
    params = policy.sample(N_STATS, gen(5), "cpu")
    for values, low in ((params["0.brightness.factor"], 0.5), (params["1.hue.shift"], -0.5)):
        assert values.min() >= low and values.max() <= low + 1
        assert abs(values.std().item() - 1 / math.sqrt(12)) <= 0.03 / math.sqrt(12)


def test_samples_in_one_batch_differ():
    images = digit_images(1).expand(64, 1, 28, 28).contiguous()
    out = build_policy("rotate+brightness", native_size=28, out_size=28, channels=1)(images, gen(6))
    assert len(torch.unique(out.flatten(1), dim=0)) == 64
    seed = build_policy("notebook", native_size=28, out_size=28, channels=1)(images, gen(6))
    assert len(torch.unique(seed.flatten(1), dim=0)) >= 32  # 128 (flip, top, left) choices


def test_device_path_matches_cpu(device):
    # ABLATIONS_TEST_DEVICE=cuda runs this on the GPU: parameters drawn there, images there.
    policy = build_policy("notebook+rotate+contrast", native_size=28, out_size=96, channels=1)
    images = digit_images(8)
    params = policy.sample(8, torch.Generator(device=device).manual_seed(9), device)
    assert all(v.device.type == device.type for v in params.values())
    on_device = policy.apply(images.to(device), params).cpu()
    on_cpu = policy.apply(images, {key: value.cpu() for key, value in params.items()})
    assert torch.allclose(on_device, on_cpu, atol=1e-4)
    again = policy(images.to(device), torch.Generator(device=device).manual_seed(9))
    assert torch.equal(again, policy(images.to(device), torch.Generator(device=device).manual_seed(9)))


def test_same_generator_seed_same_output():
    policy = build_policy("notebook+rotate+contrast", native_size=28, out_size=96, channels=1)
    images = digit_images(16)
    first, again = policy(images, gen(7)), policy(images, gen(7))
    assert torch.equal(first, again)
    assert not torch.equal(first, policy(images, gen(8)))
