"""ablations train (or python -m ablations.train): one training run, one aligned line per epoch, then a summary.

Every TrainConfig field is a kebab-case flag (the same names the grid uses for axes), so
`--weight-decay 1e-3` here and `--axis weight-decay=0,1e-3` in the grid mean the same thing.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import typing
from functools import partial

from ablations import api
from ablations.cli.track_flags import add_track_arguments
from ablations.cli.types import checked
from ablations.config import (
    AUGMENT_OPS,
    DATASET_SOURCES,
    DATASETS,
    MODEL_FORMS,
    PRECISIONS,
    SCHEDULES,
    Status,
    TrainConfig,
    check_dataset,
    check_model,
    check_name,
    check_policy,
    field_types,
)
from ablations.errors import UserError, run_cli

DEVICES = ("auto", "cpu", "cuda", "cuda:N", "mps")
# Help text per field. A text that states its own default (a default that depends on other
# settings, or an environment variable) gets no "[default: ...]" appended.
HELP = {
    "dataset": "dataset by name, a torchvision.datasets class (torchvision:KMNIST) or a folder of class "
               "subfolders (imagefolder:PATH)",
    "data_root": "folder with the torchvision dataset files (default: $ABLATIONS_DATA_ROOT, else ./data)",
    "train_subset": "class-balanced training subset size (default: the train split less validation)",
    "val_subset": "validation images held out of the train split, class-balanced (default: a tenth, at most 5,000)",
    "test_subset": "class-balanced test subset size (default: the whole split)",
    "model": "the notebook's ResNet (52-115 px inputs), its adaptive-pooling variant (native size), or a "
             "torchvision or timm classifier by name, without downloaded weights (see --list-models)",
    "image_size": "model input size in px (default: 96 for notebook_resnet, the dataset's native size otherwise)",
    "augment": f"augmentation policy, or several joined by '+' (e.g. hflip+rotate); OP is one of: "
               f"{', '.join(AUGMENT_OPS)}",
    "lr": "SGD learning rate",
    "nesterov": "Nesterov momentum",
    "weight_decay": "L2 weight decay of SGD",
    "decay_norm_and_bias": "apply weight decay to BatchNorm weights and biases too",
    "schedule": "learning-rate schedule",
    "milestones": "comma-separated epochs where step/multistep decay (default: 75%% / 50%%,75%% of the run)",
    "gamma": "decay factor (default: 0.1 for step/multistep, 0.9 per epoch for exponential)",
    "warmup_epochs": "epochs of linear warm-up (warmup_cosine, onecycle)",
    "eval_batch_size": "batch size for validation and test",
    "seed": "every random number of the run follows from it",
    "device": "auto: cuda, then mps, then cpu; cuda:N picks a GPU",
    "precision": "auto: bf16 autocast on CUDA and on CPUs with AMX or AVX512-BF16, fp32 elsewhere",
    "channels_last": "NHWC memory format",
    "compile": "torch.compile the model",
}


def _check_device(value: str) -> None:
    if not (value in DEVICES[:-1] or (value.startswith("cuda:") and value[5:].isdigit())):
        raise UserError(f"unknown device {value!r}; choose one of: {', '.join(DEVICES)}")


class ModelChoices(tuple):
    """--model's choices as --help and shell completion list them (the built-in models, then
    torchvision:NAME and timm:NAME); argparse asks for membership only after the flag's type,
    `check_model`, has accepted the name, so every name that passed it is in."""

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str)


# Named settings: their vocabularies go into `choices` (listed by --help and shell completion).
CHOICES = {"schedule": SCHEDULES, "precision": PRECISIONS}
SPECIAL = {  # named settings that a plain list of choices cannot express: SOURCE:NAME, '+'-joined ops, cuda:N
    "dataset": {"type": checked(check_dataset), "metavar": "{" + ",".join((*DATASETS, *DATASET_SOURCES.values())) + "}"},
    "model": {"type": checked(check_model), "choices": ModelChoices(MODEL_FORMS)},
    "augment": {"type": checked(check_policy), "metavar": "OP[+OP...]"},
    "device": {"type": checked(_check_device), "metavar": "{" + ",".join(DEVICES) + "}"},
}


def _shown(default) -> str:
    if isinstance(default, bool):
        return "on" if default else "off"
    return str(default)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ablations train", description="Train one ResNet run and print its metrics per epoch.",
        epilog="Also run as `python -m ablations.train`. Every flag is also a grid key (--set, --axis).",
    )
    defaults = TrainConfig()
    for name, hint in field_types().items():
        flag = "--" + name.replace("_", "-")
        default = getattr(defaults, name)
        text = HELP.get(name, name.replace("_", " "))
        if "default" not in text and default is not None and default != ():
            text += f" [default: {_shown(default)}]"
        if hint is bool:
            parser.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=None, help=text)
        elif name in CHOICES:
            parser.add_argument(flag, dest=name, default=None, choices=CHOICES[name],
                                type=checked(partial(check_name, name.replace("_", " "), choices=CHOICES[name])),
                                help=text)
        elif name in SPECIAL:
            parser.add_argument(flag, dest=name, default=None, help=text, **SPECIAL[name])
        else:
            metavar = "LIST" if typing.get_origin(hint) is tuple else name.upper()
            parser.add_argument(flag, dest=name, default=None, metavar=metavar, help=text)
    parser.add_argument("--json", action="store_true", help="end stdout with one JSON line summarising the run")
    parser.add_argument("--list-models", nargs="?", const="*", metavar="PATTERN",
                        help="print the names --model takes, one a line, and exit; a glob such as 'resnet*' or "
                             "'timm:*' picks some")
    add_track_arguments(parser, tensorboard_dir=str(api.TRAIN_TENSORBOARD_DIR), experiment=api.TRAIN_EXPERIMENT)
    return parser


def list_models(pattern: str) -> int:
    """Print the model names matching `pattern`; a source that is not installed is said on stderr."""
    names = api.model_names(pattern, on_missing=lambda why: print(f"note: {why}", file=sys.stderr))
    if not names:
        raise UserError(f"no model name matches {pattern!r}; --list-models alone lists them all")
    print("\n".join(names), flush=True)
    return 0


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    given = {k: v for k, v in vars(args).items() if k in field_types() and v is not None}
    return TrainConfig.from_mapping(given)


def format_epoch(m: dict, epochs: int) -> str:
    width = len(str(epochs))
    held_out = (
        f"val loss {m['val_loss']:.4f} acc {100 * m['val_acc']:6.2f}%"
        if m.get("val_acc") is not None
        else "val  (skipped: loss not finite)"
    )
    if m.get("test_acc") is not None:  # the last epoch: the final model's test score
        held_out += f"  test acc {100 * m['test_acc']:6.2f}%"
    return (
        f"epoch {m['epoch']:>{width}}/{epochs}  lr {m['lr']:.4g}  "
        f"train loss {m['train_loss']:.4f} acc {100 * m['train_acc']:6.2f}%  {held_out}  "
        f"{m['seconds']:6.1f} s  {m['images_per_s']:8,.0f} img/s"
    )


def describe(cfg: TrainConfig) -> str:
    return (
        f"run {cfg.run_id}: {cfg.dataset} {cfg.model} augment={cfg.augment} weight-decay={cfg.weight_decay:g} "
        f"schedule={cfg.schedule} lr={cfg.lr:g} epochs={cfg.epochs} batch={cfg.batch_size} seed={cfg.seed}"
    )


def summary_line(cfg: TrainConfig, result) -> str:
    if result.status == Status.FAILED:
        return f"failed: {result.error}"
    if result.status == Status.DIVERGED:
        return f"diverged: loss not finite at epoch {result.diverged_epoch}, after {result.wall_s:.1f} s"
    return (
        f"done: test acc {100 * result.final_test_acc:.2f}% (val {100 * result.final_val_acc:.2f}%, best val "
        f"{100 * result.best_val_acc:.2f}% at epoch {result.best_val_epoch}), "
        f"train acc {100 * result.final_train_acc:.2f}%, {len(result.epochs)} epochs in {result.wall_s:.1f} s, "
        f"{result.train_images_per_s:,.0f} train img/s on {result.device_name}, {result.precision}"
    )


def strict_json(value):
    """NaN and infinities (a diverged loss) become null: strict JSON parsers reject them."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    return value


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.list_models is not None:
        return list_models(args.list_models)
    cfg = config_from_args(args)
    result = api.train(cfg, on_start=lambda c: print(describe(c), flush=True),
                       on_epoch=lambda m: print(format_epoch(m, cfg.epochs), flush=True), track=args.track,
                       track_uri=args.track_uri, track_experiment=args.track_experiment)
    print(summary_line(cfg, result), flush=True)
    if args.json:
        summary = {k: v for k, v in result.to_dict().items() if k not in ("epochs", "bad_input")}
        summary.update(run_id=cfg.run_id, config=cfg.to_dict(), epochs_run=len(result.epochs))
        print(json.dumps(strict_json(summary), allow_nan=False), flush=True)
    return 0 if result.status == Status.DONE else 1


def cli() -> None:
    run_cli(lambda: main(sys.argv[1:]))


if __name__ == "__main__":
    cli()
