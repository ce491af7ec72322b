"""Training configs: typed keys, overrides, inheritance, and the shipped configs/."""

from __future__ import annotations

from pathlib import Path

import pytest

from rtseg.training.config import TrainConfig, config_differences, load_config
from rtseg.training.losses import BootstrappedCrossEntropy, CrossEntropy, OhemCrossEntropy
from rtseg.errors import RtsegError

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
# Table 1 of the paper (NOTES.md): 7 fine-only rows, 2 coarse rows as (pre-training, fine-tuning).
TABLE1_FINE = ("skipnet-mobilenet_v1", "skipnet-shufflenet_v1", "linknet-resnet18", "unet-mobilenet_v1",
               "unet-shufflenet_v1", "dilation-mobilenet_v1", "dilation-shufflenet_v1")
TABLE1_COARSE = ("skipnet-mobilenet_v1", "skipnet-shufflenet_v1")


def test_defaults_are_the_paper_recipe():
    config = load_config()
    assert config.optim.name == "adam" and config.optim.lr == 1e-4 and config.optim.weight_decay == 5e-4
    assert config.data.class_weights == "enet" and config.model.pretrained is True
    assert config.data.crop == (512, 1024)
    # the authors' TF choices: decay on kernels only, the weighted sum over the labelled pixels' count
    assert config.optim.decay == "kernels"
    assert list(config.loss) == ["out"] and config.loss["out"] == CrossEntropy(normalise="by_pixels")
    recipe = load_config(CONFIGS / "paper_recipe.yaml")
    assert recipe.optim == config.optim and recipe.loss == config.loss


@pytest.mark.parametrize("override, key", [
    ("optim.lr=fast", "optim.lr"),
    ("train.batch_size=2.5", "train.batch_size"),
    ("train.batch_size=true", "train.batch_size"),
    ("model.pretrained=3", "model.pretrained"),
    ("data.crop=[1, 2, 3]", "data.crop"),
    ("train.precision=fp8", "train.precision"),
    ("data.synthetic.sise=[64, 128]", "data.synthetic.sise"),
    ("optim.learning_rate=0.1", "optim.learning_rate"),
    ("nonsense=1", "nonsense"),
    ("optim.decay=biases", "optim.decay"),
    ("loss.out.normalise=by_mean", "loss.out.normalise"),
    ("loss.out={type: focal}", "loss.out.type"),
    ("loss.aux={weight: 0.4}", "loss.aux needs a type"),
    ("loss.out={type: ohem_cross_entropy, hardest: 0.25}", "loss.out.hardest"),
    ("loss.out={type: ohem_cross_entropy, threshold: 1.5}", "loss.out.threshold"),
    ("loss.out={type: bootstrapped_cross_entropy, hardest: 0}", "loss.out.hardest"),
    (["model.num_classes=19", "loss.out.class_weights=[1, 2]"], "loss.out.class_weights has 2 values"),
    ("loss.out.resize=bicubic", "loss.out.resize"),
    ("loss.out=null", "loss has no terms"),
    ("model.init_keys=some", "model.init_keys"),
])
def test_wrong_key_or_type_is_refused_with_the_key_name(override, key):
    with pytest.raises(RtsegError, match=key.replace(".", r"\.").replace("[", r"\[")):
        load_config(None, override if isinstance(override, list) else [override])


def test_overrides_are_typed_and_iterations_replace_epochs():
    config = load_config(None, ["optim.lr=3e-4", "data.crop=[64, 128]", "model.options={width: 0.5}",
                                "model.pretrained=weights/enc.pth", "train.iterations=50"])
    assert config.optim.lr == pytest.approx(3e-4) and isinstance(config.optim.lr, float)
    assert config.data.crop == (64, 128)
    assert config.model.options == {"width": 0.5}
    assert config.model.pretrained == "weights/enc.pth"
    assert config.train.iterations == 50 and config.train.epochs is None


def test_base_inheritance_and_both_budgets_refused(tmp_path):
    (tmp_path / "parent.yaml").write_text("model: {name: unet-resnet18, options: {fusion: concat}}\n"
                                          "optim: {lr: 0.01}\ntrain: {epochs: 3}\n")
    (tmp_path / "child.yaml").write_text("base: parent.yaml\nmodel: {options: {}}\ntrain: {batch_size: 2}\n")
    config = load_config(tmp_path / "child.yaml")
    assert config.model.name == "unet-resnet18" and config.model.options == {}  # options replaced whole
    assert config.optim.lr == 0.01 and config.train.epochs == 3 and config.train.batch_size == 2
    (tmp_path / "both.yaml").write_text("train: {epochs: 3, iterations: 10}\n")
    with pytest.raises(RtsegError, match="exactly one of train.epochs and train.iterations"):
        load_config(tmp_path / "both.yaml")
    (tmp_path / "loop.yaml").write_text("base: loop.yaml\n")
    with pytest.raises(RtsegError, match="loop"):
        load_config(tmp_path / "loop.yaml")
    with pytest.raises(RtsegError, match="missing.yaml"):
        load_config(tmp_path / "missing.yaml")


def test_loss_terms_inherit_key_by_key_and_a_new_type_replaces_the_term(tmp_path):
    (tmp_path / "parent.yaml").write_text(
        "loss:\n  out: {type: cross_entropy, normalise: by_weight_sum, weight: 2.0}\n"
        "  aux: {type: ohem_cross_entropy, weight: 0.4, min_kept: 10}\n")
    (tmp_path / "child.yaml").write_text(
        "base: parent.yaml\nloss:\n  out: {weight: 1.5}\n  aux: {type: bootstrapped_cross_entropy}\n"
        "  boundary: {type: boundary_bce, weight: 20}\n")
    config = load_config(tmp_path / "child.yaml")
    assert config.loss["out"] == CrossEntropy(normalise="by_weight_sum", weight=1.5)  # merged into the parent's
    assert config.loss["aux"] == BootstrappedCrossEntropy()  # a new type: nothing of the OHEM term is kept
    assert config.loss["boundary"].weight == 20.0 and config.loss["boundary"].type == "boundary_bce"
    dropped = load_config(tmp_path / "child.yaml", ["loss.aux=null", "loss.out.class_weights=false"])
    assert list(dropped.loss) == ["out", "boundary"] and dropped.loss["out"].class_weights is False
    listed = load_config(None, [f"loss.out.class_weights=[{', '.join(['1.5'] * 19)}]"])
    assert listed.loss["out"].class_weights == [1.5] * 19
    # a file without a loss section keeps the default term, and --set changes it key by key
    (tmp_path / "plain.yaml").write_text("optim: {lr: 0.01}\n")
    assert load_config(tmp_path / "plain.yaml", ["loss.out.normalise=by_weight_sum"]).loss["out"] == CrossEntropy()


def test_round_trip_through_a_dict_and_differences():
    config = load_config(None, ["data.synthetic={train: 4}", "data.root=null"])
    again = TrainConfig.from_dict(config.to_dict())
    assert again == config
    terms = load_config(None, ["loss.aux={type: ohem_cross_entropy, weight: 0.4, min_kept: 7}"])
    assert TrainConfig.from_dict(terms.to_dict()) == terms
    assert terms.to_dict()["loss"]["aux"]["type"] == "ohem_cross_entropy"
    assert terms.loss["aux"] == OhemCrossEntropy(weight=0.4, min_kept=7)
    changed = load_config(None, ["data.synthetic={train: 4}", "data.root=null", "optim.lr=1"]).to_dict()
    assert config_differences(config.to_dict(), changed) == ["optim.lr"]


def test_shipped_configs_cover_table1_with_the_paper_recipe():
    from rtseg.models.factory import split_model_name
    from rtseg.models.registry import MODELS

    names = {path.stem for path in CONFIGS.glob("*.yaml")}
    for model in TABLE1_FINE:
        assert model in names
    for model in TABLE1_COARSE:
        coarse = load_config(CONFIGS / f"{model}-coarse.yaml")
        fine = load_config(CONFIGS / f"{model}-coarse-fine.yaml")
        assert coarse.data.annotation == "coarse" and coarse.data.train_split == "train_extra"
        assert fine.data.annotation == "fine"
        assert fine.model.init_from == f"runs/{model}-coarse/last.pt"  # the default --out of stage 1
    assert "skipnet-vgg16" in names  # FCN8s, Table 3
    paper = load_config(CONFIGS / "paper_recipe.yaml")
    zoo = {name for name in MODELS.names() if MODELS.get(name).__module__.startswith("rtseg.models.zoo.")}
    own_recipes = {"synthetic_quick", "skipnet-mobilenet_v1-coarse", "skipnet-shufflenet_v1-coarse",
                   "enet_recipe", "enet_recipe-encoder"}
    for path in sorted(CONFIGS.glob("*.yaml")):
        config = load_config(path)
        if config.model.name in zoo:
            continue  # today's networks with their own published recipes (tests/test_zoo_recipes.py)
        if path.stem not in own_recipes:
            assert (config.optim, config.loss) == (paper.optim, paper.loss), path
            assert (config.optim.name, config.optim.lr, config.optim.weight_decay) == ("adam", 1e-4, 5e-4), path
        if path.stem == "synthetic_quick":
            continue
        assert config.data.class_weights == "enet", path
        # Cityscapes' configs validate at the paper's 512x1024; another dataset's name it first (camvid-...)
        other = config.data.dataset not in (None, "cityscapes")
        assert other or config.data.val_size == (512, 1024), path
        stem = path.stem.removeprefix(f"{config.data.dataset}-") if other else path.stem
        decoder, encoder = split_model_name(config.model.name)  # a registered model
        if encoder is None:  # a whole reference model (Table 3): named after its file
            assert path.stem.split("_recipe")[0] == decoder, path
            continue
        # ImageNet weights: downloaded (true), a local file (ShuffleNet: Megvii's), or the coarse stage's
        assert config.model.pretrained is True or isinstance(config.model.pretrained, str) \
            or config.model.init_from, path
        assert stem.startswith(f"{decoder}-{encoder}") or stem == "paper_recipe", path
    assert {"enet", "segnet"} <= names  # Table 3's reference models, in the same harness


@pytest.mark.parametrize("model, decay, tf_batch", [("skipnet-mobilenet_v1", 5e-5, 4), ("skipnet-shufflenet_v1", 4e-5, 8)])
def test_coarse_stage_is_the_authors_bootstrapped_recipe_and_fine_tuning_the_papers(model, decay, tf_batch):
    # MSiam/TFSegmentation config/experiments_config/fcn8s_*_traincoarse.yaml: weighted_loss False
    # (bootstrapped_ce_loss(ce, 0.25)), weight_decay 5e-5 / 4e-5, batch 4 / 8
    coarse = load_config(CONFIGS / f"{model}-coarse.yaml")
    assert coarse.loss == {"out": BootstrappedCrossEntropy(hardest=0.25, weight=float(tf_batch))}
    assert coarse.optim.weight_decay == decay and coarse.optim.decay == "kernels"
    fine = load_config(CONFIGS / f"{model}-coarse-fine.yaml")
    paper = load_config(CONFIGS / "paper_recipe.yaml")
    assert (fine.optim, fine.loss) == (paper.optim, paper.loss)


def test_enet_recipe_is_enets_own_two_stage_schedule():
    # ENet paper and e-lab/ENet-training train/opts.lua: Adam 5e-4, weight decay 2e-4 on every
    # parameter, batch 10; the encoder first (encoder.lua), then the whole network (decoder.lua)
    encoder = load_config(CONFIGS / "enet_recipe-encoder.yaml")
    whole = load_config(CONFIGS / "enet_recipe.yaml")
    for config in (encoder, whole):
        assert (config.optim.name, config.optim.lr, config.optim.weight_decay) == ("adam", 5e-4, 2e-4)
        assert config.optim.decay == "all" and config.train.batch_size == 10
        assert config.model.name == "enet" and config.model.pretrained is None
        assert config.loss["out"].normalise == "by_weight_sum" and config.loss["out"].class_weights is True
    assert encoder.model.options == {"encoder_only": True} and encoder.model.init_from is None
    assert encoder.loss["out"].resize == "nearest_labels"
    assert whole.model.options == {} and whole.loss["out"].resize == "none"
    assert whole.model.init_from == "runs/enet_recipe-encoder/last.pt" and whole.model.init_keys == "shared"
