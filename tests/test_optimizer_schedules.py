"""``optim.warmup_*`` and ``optim.lr_multipliers`` (rtseg.training.optimizer), the pieces of the zoo
recipes that the paper's recipe does not use, against the official codes' formulas:

* STDC-Seg (MichaelFan01/STDC-Seg at 59ff37f, ``optimizer_loss.py``, ``Optimizer.get_lr``):
  ``warmup_start_lr * (lr0 / warmup_start_lr) ** (it / W)`` while ``it <= W``, then
  ``lr0 * (1 - (it - W) / (T - W)) ** power``; 10 x that for the FFM and the heads;
* CoinCheung/BiSeNet (6b4b67a8, ``lib/lr_scheduler.py``, ``WarmupPolyLrScheduler``):
  ``warmup_ratio ** (1 - it / W)`` ('exp') while ``it < W``, then ``(1 - (it - W) / (T - W)) ** power``;
* PaddleSeg (d7975e7c, ``paddleseg/cvlibs/builder.py``: ``LinearWarmup(PolynomialDecay(decay_steps =
  iters - warmup_iters))``): ``start + (lr - start) * it / W``, then poly over ``it - W``.
"""

from __future__ import annotations

import io

import pytest
import torch
from torch import nn

from rtseg.errors import RtsegError
from rtseg.training.config import load_config
from rtseg.training.optimizer import build_optimizer, build_scheduler, parameter_groups

SINGLE_THREAD = True


class Net(nn.Module):
    """Children named like the zoo networks' heads: ``aux`` must not catch ``aux2``."""

    def __init__(self):
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
        self.head = nn.Conv2d(4, 2, 1)
        self.aux = nn.Conv2d(4, 2, 1)
        self.aux2 = nn.Conv2d(4, 2, 1)


def rates(overrides: list[str], total: int, model: nn.Module | None = None) -> list[list[float]]:
    """Every group's learning rate at each of ``total`` steps, as the trainer steps them."""
    optim = load_config(None, ["optim.name=sgd"] + overrides).optim
    optimizer = build_optimizer(optim, model or Net())
    scheduler = build_scheduler(optim, optimizer, total)
    seen = []
    for _ in range(total):
        seen.append([group["lr"] for group in optimizer.param_groups])
        optimizer.step()
        scheduler.step()
    return seen


def test_exponential_warmup_then_poly_is_stdc_segs_schedule_heads_at_ten_times():
    lr0, start, warmup, total, power = 0.01, 1e-5, 10, 50, 0.9
    factor = (lr0 / start) ** (1.0 / warmup)
    official = [start * factor ** it if it <= warmup else lr0 * (1 - (it - warmup) / (total - warmup)) ** power
                for it in range(total)]
    seen = rates([f"optim.lr={lr0}", f"optim.warmup_iters={warmup}", f"optim.warmup_ratio={start / lr0}",
                  "optim.warmup_mode=exp", "optim.schedule=poly", f"optim.poly_power={power}",
                  "optim.lr_multipliers={head: 10, aux: 10, aux2: 10}"], total)
    for step, (ours, theirs) in enumerate(zip(seen, official)):
        assert ours[0] == pytest.approx(theirs, rel=1e-9), step  # the backbone's groups come first
        assert sorted(ours) == pytest.approx(sorted([theirs] * 2 + [10 * theirs] * 2), rel=1e-9), step


def test_exponential_warmup_is_coincheungs_warmup_poly_scheduler():
    warmup, total, power, ratio = 7, 30, 0.9, 0.1
    official = [ratio ** (1 - it / warmup) if it < warmup else (1 - (it - warmup) / (total - warmup)) ** power
                for it in range(total)]
    seen = rates(["optim.lr=0.005", f"optim.warmup_iters={warmup}", f"optim.warmup_ratio={ratio}",
                  "optim.warmup_mode=exp", "optim.schedule=poly"], total)
    assert [s[0] for s in seen] == pytest.approx([0.005 * f for f in official], rel=1e-9)


def test_linear_warmup_is_paddlesegs_linear_warmup_over_polynomial_decay():
    lr, start, warmup, total, end_lr = 0.005, 1e-5, 5, 25, 0.0  # cityscapes.yml: end_lr 0
    official = [start + (lr - start) * it / warmup if it < warmup
                else (lr - end_lr) * (1 - (it - warmup) / (total - warmup)) ** 0.9 + end_lr for it in range(total)]
    seen = rates([f"optim.lr={lr}", f"optim.warmup_iters={warmup}", f"optim.warmup_ratio={start / lr}",
                  "optim.warmup_mode=linear", "optim.schedule=poly"], total)
    assert [s[0] for s in seen] == pytest.approx(official, rel=1e-9)


def test_a_constant_schedule_stays_at_the_rate_after_its_warmup():
    seen = [s[0] for s in rates(["optim.lr=0.1", "optim.warmup_iters=4", "optim.warmup_ratio=0.5"], 10)]
    assert seen[:4] == pytest.approx([0.05, 0.0625, 0.075, 0.0875]) and seen[4:] == pytest.approx([0.1] * 6)


def test_the_warmup_schedule_resumes_from_a_checkpointed_state():
    """The trainer saves ``scheduler.state_dict()`` in last.pt and reads it back with weights_only=True."""
    optim = load_config(None, ["optim.name=sgd", "optim.warmup_iters=5", "optim.warmup_mode=exp",
                               "optim.schedule=poly", "optim.lr_multipliers={head: 10}"]).optim
    net = Net()
    optimizer = build_optimizer(optim, net)
    scheduler = build_scheduler(optim, optimizer, 20)
    for _ in range(7):
        optimizer.step()
        scheduler.step()
    buffer = io.BytesIO()
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}, buffer)
    expected = []
    for _ in range(5):
        optimizer.step()
        scheduler.step()
        expected.append([g["lr"] for g in optimizer.param_groups])

    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    optimizer = build_optimizer(optim, net)
    scheduler = build_scheduler(optim, optimizer, 20)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    resumed = []
    for _ in range(5):
        optimizer.step()
        scheduler.step()
        resumed.append([g["lr"] for g in optimizer.param_groups])
    assert resumed == expected


def test_lr_multipliers_reach_their_modules_only_and_the_longest_path_wins():
    net = Net()
    optim = load_config(None, ["optim.lr=0.1", "optim.decay=kernels",
                               "optim.lr_multipliers={aux: 10, backbone: 0.5, backbone.1: 2}"]).optim
    names = {id(p): n for n, p in net.named_parameters()}
    lr_of = {names[id(p)]: group["lr"] for group in parameter_groups(net, optim) for p in group["params"]}
    assert lr_of == pytest.approx({"backbone.0.weight": 0.05, "backbone.0.bias": 0.05, "backbone.1.weight": 0.2,
                                   "backbone.1.bias": 0.2, "head.weight": 0.1, "head.bias": 0.1,
                                   "aux.weight": 1.0, "aux.bias": 1.0, "aux2.weight": 0.1, "aux2.bias": 0.1})
    groups = parameter_groups(net, optim)
    assert groups[0]["lr"] == 0.1  # the trainer logs group 0's rate: the base rate
    decay = {names[id(p)]: g["weight_decay"] for g in groups for p in g["params"]}
    assert decay["aux.weight"] == optim.weight_decay and decay["aux.bias"] == 0.0  # split by decay too

    # one SGD step on unit gradients (no decay) moves each parameter by its own rate
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    for p in net.parameters():
        p.grad = torch.ones_like(p)
    optim.weight_decay = 0.0
    optimizer = build_optimizer(optim, net)
    optimizer.step()
    for name, p in net.named_parameters():
        assert torch.allclose(before[name] - p.detach(), torch.full_like(p, lr_of[name])), name


def test_recipe_option_mistakes_are_refused_with_their_key():
    with pytest.raises(RtsegError, match=r"'heads' names no parameters of Net \(its modules: backbone, head, aux, aux2\)"):
        build_optimizer(load_config(None, ["optim.lr_multipliers={heads: 10}"]).optim, Net())
    with pytest.raises(RtsegError, match=r"optim.warmup_iters \(20\) must be fewer than the run's 20 steps"):
        rates(["optim.warmup_iters=20"], 20)
    with pytest.raises(RtsegError, match=r"optim.warmup_ratio must be in \(0, 1\], got 0.0"):
        load_config(None, ["optim.warmup_ratio=0"])
    with pytest.raises(RtsegError, match=r"optim.warmup_iters must be 0 or more, got -1"):
        load_config(None, ["optim.warmup_iters=-1"])
    with pytest.raises(RtsegError, match=r"optim.lr_multipliers maps module paths .* got 'head.': 10.0"):
        load_config(None, ["optim.lr_multipliers={head.: 10}"])
    with pytest.raises(RtsegError, match=r"optim.lr_multipliers maps module paths .* got 'head': 0.0"):
        load_config(None, ["optim.lr_multipliers={head: 0}"])
    with pytest.raises(RtsegError, match=r"optim.warmup_mode must be one of linear, exp, got 'cosine'"):
        load_config(None, ["optim.warmup_mode=cosine"])
