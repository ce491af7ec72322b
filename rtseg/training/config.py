"""The training configuration: typed dataclasses, read from YAML, overridden with ``--set``.

A config file has five sections, each a dataclass below (``loss`` maps names to loss terms,
``rtseg.training.losses``)::

    base: paper_recipe.yaml        # optional: a file (relative to this one) to inherit from
    model: {name: skipnet-mobilenet_v1, pretrained: true, options: {width: 1.0}}
    data:  {root: data/cityscapes, crop: [512, 1024]}
    optim: {name: adam, lr: 1.0e-4, weight_decay: 5.0e-4, decay: kernels}
    loss:  {out: {type: cross_entropy, normalise: by_pixels}, aux: {type: ohem_cross_entropy, weight: 0.4}}
    train: {epochs: 200, batch_size: 4, precision: fp32}

Every file inherits the defaults (the paper's recipe) key by key, as it inherits its ``base``.

Every key is checked against the dataclasses: an unknown key or a value of the wrong type
is refused with the key's dotted name. The checking is written here rather than taken from
OmegaConf or pydantic (neither is a dependency; OmegaConf cannot type ``pretrained`` as
"true or a path") and is small: the types used are bool, int, float, str, None, Literal,
fixed-length tuples, lists, dicts, nested dataclasses and the loss terms (a dataclass per ``type``).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional, Union

from rtseg.errors import RtsegError
from rtseg.options import TRAIN_PRECISIONS
from rtseg.training.losses import CrossEntropy, LossTerm, term_class

Precision = Literal[TRAIN_PRECISIONS]  # type: ignore[valid-type]  (Literal[("a", "b")] == Literal["a", "b"])


@dataclass
class ModelConfig:
    """What to train: any name ``rtseg models`` lists, with its options."""

    name: str = "skipnet-mobilenet_v1"
    # null: the dataset's class count (what every run should do); a number must equal it
    num_classes: Optional[int] = None
    # true: the encoder's ImageNet weights (downloaded once by torchvision/timm); a path: a
    # local encoder state dict; null: random initialisation (tests, synthetic data).
    pretrained: Union[bool, str, None] = True
    # encoder/decoder options, e.g. {width: 0.5} or {fusion: concat}
    options: dict = field(default_factory=dict)
    # start from the weights of an earlier run (coarse pre-training -> fine-tuning)
    init_from: Optional[str] = None
    # all: the checkpoint holds exactly this network's tensors; shared: load those both have (same
    # name and shape) and keep the rest as initialised (ENet's decoder after its encoder stage)
    init_keys: Literal["all", "shared"] = "all"
    sync_bn: bool = False  # SyncBatchNorm across processes (DDP only)
    # keep batch-norm layers in eval mode (running statistics frozen, affine still trained)
    freeze_bn: bool = False


@dataclass
class SyntheticConfig:
    """A tiny generated street-scene dataset (written under the run folder) in one of the layouts."""

    train: int = 64
    val: int = 16
    size: tuple[int, int] = (128, 256)
    seed: int = 0
    layout: Literal["cityscapes", "camvid", "folder"] = "cityscapes"


@dataclass
class DataConfig:
    root: Optional[str] = "data/cityscapes"
    # the layout of root: null finds it (dataset.yaml: folder; leftImg8bit/: cityscapes; train/ +
    # trainannot/: camvid); the classes, colours and scores come from the dataset
    dataset: Optional[Literal["cityscapes", "camvid", "folder"]] = None
    annotation: Literal["fine", "coarse"] = "fine"  # coarse: Cityscapes only
    train_split: str = "train"  # splits join with '+': train+val
    val_split: Optional[str] = "val"  # null: no validation
    crop: tuple[int, int] = (512, 1024)  # training crop, height x width
    scale: tuple[float, float] = (0.5, 0.5)  # random resize range before the crop
    hflip: bool = True
    color_jitter: float = 0.0
    # input size of the network at validation (null: the image's own size); scores are
    # always computed at the full label resolution
    val_size: Optional[tuple[int, int]] = (512, 1024)
    val_limit: Optional[int] = None  # validate on the first N images only (quick checks)
    workers: int = 4
    # a folder for decoded training images and labels (.npy, rtseg.data.decode_cache): PNG decoding
    # once instead of every epoch, at the cost of their raw size on disk; null: decode every time
    cache: Optional[str] = None
    class_weights: Literal["enet", "median", "uniform"] = "enet"
    # generate a synthetic dataset into <out>/synthetic instead of reading ``root``
    synthetic: Optional[SyntheticConfig] = None


@dataclass
class OptimConfig:
    name: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = 1e-4
    weight_decay: float = 5e-4  # L2 (added to the gradient) for adam and sgd; decoupled for adamw
    # which parameters decay: kernels (convolution, transposed-convolution and linear weights, as the
    # authors' TF code) or all (batch-norm scales and shifts, biases and PReLU slopes too)
    decay: Literal["kernels", "all"] = "kernels"
    momentum: float = 0.9  # sgd only
    betas: tuple[float, float] = (0.9, 0.999)  # adam/adamw only
    schedule: Literal["constant", "poly"] = "constant"
    poly_power: float = 0.9
    # warm-up: over the first warmup_iters steps the rate rises from warmup_ratio x lr to lr, linearly
    # or exponentially (lr x ratio ** (1 - step / warmup_iters)); the schedule then runs over the steps left
    warmup_iters: int = 0
    warmup_ratio: float = 0.1
    warmup_mode: Literal["linear", "exp"] = "linear"
    # learning-rate factors by parameter name: a module path (its parameters and its children's) -> factor,
    # e.g. {head: 10.0} trains every parameter under ``head.`` at 10 x lr; the longest matching path wins
    lr_multipliers: dict[str, float] = field(default_factory=dict)
    grad_clip: Optional[float] = None  # max gradient norm


@dataclass
class LoopConfig:
    # exactly one of epochs and iterations
    epochs: Optional[int] = 200
    iterations: Optional[int] = None
    batch_size: int = 4  # global batch: split evenly over the processes of a distributed run
    seed: int = 0
    precision: Precision = "fp32"
    device: str = "auto"  # auto (cuda when available), cpu, cuda, cuda:1, ...
    val_every: Optional[int] = None  # steps between validations; null: once per epoch
    checkpoint_every: Optional[int] = None  # steps between checkpoints; null: as val_every
    log_every: int = 10  # steps between rows of steps.csv
    progress: bool = True  # tqdm progress bar


@dataclass
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    # term name -> loss term; the paper's: ENet-weighted cross entropy over the labelled pixels,
    # divided by their number as TF's default reduction does
    loss: dict[str, LossTerm] = field(default_factory=lambda: {"out": CrossEntropy(normalise="by_pixels")})
    train: LoopConfig = field(default_factory=LoopConfig)

    def to_dict(self) -> dict:
        """Plain dict (tuples as lists): what checkpoints and YAML hold."""
        return _plain(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: dict, source: str = "config") -> "TrainConfig":
        if isinstance(data, dict) and isinstance(data.get("train"), dict):
            # a config that sets train.iterations does not also inherit the default epochs
            data = {**data, "train": dict(data["train"])}
            _clear_alternative(data["train"], data["train"])
        config = _build(cls, data, "", source)
        config.validate(source)
        return config

    def validate(self, source: str = "config") -> None:
        """Checks between keys (the per-key type checks happen while building)."""
        loop = self.train
        if (loop.epochs is None) == (loop.iterations is None):
            raise RtsegError(f"{source}: set exactly one of train.epochs and train.iterations")
        for key, value in (("train.epochs", loop.epochs), ("train.iterations", loop.iterations),
                           ("train.batch_size", loop.batch_size), ("train.val_every", loop.val_every),
                           ("train.checkpoint_every", loop.checkpoint_every),
                           ("train.log_every", loop.log_every), ("model.num_classes", self.model.num_classes),
                           ("data.val_limit", self.data.val_limit)):
            if value is not None and value < 1:
                raise RtsegError(f"{source}: {key} must be at least 1, got {value}")
        if self.data.workers < 0:
            raise RtsegError(f"{source}: data.workers must be 0 or more, got {self.data.workers}")
        if min(self.data.crop) < 1 or (self.data.val_size and min(self.data.val_size) < 1):
            raise RtsegError(f"{source}: data.crop and data.val_size must be positive")
        low, high = self.data.scale
        if not 0 < low <= high:
            raise RtsegError(f"{source}: data.scale must be [low, high] with 0 < low <= high, got {[low, high]}")
        if self.optim.lr <= 0:
            raise RtsegError(f"{source}: optim.lr must be positive, got {self.optim.lr}")
        if self.data.root is None and self.data.synthetic is None:
            raise RtsegError(f"{source}: set data.root (a dataset folder) or data.synthetic")
        if self.optim.weight_decay < 0:
            raise RtsegError(f"{source}: optim.weight_decay must be 0 or more, got {self.optim.weight_decay}")
        if self.optim.warmup_iters < 0:
            raise RtsegError(f"{source}: optim.warmup_iters must be 0 or more, got {self.optim.warmup_iters}")
        if not 0 < self.optim.warmup_ratio <= 1:
            raise RtsegError(f"{source}: optim.warmup_ratio must be in (0, 1], got {self.optim.warmup_ratio}")
        for prefix, factor in self.optim.lr_multipliers.items():
            if not prefix or prefix.startswith(".") or prefix.endswith(".") or factor <= 0:
                raise RtsegError(f"{source}: optim.lr_multipliers maps module paths (e.g. head, backbone.stage1) to "
                                 f"positive factors, got {prefix!r}: {factor}")
        if not self.loss:
            raise RtsegError(f"{source}: loss has no terms (e.g. loss: {{out: {{type: cross_entropy}}}})")
        for name, term in self.loss.items():
            if not name.isidentifier():
                raise RtsegError(f"{source}: loss term name {name!r} must be a plain word (letters, digits, _)")
            term.check(f"{source}: loss.{name}")
            weights = getattr(term, "class_weights", None)
            if isinstance(weights, list) and self.model.num_classes and len(weights) != self.model.num_classes:
                raise RtsegError(f"{source}: loss.{name}.class_weights has {len(weights)} values for "
                                 f"model.num_classes {self.model.num_classes}")


# --- reading ---------------------------------------------------------------------------

def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> TrainConfig:
    """Read a YAML config (following ``base:`` links), apply ``key=value`` overrides, check it.

    ``path=None`` starts from the defaults (the paper's recipe); a file changes them key by key.
    """
    data = TrainConfig().to_dict()
    if path is not None:
        data = merge(data, read_yaml_with_base(Path(path)))
    source = str(path) if path is not None else "config"
    for item in overrides:
        apply_override(data, item)
    return TrainConfig.from_dict(data, source)


def read_yaml_with_base(path: Path, _seen: tuple[Path, ...] = ()) -> dict:
    import yaml

    path = Path(path)
    if not path.is_file():
        raise RtsegError(f"config file {path} does not exist")
    if path.resolve() in _seen:
        raise RtsegError(f"config file {path}: 'base:' links loop back to itself")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise RtsegError(f"config file {path} is not valid YAML: {str(exc).splitlines()[0]}") from exc
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise RtsegError(f"config file {path} must hold a mapping of sections, not {type(data).__name__}")
    base = data.pop("base", None)
    if base is None:
        return data
    if not isinstance(base, str):
        raise RtsegError(f"config file {path}: 'base' must be a file name, got {base!r}")
    parent = read_yaml_with_base(path.parent / base, _seen + (path.resolve(),))
    return merge(parent, data)


def merge(base: dict, update: dict) -> dict:
    """Recursive dict merge; mappings merge key by key, anything else replaces.

    ``model.options`` is replaced whole, not merged: options of one model rarely fit another.
    In ``loss``, a term that names a ``type`` replaces the inherited term of that name whole (the
    options of one kind do not fit another), one without merges into it, and ``null`` removes it.
    """
    out = dict(base)
    for key, value in update.items():
        if key == "loss" and isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge_terms(out[key], value)
        elif isinstance(value, dict) and isinstance(out.get(key), dict) and key != "options":
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    _clear_alternative(out.get("train"), update.get("train"))
    return out


def _merge_terms(base: dict, update: dict) -> dict:
    out = dict(base)
    for name, term in update.items():
        if term is None:
            out.pop(name, None)
        elif isinstance(term, dict) and "type" not in term and isinstance(out.get(name), dict):
            out[name] = {**out[name], **term}
        else:
            out[name] = term
    return out


# Keys that exclude each other: a layer (file or --set) that sets one clears the other.
_ALTERNATIVES = {"epochs": "iterations", "iterations": "epochs"}


def _clear_alternative(merged: Any, update: Any) -> None:
    if not isinstance(merged, dict) or not isinstance(update, dict):
        return
    for key, other in _ALTERNATIVES.items():
        if update.get(key) is not None and update.get(other) is None:
            merged[other] = None


def apply_override(data: dict, item: str) -> None:
    """``"optim.lr=3e-4"`` -> ``data["optim"]["lr"] = 0.0003`` (the value is read as YAML)."""
    import yaml

    key, sep, text = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise RtsegError(f"--set {item!r} is not KEY=VALUE (e.g. optim.lr=3e-4)")
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError:
        value = text
    node = data
    parts = key.split(".")
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        elif not isinstance(child, dict):
            raise RtsegError(f"--set {item!r}: {part!r} is not a section")
        node = child
    node[parts[-1]] = value
    if len(parts) == 2 and parts[0] == "train" and parts[1] in _ALTERNATIVES and value is not None:
        node[_ALTERNATIVES[parts[1]]] = None


# --- type checking ---------------------------------------------------------------------

def _build(cls: type, data: Any, prefix: str, source: str):
    where = prefix.rstrip(".") or "the top level"
    if isinstance(data, cls):
        return data
    if not isinstance(data, dict):
        raise RtsegError(f"{source}: {where} must be a mapping of keys, got {_describe(data)}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key in data:
        if key not in names:
            raise RtsegError(f"{source}: unknown key {prefix}{key!s} (known: {', '.join(sorted(names))})")
    values = {key: _check(hints[key], value, f"{prefix}{key}", source) for key, value in data.items()}
    return cls(**values)


def _check(hint: Any, value: Any, key: str, source: str) -> Any:
    """Return ``value`` converted to ``hint`` (lists -> tuples, ints -> floats) or raise."""
    origin = typing.get_origin(hint)
    if hint is LossTerm:  # one dataclass per loss type
        return _build(term_class(value, key, source), value, f"{key}.", source)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, f"{key}.", source)
    if origin in (Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None:
            if type(None) in options:
                return None
        else:
            for option in options:
                if option is type(None):
                    continue
                try:
                    return _check(option, value, key, source)
                except RtsegError as exc:
                    if dataclasses.is_dataclass(option) and isinstance(value, dict):
                        raise exc
        raise _type_error(key, value, _type_name(hint), source)
    if origin is Literal:
        choices = typing.get_args(hint)
        if value not in choices or isinstance(value, bool):
            raise RtsegError(f"{source}: {key} must be one of {', '.join(map(str, choices))}, got {value!r}")
        return value
    if origin is tuple:
        args = typing.get_args(hint)
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise _type_error(key, value, _type_name(hint), source)
        return tuple(_check(a, v, f"{key}[{i}]", source) for i, (a, v) in enumerate(zip(args, value)))
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise _type_error(key, value, _type_name(hint), source)
        (item,) = typing.get_args(hint)
        return [_check(item, v, f"{key}[{i}]", source) for i, v in enumerate(value)]
    if hint is dict or origin is dict:
        if not isinstance(value, dict):
            raise _type_error(key, value, "a mapping", source)
        args = typing.get_args(hint)
        if args and args[1] is not Any:  # typed values; a null entry is dropped (a removed loss term)
            return {str(k): _check(args[1], v, f"{key}.{k}", source) for k, v in value.items() if v is not None}
        return dict(value)
    if hint is bool:
        if not isinstance(value, bool):
            raise _type_error(key, value, "true or false", source)
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _type_error(key, value, "an integer", source)
        return value
    if hint is float:
        if isinstance(value, str):  # YAML 1.1 reads "1e-4" (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _type_error(key, value, "a number", source)
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise _type_error(key, value, "a string", source)
        return value
    if hint is Any:
        return value
    raise TypeError(f"config type {hint!r} of {key} is not supported")  # a bug here, not the user's


def _type_name(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(hint))
    if origin is tuple:
        return f"a list of {len(typing.get_args(hint))} " + "/".join(
            dict.fromkeys(_type_name(a).removeprefix("a ").removeprefix("an ") + "s" for a in typing.get_args(hint)))
    if origin is list:
        return "a list of " + _type_name(typing.get_args(hint)[0]).removeprefix("a ").removeprefix("an ") + "s"
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string",
            type(None): "null", dict: "a mapping"}.get(hint, getattr(hint, "__name__", str(hint)))


def _describe(value: Any) -> str:
    return "null" if value is None else f"{value!r} ({type(value).__name__})"


def _type_error(key: str, value: Any, expected: str, source: str) -> RtsegError:
    return RtsegError(f"{source}: {key} must be {expected}, got {_describe(value)}")


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def config_differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two config dicts."""
    keys = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict) and key != "options":
            keys += config_differences(a, b, f"{prefix}{key}.")
        elif a != b:
            keys.append(f"{prefix}{key}")
    return keys
