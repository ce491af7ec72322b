"""The optimizer and learning-rate schedule of a run, from the config's ``optim`` section.

``optim.decay`` chooses which parameters the weight decay reaches: ``kernels`` (the weights of
convolutions, transposed convolutions and linear layers, as the RTSeg authors' TF code) or
``all`` (every parameter, as ``torch.optim``'s ``weight_decay`` alone, and ENet's Torch code).
"""

from __future__ import annotations

import torch
from torch import nn

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


def build_optimizer(o: OptimConfig, model: nn.Module) -> torch.optim.Optimizer:
    groups = decay_groups(model, o.decay, o.weight_decay)
    if o.name == "adam":  # weight_decay is the L2 term added to the gradient, as the paper's L2 loss
        return torch.optim.Adam(groups, lr=o.lr, betas=o.betas)
    if o.name == "adamw":
        return torch.optim.AdamW(groups, lr=o.lr, betas=o.betas)
    return torch.optim.SGD(groups, lr=o.lr, momentum=o.momentum)


def build_scheduler(o: OptimConfig, optimizer: torch.optim.Optimizer, total_steps: int):
    if o.schedule == "poly":  # lr * (1 - step / total) ** power, stepped every iteration
        return torch.optim.lr_scheduler.PolynomialLR(optimizer, total_iters=total_steps, power=o.poly_power)
    return torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)
