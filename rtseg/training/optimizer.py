"""The optimizer and learning-rate schedule of a run, from the config's ``optim`` section.

``optim.decay`` chooses which parameters the weight decay reaches: ``kernels`` (the weights of
convolutions, transposed convolutions and linear layers, as the RTSeg authors' TF code) or
``all`` (every parameter, as ``torch.optim``'s ``weight_decay`` alone, and ENet's Torch code).

``optim.lr_multipliers`` trains some modules at a multiple of the rate, named by their path in
the network (BiSeNet's and STDC-Seg's recipes train the fusion module and the heads at 10 x lr:
CoinCheung/BiSeNet ``tools/train_amp.py`` ``set_optimizer``, STDC-Seg ``optimizer_loss.py``).

``optim.warmup_iters`` starts the schedule with a warm-up from ``warmup_ratio`` x lr: ``linear``
(PaddleSeg's ``LinearWarmup``) or ``exp``, ``ratio ** (1 - step / warmup_iters)`` (CoinCheung's
``WarmupPolyLrScheduler``; STDC-Seg's ``warmup_start_lr * (lr / warmup_start_lr) ** (step /
warmup_iters)`` is the same curve). After it the poly schedule runs over the steps left,
``(1 - (step - W) / (T - W)) ** power``, as all three codes do. Written as one
``torch.optim.lr_scheduler.LambdaLR`` factor, since torch's schedulers have no exponential
warm-up and chaining them (``SequentialLR``) would restart poly's count differently; without a
warm-up the schedule is the unchanged ``PolynomialLR``/``ConstantLR``.
"""

from __future__ import annotations

from typing import Mapping

import torch
from torch import nn

from rtseg.errors import RtsegError
from rtseg.training.config import OptimConfig


def decay_groups(model: nn.Module, decay: str, weight_decay: float) -> list[dict]:
    """Optimizer parameter groups: ``all`` decays every parameter (one group); ``kernels`` only
    the weights of convolutions, transposed convolutions and linear layers, as the authors' TF
    code (``layers/utils.py``, ``variable_with_weight_decay``): batch-norm scales and shifts,
    biases and PReLU slopes go to a group without decay."""
    params = [p for p in model.parameters() if p.requires_grad]
    if decay == "all":
        return [{"params": params, "weight_decay": weight_decay}]
    kernels = {id(module.weight) for module in model.modules()
               if isinstance(module, (nn.modules.conv._ConvNd, nn.Linear)) and module.weight is not None}
    groups = [{"params": [p for p in params if id(p) in kernels], "weight_decay": weight_decay},
              {"params": [p for p in params if id(p) not in kernels], "weight_decay": 0.0}]
    return [group for group in groups if group["params"]]


def lr_factors(model: nn.Module, multipliers: Mapping[str, float]) -> dict[int, float]:
    """``id(parameter) -> factor`` for the parameters under a path of ``multipliers`` (the longest wins).

    A path that matches no parameter is an error: a misspelt module would silently train at 1 x lr.
    """
    factors: dict[int, float] = {}
    used: set[str] = set()
    for name, param in model.named_parameters():
        paths = [path for path in multipliers if name == path or name.startswith(path + ".")]
        if paths:
            used.update(paths)
            factors[id(param)] = multipliers[max(paths, key=len)]
    unused = [path for path in multipliers if path not in used]
    if unused:
        modules = ", ".join(name for name, _ in model.named_children())
        raise RtsegError(f"optim.lr_multipliers: {', '.join(map(repr, unused))} names no parameters of "
                         f"{getattr(model, 'name', type(model).__name__)} (its modules: {modules})")
    return factors


def parameter_groups(model: nn.Module, o: OptimConfig) -> list[dict]:
    """The decay groups, each split by learning-rate factor, each with its own ``lr``.

    The groups at the base rate come first: the trainer logs group 0's rate.
    """
    factors = lr_factors(model, o.lr_multipliers)
    groups = []
    for group in decay_groups(model, o.decay, o.weight_decay):
        by_factor: dict[float, list[nn.Parameter]] = {}
        for param in group["params"]:
            by_factor.setdefault(factors.get(id(param), 1.0), []).append(param)
        groups += [{"params": params, "weight_decay": group["weight_decay"], "lr": o.lr * factor}
                   for factor, params in by_factor.items()]
    return sorted(groups, key=lambda g: g["lr"] != o.lr)


def build_optimizer(o: OptimConfig, model: nn.Module) -> torch.optim.Optimizer:
    groups = parameter_groups(model, o)
    if o.name == "adam":  # weight_decay is the L2 term added to the gradient, as the paper's L2 loss
        return torch.optim.Adam(groups, lr=o.lr, betas=o.betas)
    if o.name == "adamw":
        return torch.optim.AdamW(groups, lr=o.lr, betas=o.betas)
    return torch.optim.SGD(groups, lr=o.lr, momentum=o.momentum)


def build_scheduler(o: OptimConfig, optimizer: torch.optim.Optimizer, total_steps: int):
    if o.warmup_iters:
        return torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_schedule(o, total_steps))
    if o.schedule == "poly":  # lr * (1 - step / total) ** power, stepped every iteration
        return torch.optim.lr_scheduler.PolynomialLR(optimizer, total_iters=total_steps, power=o.poly_power)
    return torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)


def warmup_schedule(o: OptimConfig, total_steps: int):
    """``step -> factor of the rate``: the warm-up, then poly over the steps left (or constant)."""
    warmup, ratio = o.warmup_iters, o.warmup_ratio
    if warmup >= total_steps:
        raise RtsegError(f"optim.warmup_iters ({warmup}) must be fewer than the run's {total_steps} steps")
    decay_steps = total_steps - warmup

    def factor(step: int) -> float:
        if step < warmup:
            progress = step / warmup
            return ratio ** (1.0 - progress) if o.warmup_mode == "exp" else ratio + (1.0 - ratio) * progress
        if o.schedule == "poly":
            return max(0.0, 1.0 - (step - warmup) / decay_steps) ** o.poly_power
        return 1.0

    return factor
