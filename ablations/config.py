"""One frozen, typed TrainConfig per run, built and validated at the edge.

The single-run CLI (`ablations.train`) and the grid (`ablations.grid`) both build configs
through `TrainConfig.from_mapping`, so a flag, a `--set key=value` and a TOML key all
mean the same thing. This module does not import torch: the store and the report use it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from ablations.errors import UserError, unknown_name


class Status(StrEnum):
    """A run's state in the store; the one vocabulary the store, driver, trainer and report use."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    DIVERGED = "diverged"


STATUSES = tuple(s.value for s in Status)
FINISHED = (Status.DONE, Status.DIVERGED)  # never trained again
FINAL_STATUSES = (Status.DONE, Status.DIVERGED, Status.FAILED)  # what a run can end as

# The names each part implements; tests check the implementations cover exactly these.
DATASETS = ("mnist", "fashion_mnist", "cifar10", "synthetic")
# Datasets named by where they come from: "torchvision:KMNIST" (a torchvision.datasets class) and
# "imagefolder:PATH" (a folder of class subfolders). The name is checked here, the data at load time.
DATASET_SOURCES = {"torchvision": "torchvision:CLASS", "imagefolder": "imagefolder:PATH"}
MODELS = ("notebook_resnet", "notebook_resnet_adaptive")  # built in: ablations.models
# Any other model is named SOURCE:NAME ("torchvision:resnet18", "timm:convnext_atto") and built from
# that library without downloaded weights. Only the form is checked here (no torch); whether the
# library has the name is checked when the model is built, which a grid does before storing anything.
MODEL_SOURCES = ("torchvision", "timm")
MODEL_FORMS = (*MODELS, *(f"{source}:NAME" for source in MODEL_SOURCES))
LIST_MODELS = "ablations train --list-models"
# The augmentation ops by name, in the order help lists them; each is built from its steps in
# ablations.augment.ops, which checks at import that it implements exactly these.
AUGMENT_OPS = ("none", "notebook", "crop", "center_crop", "hflip", "vflip", "rotate", "brightness", "contrast", "hue")
SCHEDULES = ("constant", "step", "multistep", "cosine", "warmup_cosine", "onecycle", "exponential")
PRECISIONS = ("auto", "fp32", "bf16")

# The notebook upsamples MNIST to 96 px: its ResNet's AvgPool2d(4) needs inputs of 52-115 px.
NOTEBOOK_INPUT_SIZE = 96
# Names this suite used before; an old name gets a one-line error that gives the new one.
RENAMED = {"seed": "notebook", "seed_resnet": "notebook_resnet", "seed_resnet_adaptive": "notebook_resnet_adaptive"}

# Where a run executes, not what it computes: left out of the run id so a grid resumed on
# another machine, or with the data in another folder, still finds its finished runs.
EXECUTION_FIELDS = ("data_root", "device", "compile", "eval_batch_size")
# Settings added after stores were published: at these defaults they are left out of the run id, so
# every run stored before they existed keeps its id (and a resumed grid finds it).
IDENTITY_OMITTED_AT = {"subset_per_seed": False}
# Random streams a run's seed drives, each derived from the seed alone (`stream_seed`).
RANDOM_STREAMS = ("init", "order", "augment", "subset")
# Packed training (ablations.run.packed_loop): runs of a grid that differ only in these settings can train as
# one model; they share every other one. Only the notebook's ResNets fuse (torchvision:/timm: train unpacked).
PACK_FREE = ("seed", "augment", "weight_decay", "decay_norm_and_bias", "lr", "schedule", "milestones", "gamma",
             "warmup_epochs")
PACKABLE_MODELS = MODELS


@dataclass(frozen=True)
class TrainConfig:
    """Every knob of one training run. Defaults follow the notebook where it has one."""

    # data
    dataset: str = "mnist"
    data_root: str | None = None  # None: $ABLATIONS_DATA_ROOT, else ./data
    train_subset: int | None = None  # class-balanced, seeded; None = the train split less validation
    # False: every run trains on the same subset (cells differ only in training randomness); True: the run's
    # seed draws it, so the spread over seeds includes data sampling. Runs sharing a seed still share images.
    subset_per_seed: bool = False
    val_subset: int | None = None  # held out of the train split, class-balanced; None = a tenth, at most 5,000
    test_subset: int | None = None
    # model and input
    model: str = "notebook_resnet_adaptive"
    image_size: int | None = None  # None: 96 px for notebook_resnet (the notebook), native otherwise
    augment: str = "none"  # policy names joined by '+', e.g. "hflip+rotate"
    # optimizer: SGD, as in the notebook
    lr: float = 0.1
    momentum: float = 0.0
    nesterov: bool = False
    weight_decay: float = 0.0
    decay_norm_and_bias: bool = True  # the notebook decays every parameter
    label_smoothing: float = 0.0
    # learning-rate schedule, a pure function of the step (ablations.schedules)
    schedule: str = "constant"
    milestones: tuple[float, ...] = ()  # in epochs; () = the schedule's default
    gamma: float | None = None  # None = the schedule's default
    warmup_epochs: float = 1.0  # warmup_cosine only
    # loop
    epochs: int = 20
    batch_size: int = 64
    eval_batch_size: int = 512
    seed: int = 0
    # execution
    device: str = "auto"  # auto: cuda, then mps, then cpu
    precision: str = "auto"  # auto: bf16 autocast on CUDA and on CPUs with fast bf16 (AMX), fp32 elsewhere
    channels_last: bool = True  # NHWC: faster convolutions on CPU (oneDNN) and GPU tensor cores
    compile: bool = False

    def __post_init__(self) -> None:
        _check_types(self)
        object.__setattr__(self, "dataset", canonical_dataset(self.dataset))
        _check_values(self)

    # ---- construction ------------------------------------------------------------------
    @classmethod
    def from_mapping(cls, values: dict[str, Any], base: TrainConfig | None = None) -> TrainConfig:
        """Build from {name: value}; names may use '-' or '_', values may be strings."""
        fields = field_types()
        parsed: dict[str, Any] = {}
        for raw_key, raw_value in values.items():
            key = normalize_key(raw_key)
            parsed[key] = parse_value(key, raw_value, fields[key])
        start = base if base is not None else cls()
        return dataclasses.replace(start, **parsed)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["milestones"] = list(self.milestones)
        return out

    # ---- identity ----------------------------------------------------------------------
    def canonical_json(self) -> str:
        science = {k: v for k, v in self.to_dict().items()
                   if k not in EXECUTION_FIELDS and not (k in IDENTITY_OMITTED_AT and v == IDENTITY_OMITTED_AT[k])}
        return json.dumps(science, sort_keys=True, separators=(",", ":"))

    @property
    def run_id(self) -> str:
        """Stable id of the run: a hash of the config's scientific fields, seed included."""
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()[:16]

    @property
    def cell_id(self) -> str:
        """The run id without the seed: replicates of one cell share it."""
        science = json.loads(self.canonical_json())
        science.pop("seed")
        blob = json.dumps(science, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    # ---- derived values (computed, never stored) ---------------------------------------
    def input_size(self, native_size: int) -> int:
        """The model's input size in px. A torchvision or timm model gets the dataset's native size too:
        one that needs more stops with the size to set, rather than silently upsampling (and costing)."""
        if self.image_size is not None:
            return self.image_size
        return NOTEBOOK_INPUT_SIZE if self.model == "notebook_resnet" else native_size

    @property
    def augment_ops(self) -> tuple[str, ...]:
        return split_policy(self.augment)

    @property
    def train_subset_seed(self) -> int | None:
        """The seed that draws the train subset: the run's own subset stream, or None for the one
        fixed subset every run shares."""
        return stream_seed(self.seed, "subset") if self.subset_per_seed else None

    @property
    def pack_key(self) -> str:
        """Runs with the same key can train as one pack: they share every setting but PACK_FREE, and their data
        (a seed that draws the train subset, `subset_per_seed`, makes the seed part of the data)."""
        shared = {k: v for k, v in self.to_dict().items() if k not in PACK_FREE}
        return json.dumps({**shared, "subset_seed": self.train_subset_seed}, sort_keys=True)


def stream_seed(seed: int, stream: str) -> int:
    """A 63-bit seed for one named random stream of a run, derived from the run's seed alone."""
    if stream not in RANDOM_STREAMS:
        raise ValueError(f"unknown random stream {stream!r}; one of {RANDOM_STREAMS}")
    return int.from_bytes(hashlib.sha256(f"{seed}/{stream}".encode()).digest()[:8], "little") >> 1


# ---- parsing ---------------------------------------------------------------------------
def normalize_key(key: str) -> str:
    name = key.strip().replace("-", "_")
    if name not in field_types():
        raise unknown_name("setting", key, [f.replace("_", "-") for f in field_types()])
    return name


def field_types() -> dict[str, Any]:
    hints = typing.get_type_hints(TrainConfig)
    return {f.name: hints[f.name] for f in dataclasses.fields(TrainConfig)}


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_NONE = {"none", "null", ""}


def parse_value(key: str, value: Any, hint: Any) -> Any:
    """Coerce a string (flag, --set) or a TOML value to the field's type, or say why not."""
    base, optional = unwrap_optional(hint)
    if optional and (value is None or (isinstance(value, str) and value.strip().lower() in _NONE)):
        return None
    try:
        if typing.get_origin(base) is tuple:
            items = value.split(",") if isinstance(value, str) else list(value)
            return tuple(float(x) for x in items if str(x).strip() != "")
        if base is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in _TRUE:
                return True
            if text in _FALSE:
                return False
            raise ValueError
        if base is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(float(value)) if isinstance(value, str) and "e" in value.lower() else int(value)
        if base is float:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if base is str:
            if not isinstance(value, str):
                raise ValueError
            return value.strip()
    except (TypeError, ValueError, OverflowError):  # OverflowError: int("1e999")
        pass
    else:
        raise AssertionError(f"unhandled type {hint!r} for {key}")
    kind = getattr(base, "__name__", str(base))
    raise UserError(f"{key.replace('_', '-')}: {value!r} is not a valid {kind}")


def count_or_auto(value: str | int, flag: str) -> int | str:
    """A count of 1 or more, or 'auto' (--workers, --pack); `flag` names it in the one-line error."""
    text = str(value).strip().lower()
    if text == "auto":
        return "auto"
    try:
        count = int(text)
    except ValueError:
        raise UserError(f"{flag} must be a number or auto, got {value!r}") from None
    if count < 1:
        raise UserError(f"{flag} must be 1 or more, got {count}")
    return count


def unwrap_optional(hint: Any) -> tuple[Any, bool]:
    """`int | None` -> (int, True); `tuple[float, ...]` -> (itself, False)."""
    args = typing.get_args(hint)
    if type(None) in args:
        return next(a for a in args if a is not type(None)), True
    return hint, False


def split_policy(policy: str) -> tuple[str, ...]:
    ops = tuple(p.strip() for p in policy.split("+") if p.strip())
    return ops or ("none",)


# ---- validation ------------------------------------------------------------------------
def _check_types(cfg: TrainConfig) -> None:
    for name, hint in field_types().items():
        value = getattr(cfg, name)
        base, optional = unwrap_optional(hint)
        if value is None and optional:
            continue
        if typing.get_origin(base) is tuple:
            ok = isinstance(value, tuple) and all(isinstance(x, (int, float)) for x in value)
        elif base is float:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        elif base is int:
            ok = isinstance(value, int) and not isinstance(value, bool)
        else:
            ok = isinstance(value, base)
        if not ok:
            raise UserError(f"{name.replace('_', '-')}: {value!r} is not a valid {getattr(base, '__name__', base)}")


def check_name(kind: str, name: str, choices: tuple[str, ...]) -> None:
    """The one check of a name against its vocabulary; a renamed one says what it is called now."""
    if name in choices:
        return
    if RENAMED.get(name) in choices:
        raise UserError(f"{kind} {name!r} is now called {RENAMED[name]!r}")
    raise unknown_name(kind, name, choices)


def check_dataset(name: str) -> None:
    """A dataset by name, or a source and what follows it ("torchvision:KMNIST", "imagefolder:PATH");
    whether the class or folder exists is checked when the data is loaded."""
    if name in DATASETS:
        return
    source, colon, rest = name.partition(":")
    if not colon or source not in DATASET_SOURCES:
        raise unknown_name("dataset", name, (*DATASETS, *DATASET_SOURCES.values()))
    if not rest.strip():
        form = DATASET_SOURCES[source]
        example = {"torchvision": "torchvision:KMNIST", "imagefolder": "imagefolder:~/pets"}[source]
        raise UserError(f"dataset {name!r} names no {form.partition(':')[2].lower()}; write {form}, e.g. {example}")


def canonical_dataset(name: str) -> str:
    """An image folder's path made absolute: the path is part of the dataset's name, so of the run id,
    and a relative one would name another folder (other images under the same id) when a grid is
    resumed from another directory. Absolute, a resumed grid finds its runs from anywhere; a moved
    folder is a new dataset and its runs train again. Not resolved through links: no disk access here."""
    source, colon, rest = name.partition(":")
    if source != "imagefolder" or not colon or not rest.strip():
        return name
    return f"imagefolder:{os.path.abspath(os.path.expanduser(rest.strip()))}"


def check_model(name: str) -> None:
    """A built-in model, or SOURCE:NAME with a known source and a name (whether it exists, the build checks)."""
    source, colon, model_name = name.partition(":")
    if not colon:
        if name not in MODELS and RENAMED.get(name) not in MODELS:
            raise UserError(f"{unknown_name('model', name, MODELS)}, {', '.join(MODEL_FORMS[len(MODELS):])}; "
                            f"list them with: {LIST_MODELS}")
        check_name("model", name, MODELS)  # an old name says what it is called now
    elif source not in MODEL_SOURCES:
        raise UserError(f"unknown model source {source!r} in {name!r}; choose one of: {', '.join(MODEL_SOURCES)} "
                        f"(e.g. torchvision:resnet18)")
    elif not model_name.strip():
        raise UserError(f"model {name!r} names no {source} model (e.g. {source}:resnet18); list them with: "
                        f"{LIST_MODELS}")


def check_policy(policy: str) -> tuple[str, ...]:
    """The ops of an augmentation policy ("hflip+rotate"), each known, 'none' alone."""
    ops = split_policy(policy)
    for op in ops:
        check_name("augmentation policy", op, AUGMENT_OPS)
    if len(ops) > 1 and "none" in ops:
        raise UserError(f"augment {policy!r}: 'none' cannot be combined with other policies")
    return ops


def check_milestones(milestones: tuple[float, ...], epochs: int) -> None:
    if any(not 0 < m < epochs for m in milestones):
        raise UserError(f"milestones {list(milestones)} must lie strictly between 0 and epochs ({epochs})")


def _check_values(cfg: TrainConfig) -> None:
    check_dataset(cfg.dataset)
    check_model(cfg.model)
    check_name("schedule", cfg.schedule, SCHEDULES)
    check_name("precision", cfg.precision, PRECISIONS)
    check_policy(cfg.augment)
    if not (cfg.device in ("auto", "cpu", "cuda", "mps") or cfg.device.startswith("cuda:")):
        raise UserError(f"unknown device {cfg.device!r}; choose auto, cpu, cuda, cuda:N or mps")
    _positive(cfg, "epochs", "batch_size", "eval_batch_size", "lr")
    _positive_or_none(cfg, "train_subset", "val_subset", "test_subset", "image_size", "gamma")
    _non_negative(cfg, "weight_decay", "momentum", "warmup_epochs", "seed")
    for name in ("lr", "weight_decay", "momentum", "label_smoothing", "warmup_epochs"):
        if not math.isfinite(getattr(cfg, name)):
            raise UserError(f"{name.replace('_', '-')} must be a finite number")
    if not 0.0 <= cfg.label_smoothing < 1.0:
        raise UserError(f"label-smoothing must be in [0, 1), got {cfg.label_smoothing}")
    if cfg.nesterov and cfg.momentum == 0:
        raise UserError("nesterov needs a momentum above 0 (set --momentum, e.g. 0.9)")
    check_milestones(cfg.milestones, cfg.epochs)
    if list(cfg.milestones) != sorted(cfg.milestones):
        raise UserError(f"milestones {list(cfg.milestones)} must be increasing")


def _positive(cfg: TrainConfig, *names: str) -> None:
    for name in names:
        if getattr(cfg, name) <= 0:
            raise UserError(f"{name.replace('_', '-')} must be above 0, got {getattr(cfg, name)}")


def _positive_or_none(cfg: TrainConfig, *names: str) -> None:
    for name in names:
        value = getattr(cfg, name)
        if value is not None and value <= 0:
            raise UserError(f"{name.replace('_', '-')} must be above 0, got {value}")


def _non_negative(cfg: TrainConfig, *names: str) -> None:
    for name in names:
        if getattr(cfg, name) < 0:
            raise UserError(f"{name.replace('_', '-')} must be 0 or more, got {getattr(cfg, name)}")


# ---- labels ----------------------------------------------------------------------------
def cell_label(config: Mapping[str, Any], axes: Iterable[str]) -> str:
    """A config's coordinates on `axes`, e.g. 'augment=notebook weight_decay=0.001'; '' with no axes.
    `config` as a run stores it (TrainConfig.to_dict()), so a run read back from the store gets the same label."""
    return " ".join(f"{n}={_fmt(config.get(n))}" for n in axes)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (tuple, list)):
        return ",".join(f"{v:g}" for v in value)
    return str(value)
