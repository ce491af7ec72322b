"""Every config in configs/ starts: one training step of it, random weights, synthetic images.

``rtseg train CONFIG --dry-run`` (``rtseg.training.dry_run``) builds the config's model, data
pipeline, loss terms, optimizer and schedule as a run would; only the weights (no ImageNet
download, no local weights file, no earlier stage's checkpoint) and the images are replaced.
The crops are shrunk to 64x128 and the batch to 2; on one core the configs take about a second
each, except the four VGG16-based ones (10-20 s each: 134M parameters with fc6/fc7 as
convolutions, and Adam's moments for all of them), marked slow.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from rtseg.cli import main
from rtseg.errors import RtsegError
from rtseg.training.config import load_config
from rtseg.training.dry_run import dry_run

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
ALL = sorted(CONFIGS.glob("*.yaml"))
TINY = ["data.crop=[64, 128]", "train.batch_size=2"]
SLOW = {"skipnet-vgg16", "unet-vgg16", "dilation-vgg16", "segnet"}
SINGLE_THREAD = True  # tiny steps (conftest.py)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """Fine and coarse labels, train and train_extra: every split and annotation a config names."""
    from rtseg.data.synthetic import generate_synthetic_cityscapes

    root = tmp_path_factory.mktemp("dry-run-data")
    generate_synthetic_cityscapes(root, train=2, val=0, test=0, train_extra=2, coarse=True, size=(64, 128),
                                  seed=0, progress=False)
    return root


@pytest.mark.parametrize("path", [pytest.param(p, id=p.stem, marks=[pytest.mark.slow] if p.stem in SLOW else [])
                                  for p in ALL])
def test_every_config_starts(path, synthetic):
    config = load_config(path, TINY)
    # the shared Cityscapes-layout images; another dataset's config generates its own layout
    report = dry_run(config, data_root=synthetic if config.data.dataset in (None, "cityscapes") else None)
    assert math.isfinite(report.loss) and report.loss > 0
    assert report.images == 2 and report.model == config.model.name
    out = report.outputs["out"]
    expected_classes = config.model.num_classes or (11 if config.data.dataset == "camvid" else 19)  # the dataset's
    assert out[:2] == (2, expected_classes)
    if config.model.options.get("encoder_only"):  # ENet's encoder stage: 1/8 logits against down-sampled labels
        assert out[2:] == (8, 16)
    else:
        assert out[2:] == (64, 128)
    assert set(report.terms) == set(config.loss)
    decayed = [g for g in report.decay if g[0] > 0]
    assert len(report.decay) == (1 if config.optim.decay == "all" else 2) and decayed[0][0] == config.optim.weight_decay
    assert sum(n for _, _, n in report.decay) == report.parameters
    if config.model.pretrained:
        assert report.replaced[0] in ("ImageNet weights of the encoder", f"model.pretrained {config.model.pretrained}")


def test_the_dry_run_command_generates_its_own_images_and_writes_nothing(tmp_path, monkeypatch, capsys):
    import tempfile

    monkeypatch.chdir(tmp_path)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    # the coarse stage reads coarse labels of train_extra, and names Megvii's ShuffleNet file
    args = ["train", str(CONFIGS / "skipnet-shufflenet_v1-coarse.yaml"), "--dry-run"]
    assert main(args + [f"--set={item}" for item in TINY]) == 0
    printed = capsys.readouterr().out
    assert "it starts" in printed and "skipnet-shufflenet_v1" in printed and "nothing was written" in printed
    assert "model.pretrained ${RTSEG_WEIGHTS:-weights}/shufflenet_v1_group3_1.0x.pth.tar" in printed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scratch"] and not list(scratch.iterdir())


def test_a_config_that_cannot_train_fails_its_dry_run(synthetic, capsys):
    # ENet's encoder stage returns 1/8 logits: without its resize rule the loss cannot meet the labels
    config = load_config(CONFIGS / "enet_recipe-encoder.yaml", TINY + ["loss.out.resize=none"])
    with pytest.raises(RtsegError, match=r"loss.out: output 'out' is 8x16 but the labels are 64x128"):
        dry_run(config, data_root=synthetic)
    assert main(["train", str(CONFIGS / "enet.yaml"), "--dry-run", "--resume"]) != 0
    assert "--dry-run starts a config afresh" in capsys.readouterr().err
