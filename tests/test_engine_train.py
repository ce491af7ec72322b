"""Training end to end on the synthetic Cityscapes: it learns, it resumes exactly, it stops on NaN.

Runs are tiny (SkipNet-MobileNet at width 0.25, 64x128 images, a few steps) and use one
intra-op thread: on a shared 2-core machine two OpenMP threads per process are many times
slower than one for layers this small.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from rtseg.models import load_model
from rtseg.models.segmentation import SegmentationNetwork
from rtseg.training import load_config, train
from rtseg.training import trainer as trainer_module
from rtseg.checkpoint import load_checkpoint
from rtseg.training.logs import read_csv
from rtseg.errors import RtsegError

SMALL = [
    "model.pretrained=null", "model.options={width: 0.25}",
    "data.crop=[64, 128]", "data.val_size=null", "data.workers=0",
    "train.batch_size=4", "train.progress=false", "optim.lr=3e-3",
]


SINGLE_THREAD = True  # tiny models (see conftest.py)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    from rtseg.data.synthetic import generate_synthetic_cityscapes

    root = tmp_path_factory.mktemp("synthetic")
    generate_synthetic_cityscapes(root, train=12, val=2, test=0, size=(64, 128), seed=0, progress=False)
    return root


def small_config(data_root, *overrides):
    return load_config(None, SMALL + [f"data.root={data_root}", *overrides])


class Killed(Exception):
    """Stands for the process being killed in the middle of a step."""


def test_resume_after_a_kill_repeats_the_uninterrupted_losses(tmp_path, data_root, monkeypatch):
    # random scale, crop and flip, a poly schedule, validation between checkpoints: all must replay
    recipe = ["train.iterations=8", "train.checkpoint_every=2", "train.val_every=3", "train.log_every=1",
              "optim.schedule=poly", "data.scale=[0.75, 1.25]", "data.hflip=true", "data.color_jitter=0.2"]
    straight = train(small_config(data_root, *recipe), tmp_path / "straight")

    original_step = trainer_module.Trainer._train_step

    def killed_at_step_6(self, batch):
        if self.step == 5:  # the 6th step never finishes; the checkpoint of step 4 is the last
            raise Killed
        return original_step(self, batch)

    monkeypatch.setattr(trainer_module.Trainer, "_train_step", killed_at_step_6)
    with pytest.raises(Killed):
        train(small_config(data_root, *recipe), tmp_path / "resumed")
    monkeypatch.setattr(trainer_module.Trainer, "_train_step", original_step)
    assert load_checkpoint(tmp_path / "resumed" / "last.pt")["step"] == 4
    assert len(read_csv(tmp_path / "resumed" / "steps.csv")) == 5  # step 5 was logged, then lost

    with pytest.raises(RtsegError, match="--resume"):
        train(small_config(data_root, *recipe), tmp_path / "resumed")
    with pytest.raises(RtsegError, match="optim.lr"):
        train(small_config(data_root, *recipe, "optim.lr=1e-3"), tmp_path / "resumed", resume=True)
    # two loader processes now instead of none: augmentation seeds do not depend on workers
    resumed = train(small_config(data_root, *recipe, "data.workers=2"), tmp_path / "resumed", resume=True)

    expected = read_csv(tmp_path / "straight" / "steps.csv")
    got = read_csv(tmp_path / "resumed" / "steps.csv")
    assert [r["step"] for r in got] == [str(s) for s in range(1, 9)]
    for a, b in zip(expected, got):
        assert float(a["loss"]) == pytest.approx(float(b["loss"]), abs=1e-6, rel=0)
        assert float(a["lr"]) == float(b["lr"])
    assert len({r["loss"] for r in expected}) == 8  # the losses do change from step to step
    metrics_a = read_csv(tmp_path / "straight" / "metrics.csv")
    metrics_b = read_csv(tmp_path / "resumed" / "metrics.csv")
    assert [r["step"] for r in metrics_b] == ["3", "6", "8"]
    assert [r["miou"] for r in metrics_a] == [r["miou"] for r in metrics_b]
    for name, value in straight.model.state_dict().items():
        assert torch.allclose(value.float(), resumed.model.state_dict()[name].float(), atol=1e-6), name


def test_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, data_root):
    config = small_config(data_root, "optim.name=sgd", "optim.lr=1e10", "optim.momentum=0",
                          "train.iterations=20", "train.checkpoint_every=1", "data.val_split=null")
    with pytest.raises(trainer_module.NonFiniteLossError, match=r"loss became (nan|inf) at step \d+") as error:
        train(config, tmp_path / "run")
    assert "last good checkpoint" in str(error.value) and "\n" not in str(error.value)
    state = load_checkpoint(tmp_path / "run" / "last.pt")
    failed_step = int(str(error.value).split(" at step ")[1].split()[0])
    assert 1 <= state["step"] == failed_step - 1
    # the kept checkpoint's parameters are finite
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_it_learns_and_the_checkpoint_rebuilds_the_model(tmp_path):
    """A short CPU run on the synthetic scenes scores far above the same network untrained.

    Measured on a 2-core machine: untrained mIoU 0.01 %, trained (60 steps) 10.0 %.
    """
    from rtseg.training import build_eval_dataset, evaluate
    from rtseg.models import create_model

    config = load_config(None, SMALL + [
        "data.root=null", "data.synthetic={train: 16, val: 4, size: [64, 128]}", "data.scale=[1, 1]",
        "train.iterations=60", "train.val_every=30", "train.log_every=10"])
    torch.manual_seed(config.train.seed)  # the trainer seeds the same way before building the model
    untrained = create_model(config.model.name, **config.model.options)
    result = train(config, tmp_path / "run")

    val = build_eval_dataset(tmp_path / "run" / "synthetic", "val", None, untrained.mean, untrained.std)
    before = evaluate(untrained, val, progress=False)["miou"]
    after = evaluate(result.model, val, progress=False)["miou"]
    assert after > max(10 * before, 0.05), (before, after)
    assert result.best_miou == pytest.approx(max(float(r["miou"]) for r in read_csv(tmp_path / "run" / "metrics.csv")))
    losses = [float(r["loss"]) for r in read_csv(tmp_path / "run" / "steps.csv")]
    assert losses[-1] < losses[0] and all(math.isfinite(v) for v in losses)

    # best.pt holds everything needed to rebuild the network, and loads with weights_only=True
    model, state = load_model(result.best_checkpoint)
    assert state["model_name"] == "skipnet-mobilenet_v1" and state["model_options"] == {"width": 0.25}
    assert "optimizer" not in state and "optimizer" in load_checkpoint(result.last_checkpoint)
    best_scores = evaluate(model, val, progress=False)
    assert best_scores["miou"] == pytest.approx(result.best_miou, abs=1e-9)


CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_enet_trains_its_encoder_first_then_the_whole_network_from_it(tmp_path, data_root):
    """configs/enet_recipe-encoder.yaml then configs/enet_recipe.yaml, on a tiny budget."""
    tiny = [f"data.root={data_root}", "data.crop=[64, 128]", "data.workers=0", "data.val_size=null",
            "train.batch_size=4", "train.progress=false", "train.log_every=1"]
    stage1 = train(load_config(CONFIGS / "enet_recipe-encoder.yaml", tiny + ["train.iterations=3"]), tmp_path / "enc")
    assert stage1.metrics is not None and stage1.metrics["miou"] is not None  # validated at full resolution
    encoder_state = load_checkpoint(stage1.last_checkpoint)["model"]
    assert "encoder_classifier.weight" in encoder_state and "classifier.weight" not in encoder_state
    losses = [float(r["loss"]) for r in read_csv(tmp_path / "enc" / "steps.csv")]
    assert len(losses) == 3 and all(math.isfinite(v) for v in losses)

    # an almost zero learning rate: after one step the whole network's encoder is still stage 1's
    stage2 = train(load_config(CONFIGS / "enet_recipe.yaml", tiny + [
        f"model.init_from={stage1.last_checkpoint}", "train.iterations=1", "optim.lr=1e-12", "data.val_split=null"]),
        tmp_path / "whole")
    whole = dict(stage2.model.named_parameters())
    assert "classifier.weight" in whole and "encoder_classifier.weight" not in whole
    shared = [name for name in whole if name in encoder_state]
    assert len(shared) > 50 and all(n.split(".")[0] in ("initial", "down1", "stage1", "down2", "stage2", "stage3")
                                    for n in shared)
    for name in shared:
        assert torch.allclose(whole[name].detach(), encoder_state[name], atol=1e-6), name
    # without stage 1's checkpoint, stage 2 says what it needs
    with pytest.raises(RtsegError, match=r"model.init_from .* does not exist: .*train that config first"):
        train(load_config(CONFIGS / "enet_recipe.yaml", tiny + [f"model.init_from={tmp_path}/none.pt"]), tmp_path / "x")


class TinyHeads(SegmentationNetwork):
    """A network with the extra outputs today's models train: the main logits and, in training
    mode, an auxiliary head, a boundary head (PIDNet) and a detail head at half resolution (STDC)."""

    def __init__(self, num_classes: int = 19, heads=("aux", "boundary", "detail")):
        super().__init__("tiny_heads", num_classes)
        nn = torch.nn
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1), nn.BatchNorm2d(16), nn.ReLU())
        self.body = nn.Sequential(nn.Conv2d(16, 32, 3, 1, 2, dilation=2), nn.BatchNorm2d(32), nn.ReLU())
        self.out = nn.Conv2d(32, num_classes, 1)
        every = {"aux": nn.Conv2d(16, num_classes, 1), "boundary": nn.Conv2d(32, 1, 1), "detail": nn.Conv2d(16, 1, 1)}
        self.extra = nn.ModuleDict({k: every[k] for k in heads})

    def forward(self, x):
        def up(t):
            return torch.nn.functional.interpolate(t, size=x.shape[-2:], mode="bilinear", align_corners=False)

        low = self.stem(x)
        high = self.body(low)
        out = up(self.out(high))
        if not self.training:
            return out
        features = {"aux": low, "boundary": high, "detail": low}
        extra = {k: head(features[k]) for k, head in self.extra.items()}
        return {"out": out, **{k: (v if k == "detail" else up(v)) for k, v in extra.items()}}


# The loss terms of today's models' published recipes (docs/zoo.md), at this test's scale.
RECIPES = {
    "pidnet": {"out": "{type: ohem_cross_entropy, threshold: 0.9, min_kept: 400, class_weights: true}",
               "aux": "{type: cross_entropy, weight: 0.4, normalise: by_pixels}",
               "boundary": "{type: boundary_bce, weight: 20.0}",
               "bas": "{type: boundary_aware_cross_entropy, output: out, threshold: 0.9, min_kept: 400}"},
    "stdc": {"out": "{type: ohem_cross_entropy, threshold: 0.7, min_kept: 512}",
             "aux": "{type: ohem_cross_entropy, threshold: 0.7, min_kept: 512}",
             "detail": "{type: detail, resize: bilinear_align_corners}"},
    "bisenet": {"out": "{type: ohem_cross_entropy, threshold: 0.7, min_kept: 512}",
                "aux": "{type: ohem_cross_entropy, weight: 0.4, threshold: 0.7, min_kept: 512}"},
}
HEADS = {"pidnet": "[aux, boundary]", "stdc": "[aux, detail]", "bisenet": "[aux]"}


@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_a_short_training_with_extra_outputs_and_their_loss_terms_lowers_the_loss(tmp_path, data_root, monkeypatch,
                                                                                  recipe):
    from rtseg.models.registry import MODELS

    monkeypatch.setitem(MODELS._entries, "tiny_heads", TinyHeads)
    terms = [f"loss.{name}={term}" for name, term in RECIPES[recipe].items()]
    config = small_config(data_root, "model.name=tiny_heads", f"model.options={{heads: {HEADS[recipe]}}}",
                          "loss.out=null", *terms, "train.iterations=40", "train.log_every=1",
                          "data.val_split=null", "data.scale=[1, 1]", "data.hflip=false", "optim.lr=1e-2")
    result = train(config, tmp_path / recipe)
    rows = read_csv(tmp_path / recipe / "steps.csv")
    losses = [float(r["loss"]) for r in rows]
    assert all(math.isfinite(v) for v in losses) and len(losses) == 40
    assert sum(losses[-5:]) < 0.8 * sum(losses[:5]), losses
    for name in RECIPES[recipe]:  # each term logged; the weighted sum is the logged loss
        assert f"loss_{name}" in rows[0]
    weights = {name: config.loss[name].weight for name in config.loss}
    assert float(rows[-1]["loss"]) == pytest.approx(sum(weights[n] * float(rows[-1][f"loss_{n}"]) for n in weights))
    if recipe != "bisenet":
        head = "boundary" if recipe == "pidnet" else "detail"
        first, last = (float(rows[i][f"loss_{head}"]) for i in (0, -1))
        assert last < first, (head, first, last)
    assert not isinstance(result.model(torch.zeros(1, 3, 64, 128)), dict)  # eval mode: the logits alone


def test_shared_tensors_load_what_both_have_and_refuse_what_does_not_fit():
    from rtseg.models import create_model
    from rtseg.training.trainer import load_shared_tensors

    encoder_stage = create_model("enet", encoder_only=True).state_dict()
    whole = create_model("enet")
    note = load_shared_tensors(whole, encoder_stage, "stage 1")
    own = whole.state_dict()
    shared = len(set(own) & set(encoder_stage))
    assert f"loaded {shared} of the network's {len(own)} tensors; {len(own) - shared} start as initialised " \
           "(classifier, stage4, stage5, up4, up5), 2 of the checkpoint are not used (encoder_classifier)" in note
    assert torch.equal(whole.state_dict()["stage3.7.branch.0.weight"], encoder_stage["stage3.7.branch.0.weight"])
    with pytest.raises(RtsegError, match="another shape .*encoder_classifier.weight"):
        load_shared_tensors(create_model("enet", encoder_only=True, num_classes=5), encoder_stage, "stage 1")
    with pytest.raises(RtsegError, match="shares no tensor"):
        load_shared_tensors(whole, {"other.weight": torch.zeros(1)}, "stage 1")
