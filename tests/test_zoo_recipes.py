"""The zoo networks' published recipes, ``configs/<model>.yaml``: one per network, each parses, its
loss terms train exactly the outputs its network returns in training mode, and a short CPU run of
it on synthetic images lowers every trained term of its loss.

The short runs keep each recipe's loss terms, optimizer, decay groups, learning-rate multipliers and
schedule (a warm-up shortened to 2 steps); only what a CPU test cannot afford changes: 64x128
crops of 2 synthetic images without augmentation, a batch of 2, 8 steps, random weights instead of
the authors' ImageNet files. About 80 s for the lot on one core (PIDNet-L's 37M parameters take 14).
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

import rtseg
from rtseg.models.registry import MODELS
from rtseg.models.weights_path import WEIGHTS_DIR
from rtseg.training import train
from rtseg.training.config import load_config
from rtseg.training.losses import BoundaryAwareCrossEntropy, LossRecipe

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
ZOO = sorted(name for name in MODELS.names() if MODELS.get(name).__module__.startswith("rtseg.models.zoo."))
ZOO_CONFIGS = sorted(path for path in CONFIGS.glob("*.yaml") if load_config(path).model.name in ZOO)
STEPS = 8
SHORT_RUN = ["data.root=null", "data.synthetic={train: 2, val: 0, size: [64, 128], seed: 0}", "data.crop=[64, 128]",
             "data.scale=[1.0, 1.0]", "data.hflip=false", "data.color_jitter=0.0", "data.val_split=null",
             "data.workers=0", "model.pretrained=null", "model.sync_bn=false", f"train.iterations={STEPS}",
             "train.batch_size=2", "train.log_every=1", "train.progress=false", "train.device=cpu",
             "train.val_every=null", "train.checkpoint_every=null", "train.precision=fp32"]
SINGLE_THREAD = True  # small steps (conftest.py)

by_stem = pytest.mark.parametrize("path", ZOO_CONFIGS, ids=[p.stem for p in ZOO_CONFIGS])


def test_every_zoo_network_has_its_recipe():
    assert len(ZOO) == 11, ZOO  # the eleven networks, registered from rtseg/models/zoo/
    for name in ZOO:
        path = CONFIGS / f"{name}.yaml"
        assert path.is_file(), f"no recipe for {name}"
        assert load_config(path).model.name == name


@by_stem
def test_the_recipe_trains_exactly_the_outputs_its_network_returns(path):
    config = load_config(path)
    torch.manual_seed(0)
    model = rtseg.create_model(config.model.name, num_classes=config.model.num_classes).train()
    with torch.no_grad():
        outputs = model(torch.randn(2, 3, 64, 128))
    LossRecipe(config.loss).check_outputs(set(outputs))  # every output read, no term reading a missing one
    # one term per output, named like it; beside them only PIDNet's boundary-aware term on the main logits
    own = {name for name, term in config.loss.items() if term.source(name) == name}
    extra = {name: term for name, term in config.loss.items() if name not in own}
    assert own == set(outputs)
    assert all(isinstance(term, BoundaryAwareCrossEntropy) and term.source(name) == "out"
               and term.boundary in outputs for name, term in extra.items())
    assert len(config.loss) == len(outputs) + len(extra)
    # the authors' ImageNet file, named in the weights folder; Fast-SCNN trains from scratch and
    # BiSeNet v1's ResNet18 is torchvision's download
    pretrained = config.model.pretrained
    assert pretrained is None if config.model.name == "fast_scnn" else (
        pretrained is True if config.model.name == "bisenet_v1" else pretrained.startswith(f"{WEIGHTS_DIR}/"))


@by_stem
def test_a_short_cpu_run_of_the_recipe_lowers_every_trained_term_of_its_loss(path, tmp_path):
    config = load_config(path, SHORT_RUN)
    if config.optim.warmup_iters:
        config.optim.warmup_iters = 2  # the recipe's warm-up, shortened to fit the run
    result = train(config, tmp_path / "run")
    assert result.steps == STEPS
    with open(tmp_path / "run" / "steps.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(row["step"]) for row in rows] == list(range(1, STEPS + 1))
    # the total and each trained term (Tramac's recipe keeps its auxiliary term at weight 0)
    trained = [name for name, term in config.loss.items() if term.weight > 0]
    columns = ["loss"] + ([f"loss_{name}" for name in trained] if len(config.loss) > 1 else [])
    for column in columns:
        values = [float(row[column]) for row in rows]
        assert all(torch.isfinite(torch.tensor(values))), (column, values)
        assert values[-1] < values[0], (column, values)
