"""The loss terms against hand computations, the official boundary target against OpenCV, DDP
exactness of every term, and which parameters the weight decay reaches."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from rtseg.distributed import DistInfo
from rtseg.errors import RtsegError
from rtseg.training.losses import (BootstrappedCrossEntropy, BoundaryAwareCrossEntropy, BoundaryBCE, CrossEntropy,
                                   DetailLoss, LossRecipe, OhemCrossEntropy, canny_edges, detail_targets,
                                   label_boundaries)
from rtseg.training.losses import recipe as recipe_module
from rtseg.training.optimizer import build_optimizer, decay_groups

LN3 = math.log(3)


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def value(term, outputs, target, class_weights=None, name="out") -> float:
    outputs = outputs if isinstance(outputs, dict) else {name: outputs}
    return LossRecipe({name: term}, class_weights)(outputs, target).total


def two_class_logits(margins) -> torch.Tensor:
    """``[1, 2, H, W]`` logits (a, 0): label 0 has probability sigmoid(a) and loss softplus(-a)."""
    a = torch.tensor(margins, dtype=torch.float32)
    return torch.stack([a, torch.zeros_like(a)])[None]


# ---------------------------------------------------------------- cross entropy

def test_by_weight_sum_is_torchs_weighted_mean_and_ignored_pixels_give_zero():
    logits = torch.randn(2, 19, 6, 8)
    target = torch.randint(0, 19, (2, 6, 8))
    target[0, :2] = 255
    weight = torch.rand(19) + 0.5
    reference = F.cross_entropy(logits, target, weight=weight, ignore_index=255)
    assert value(CrossEntropy(), logits, target, weight) == pytest.approx(float(reference), abs=1e-6)
    assert value(CrossEntropy(), logits, torch.full_like(target, 255), weight) == 0.0  # not NaN


def test_normalisations_on_a_hand_made_batch():
    logits = torch.zeros(1, 3, 2, 2)  # every pixel's cross entropy is ln 3
    target = torch.tensor([[[0, 1], [2, 255]]])
    weights = torch.tensor([1.0, 2.0, 4.0])
    # the weighted sum is (1 + 2 + 4) ln 3
    assert value(CrossEntropy(normalise="by_weight_sum"), logits, target, weights) == pytest.approx(LN3)
    assert value(CrossEntropy(normalise="by_pixels"), logits, target, weights) == pytest.approx(7 * LN3 / 3)
    # TF's SUM_BY_NONZERO_WEIGHTS counts only pixels whose weight is not 0
    zero_first = torch.tensor([0.0, 2.0, 4.0])
    assert value(CrossEntropy(normalise="by_pixels"), logits, target, zero_first) == pytest.approx(6 * LN3 / 2)
    assert value(CrossEntropy(class_weights=False, normalise="by_pixels"), logits, target) == pytest.approx(LN3)
    listed = CrossEntropy(class_weights=[1.0, 2.0, 4.0], normalise="by_pixels")
    assert value(listed, logits, target) == pytest.approx(7 * LN3 / 3)
    with pytest.raises(RtsegError, match="class_weights has 2 values for 3 classes"):
        value(CrossEntropy(class_weights=[1.0, 2.0]), logits, target)


def test_bootstrapped_keeps_the_hardest_fraction_of_each_images_labelled_pixels():
    # image 1: four labelled pixels, the two hardest are a = -2 and a = 0; image 2: two labelled, one kept
    logits = torch.cat([two_class_logits([[3.0, 1.0], [0.0, -2.0]]), two_class_logits([[2.0, -1.0], [5.0, -5.0]])])
    target = torch.tensor([[[0, 0], [0, 0]], [[0, 0], [255, 255]]])
    expected = (softplus(2.0) + softplus(0.0) + softplus(1.0)) / 3
    assert value(BootstrappedCrossEntropy(hardest=0.5), logits, target) == pytest.approx(expected, rel=1e-6)
    # every pixel: the plain mean; a tiny fraction still keeps one pixel per image
    everything = (softplus(-3) + softplus(-1) + softplus(0) + softplus(2) + softplus(-2) + softplus(1)) / 6
    assert value(BootstrappedCrossEntropy(hardest=1.0), logits, target) == pytest.approx(everything, rel=1e-6)
    assert value(BootstrappedCrossEntropy(hardest=0.01), logits, target) == pytest.approx(
        (softplus(2.0) + softplus(1.0)) / 2, rel=1e-6)


def test_ohem_keeps_pixels_below_the_threshold_but_at_least_min_kept_per_image():
    p = torch.tensor([[0.9, 0.6], [0.5, 0.8]])
    logits = two_class_logits(torch.log(p / (1 - p)).tolist())  # probability of label 0 is p
    target = torch.zeros(1, 2, 2, dtype=torch.long)
    nll = {q: -math.log(q) for q in (0.9, 0.6, 0.5, 0.8)}
    assert value(OhemCrossEntropy(threshold=0.7, min_kept=1), logits, target) == pytest.approx(
        (nll[0.6] + nll[0.5]) / 2, rel=1e-5)
    # fewer than min_kept below the threshold: the min_kept least probable
    assert value(OhemCrossEntropy(threshold=0.7, min_kept=3), logits, target) == pytest.approx(
        (nll[0.6] + nll[0.5] + nll[0.8]) / 3, rel=1e-5)
    # an image with no more labelled pixels than min_kept keeps them all
    target[0, 0] = 255
    assert value(OhemCrossEntropy(threshold=0.7, min_kept=3), logits, target) == pytest.approx(
        (nll[0.5] + nll[0.8]) / 2, rel=1e-5)
    # class weights enter the losses; by_pixels divides by the kept count (HRNet's mean)
    target = torch.tensor([[[0, 1], [0, 0]]])
    weights = torch.tensor([2.0, 3.0])
    kept = OhemCrossEntropy(threshold=0.7, min_kept=0, class_weights=True)
    # pixel (0,1) is now class 1 with probability 0.4 (< 0.7); pixel (1,0) has 0.5
    assert value(kept, logits, target, weights) == pytest.approx((3 * -math.log(0.4) + 2 * nll[0.5]) / 2, rel=1e-5)
    by_weight = OhemCrossEntropy(threshold=0.7, min_kept=0, class_weights=True, normalise="by_weight_sum")
    assert value(by_weight, logits, target, weights) == pytest.approx((3 * -math.log(0.4) + 2 * nll[0.5]) / 5, rel=1e-5)


def test_ohem_equals_the_loss_threshold_rule_of_bisenet_and_stdc_without_class_weights():
    """CoinCheung/BiSeNet and STDC-Seg's OhemCELoss: losses above -log(thresh), or the n_min largest."""
    torch.manual_seed(1)
    logits, target = torch.randn(3, 5, 9, 11) * 3, torch.randint(0, 5, (3, 9, 11))
    for n_min in (4, 60):
        expected = []
        for image in range(3):
            losses = F.cross_entropy(logits[image:image + 1], target[image:image + 1], reduction="none").flatten()
            hard = losses[losses > -math.log(0.7)]
            expected.append(hard if hard.numel() >= n_min else losses.sort(descending=True).values[:n_min])
        reference = torch.cat(expected).mean()
        assert value(OhemCrossEntropy(threshold=0.7, min_kept=n_min), logits, target) == pytest.approx(
            float(reference), rel=1e-5)


# ---------------------------------------------------------------- PIDNet boundaries

def test_boundary_target_is_opencvs_canny_then_dilation():
    """PIDNet's datasets/base_dataset.py: cv2.Canny(label, 0.1, 0.2), cv2.dilate with a 4x4 kernel."""
    import cv2
    from rtseg.data.labels import LABEL_TO_TRAIN
    from rtseg.data.scene import render_street_scene

    rng = np.random.default_rng(0)
    maps = [rng.integers(0, 20, (17, 23)).astype(np.uint8) for _ in range(3)]
    maps[0][maps[0] == 19] = 255
    scene_labels = render_street_scene(np.random.default_rng(3), (96, 160)).label_ids
    maps.append(LABEL_TO_TRAIN[scene_labels])
    for labels in maps:
        edges = cv2.Canny(labels, 0.1, 0.2) > 0
        target = torch.from_numpy(labels.astype(np.int64))[None]
        assert np.array_equal(canny_edges(target)[0].numpy(), edges)
        dilated = cv2.dilate(edges.astype(np.uint8) * 255, np.ones((4, 4), np.uint8), iterations=1) > 50
        assert np.array_equal(label_boundaries(target, 4)[0, 0].numpy() > 0, dilated)
        assert edges.any()


def test_boundary_bce_balances_boundary_and_other_pixels_by_each_others_share():
    target = torch.zeros(1, 8, 8, dtype=torch.long)
    target[:, :, 4:] = 1  # a vertical change between columns 3 and 4
    boundary = label_boundaries(target, 4)[0, 0]
    expected_band = torch.zeros(8, 8)
    expected_band[:, 2:6] = 1  # Canny marks column 3; cv2's 4x4 dilation spreads it 1 left, 2 right
    assert torch.equal(boundary, expected_band)
    logits = torch.where(expected_band > 0, 2.0, -1.0)[None, None]
    on, off = 32, 32
    # boundary pixels weigh off / total, the others on / total; the mean over the 64 pixels
    expected = (off / 64 * on * softplus(-2.0) + on / 64 * off * softplus(-1.0)) / 64
    assert value(BoundaryBCE(), logits, target, name="boundary") == pytest.approx(expected, rel=1e-6)
    with pytest.raises(RtsegError, match=r"must be \[N, 1, H, W\]"):
        value(BoundaryBCE(), torch.zeros(1, 2, 8, 8), target, name="boundary")


def test_boundary_aware_loss_is_the_semantic_loss_where_the_boundary_head_is_sure():
    p = torch.tensor([[0.9, 0.6], [0.5, 0.8]])
    main = two_class_logits(torch.log(p / (1 - p)).tolist())
    gate = torch.tensor([[[[3.0, -3.0], [3.0, 0.0]]]])  # sigmoid above 0.8 at (0, 0) and (1, 0) only
    target = torch.zeros(1, 2, 2, dtype=torch.long)
    term = BoundaryAwareCrossEntropy(threshold=1.0, min_kept=0)
    outputs = {"out": main, "boundary": gate}
    recipe = LossRecipe({"bas": BoundaryAwareCrossEntropy(output="out", threshold=1.0, min_kept=0),
                         "boundary": BoundaryBCE()})
    assert recipe(outputs, target).terms["bas"] == pytest.approx((-math.log(0.9) - math.log(0.5)) / 2, rel=1e-5)
    assert term.reads("bas") == {"bas", "boundary"}


# ---------------------------------------------------------------- STDC details

def test_detail_target_is_stdcs_laplacian_pyramid_on_a_hand_made_square():
    labels = torch.zeros(1, 8, 8, dtype=torch.long)
    labels[:, 1:5, 1:5] = 1
    # stride 1: the Laplacian is positive on the square's inner ring
    ring = torch.zeros(8, 8)
    ring[1:5, 1:5] = 1
    ring[2:4, 2:4] = 0
    # stride 2 samples even pixels: (2, 4), (4, 2) and (4, 4) are on the ring; nearest up-sampling fills 2x2
    coarse = torch.zeros(8, 8)
    coarse[2:4, 4:6] = coarse[4:6, 2:4] = coarse[4:6, 4:6] = 1
    # stride 4 adds (4, 4) -> the block 4:8, 4:8, but 0.1 alone is not above the 0.1 threshold
    expected = ((ring + coarse) > 0).float()
    assert torch.equal(detail_targets(labels)[0, 0], expected)

    logits = torch.zeros(1, 1, 8, 8)  # sigmoid 0.5 everywhere, BCE ln 2
    t = float(expected.sum())
    dice = 1 - (2 * 0.5 * t + 1) / (0.5 * 64 + t + 1)
    assert value(DetailLoss(), logits, labels, name="detail") == pytest.approx(math.log(2) + dice, rel=1e-6)
    assert value(DetailLoss(bce_weight=0.0), logits, labels, name="detail") == pytest.approx(dice, rel=1e-6)


# ---------------------------------------------------------------- sizes, outputs, DDP

def test_outputs_smaller_than_the_labels_need_a_resize_rule():
    small = torch.randn(2, 3, 4, 6)
    target = torch.randint(0, 3, (2, 8, 12))
    with pytest.raises(RtsegError, match=r"loss.out: output 'out' is 4x6 but the labels are 8x12; set loss.out.resize"):
        value(CrossEntropy(class_weights=False), small, target)
    nearest = target[:, ::2, ::2]  # nearest down-sampling by 2 takes the even rows and columns
    assert value(CrossEntropy(class_weights=False, resize="nearest_labels"), small, target) == pytest.approx(
        float(F.cross_entropy(small, nearest)), rel=1e-6)
    for corners in (False, True):
        up = F.interpolate(small, size=(8, 12), mode="bilinear", align_corners=corners)
        resize = "bilinear_align_corners" if corners else "bilinear"
        assert value(CrossEntropy(class_weights=False, resize=resize), small, target) == pytest.approx(
            float(F.cross_entropy(up, target)), rel=1e-6)


def test_every_output_needs_a_term_and_every_term_an_output():
    target = torch.randint(0, 3, (1, 4, 4))
    outputs = {"out": torch.randn(1, 3, 4, 4), "aux": torch.randn(1, 3, 4, 4)}
    with pytest.raises(RtsegError, match=r"returns 'aux' in training mode, which no loss term reads"):
        LossRecipe({"out": CrossEntropy(class_weights=False)})(outputs, target)
    with pytest.raises(RtsegError, match=r"loss.detail reads the network output 'detail'"):
        LossRecipe({"out": CrossEntropy(class_weights=False), "aux": CrossEntropy(class_weights=False),
                    "detail": DetailLoss()})(outputs, target)
    with pytest.raises(RtsegError, match="no terms"):
        LossRecipe({})


def zoo_recipe() -> dict:
    """Every kind of term at once, as a PIDNet/STDC-like recipe would combine them."""
    return {
        "out": OhemCrossEntropy(threshold=0.7, min_kept=5, class_weights=True),
        "aux": CrossEntropy(weight=0.4, normalise="by_pixels"),
        "aux2": BootstrappedCrossEntropy(hardest=0.3, resize="bilinear"),
        "boundary": BoundaryBCE(weight=20.0),
        "bas": BoundaryAwareCrossEntropy(output="out", min_kept=3),
        "detail": DetailLoss(resize="bilinear_align_corners"),
        "plain": CrossEntropy(output="out"),
    }


def test_two_processes_compute_the_gradient_of_one_process_for_every_term(monkeypatch):
    torch.manual_seed(0)
    target = torch.randint(0, 4, (4, 12, 16))
    target[1, :3] = 255
    target[3] = 255  # an image with nothing labelled
    leaves = {"out": torch.randn(4, 4, 12, 16), "aux": torch.randn(4, 4, 12, 16), "aux2": torch.randn(4, 4, 6, 8),
              "boundary": torch.randn(4, 1, 12, 16) * 2, "detail": torch.randn(4, 1, 6, 8)}
    weights = torch.rand(4) + 0.5

    def run(rank_slices, world):
        outputs = {k: v.clone().requires_grad_() for k, v in leaves.items()}
        recipe = [LossRecipe(zoo_recipe(), weights, DistInfo(rank=r, world_size=world)) for r in range(world)]
        # what each rank adds to the all-reduce, gathered first so that each rank can see the sum
        vectors = []
        monkeypatch.setattr(recipe_module, "all_reduce_sum", lambda t, info: vectors.append(t.clone()) or t)
        for r, part in enumerate(rank_slices):
            recipe[r]({k: v[part] for k, v in outputs.items()}, target[part])
        summed = torch.stack(vectors).sum(0)
        monkeypatch.setattr(recipe_module, "all_reduce_sum", lambda t, info: summed.clone())
        logged, total = [], 0
        for r, part in enumerate(rank_slices):
            result = recipe[r]({k: v[part] for k, v in outputs.items()}, target[part])
            total = total + result.loss / world  # DistributedDataParallel averages the ranks' gradients
            logged.append(result)
        total.backward()
        return logged, {k: v.grad for k, v in outputs.items()}

    single, single_grads = run([slice(0, 4)], 1)
    ddp, ddp_grads = run([slice(0, 2), slice(2, 4)], 2)
    for result in ddp:
        assert result.total == pytest.approx(single[0].total, rel=1e-5)
        assert result.terms == pytest.approx(single[0].terms, rel=1e-5)
    for name, grad in single_grads.items():
        assert torch.allclose(ddp_grads[name], grad, atol=1e-7, rtol=1e-4), name
        assert grad.abs().sum() > 0, name  # every output is trained
    assert set(single[0].terms) == set(zoo_recipe())


# ---------------------------------------------------------------- weight decay

def test_kernels_decay_convolution_and_linear_weights_only():
    from rtseg.models import create_model

    enet = create_model("enet")
    names = {id(p): n for n, p in enet.named_parameters()}
    decayed, kept = (({names[id(p)] for p in g["params"]}, g["weight_decay"])
                     for g in decay_groups(enet, "kernels", 2e-4))
    assert decayed[1] == 2e-4 and kept[1] == 0.0
    assert {"initial.conv.weight", "classifier.weight", "up4.up.weight", "stage2.2.branch.3.weight"} <= decayed[0]
    assert {"initial.conv.bias", "classifier.bias", "initial.bn.weight", "initial.bn.bias", "initial.act.weight",
            "up4.up.bias"} <= kept[0]
    modules = dict(enet.named_modules())
    for name in decayed[0]:
        module = modules[name.rpartition(".")[0]]
        assert isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)) and name.endswith(".weight"), name
    assert decayed[0] | kept[0] == set(names.values()) and not decayed[0] & kept[0]
    (everything,) = decay_groups(enet, "all", 2e-4)
    assert len(everything["params"]) == len(names) and everything["weight_decay"] == 2e-4

    mlp = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4), nn.PReLU())
    groups = decay_groups(mlp, "kernels", 1e-4)
    assert [len(g["params"]) for g in groups] == [1, 4]  # the linear weight; its bias, the norm, the slope
    assert groups[0]["params"][0] is mlp[0].weight


def test_parameters_without_decay_do_not_shrink():
    """One Adam step with no data gradient: only the decayed kernels move."""
    from rtseg.training.config import load_config

    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2))
    for kind, moved in (("kernels", {"0.weight"}), ("all", {"0.weight", "0.bias", "1.weight"})):
        net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2))
        net.load_state_dict(model.state_dict())
        nn.init.constant_(net[1].bias, 0.0)  # a zero parameter stays zero under any decay
        optimizer = build_optimizer(load_config(None, [f"optim.decay={kind}", "optim.weight_decay=0.1"]).optim, net)
        before = {n: p.detach().clone() for n, p in net.named_parameters()}
        for p in net.parameters():
            p.grad = torch.zeros_like(p)
        optimizer.step()
        changed = {n for n, p in net.named_parameters() if not torch.equal(p, before[n])}
        assert changed == moved, kind
