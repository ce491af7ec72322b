"""Eval-only parameters, for any network: found by back-propagating the eval output, reported by
``rtseg flops`` beside all parameters, and used to load a release that lacks its training heads."""

import json

import torch
from torch import nn

import rtseg
from rtseg.cli import main
from rtseg.models.segmentation import SegmentationNetwork
from rtseg.models.zoo.eval_parameters import (count_eval_params, eval_parameter_names, fill_training_heads,
                                              training_only_modules)
from rtseg.profiling.flops import count_params, measure_cost

SINGLE_THREAD = True


class _TwoHeads(SegmentationNetwork):
    """A trunk, an eval head, and a training-only head nested one level down (like PP-LiteSeg's)."""

    def __init__(self):
        super().__init__("two_heads", 3)
        self.trunk = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())
        self.heads = nn.ModuleList([nn.Conv2d(4, 3, 1), nn.Sequential(nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4))])

    def forward(self, x):
        feat = self.trunk(x)
        out = self.heads[0](feat)
        return {"out": out, "aux": self.heads[1](feat)} if self.training else out


def test_the_heads_only_training_reads_are_found_without_touching_the_network():
    model = _TwoHeads().train()
    model.trunk[0].weight.requires_grad_(False)  # a frozen layer is still part of the eval output
    assert eval_parameter_names(model) == {"trunk.0.weight", "trunk.0.bias", "trunk.1.weight", "trunk.1.bias",
                                           "heads.0.weight", "heads.0.bias"}
    assert training_only_modules(model) == ("heads.1",)
    assert count_eval_params(model) == count_params(model) - count_params(model.heads[1])
    assert model.training and not model.trunk[0].weight.requires_grad
    assert all(p.grad is None for p in model.parameters())


def test_a_file_without_the_training_heads_gets_the_networks_own():
    model = _TwoHeads()
    state = {k: torch.full_like(v, 2.0) if v.is_floating_point() else v for k, v in model.state_dict().items()}
    eval_only = {k: v for k, v in state.items() if not k.startswith("heads.1.")}
    filled = fill_training_heads(model, eval_only)
    assert set(filled) == set(state)
    assert torch.equal(filled["heads.1.0.weight"], model.heads[1][0].weight)
    assert torch.equal(filled["heads.0.weight"], state["heads.0.weight"])
    # A head the file holds in part is left as it is: loading then names what is missing.
    partial = {k: v for k, v in state.items() if k != "heads.1.1.bias"}
    assert "heads.1.1.bias" not in fill_training_heads(model, partial)


def test_cost_counts_eval_and_all_parameters():
    model = rtseg.create_model("fast_scnn")
    cost = measure_cost(model, (64, 128))
    assert cost.eval_params == count_eval_params(model) == cost.params - count_params(model.aux_head)
    grid = measure_cost(rtseg.create_model("skipnet-mobilenet_v1"), (64, 128))
    assert grid.eval_params == grid.params


def test_flops_command_prints_both_counts_for_a_network_with_training_heads(capsys):
    model = rtseg.create_model("fast_scnn")
    eval_params, params = count_eval_params(model), count_params(model)
    assert main(["flops", "--model", "fast_scnn", "--size", "64x128"]) == 0
    out = capsys.readouterr().out
    assert f"{eval_params / 1e6:.2f}M parameters at eval ({params / 1e6:.2f}M with the training-only heads)" in out
    assert main(["flops", "--model", "fast_scnn", "--size", "64x128", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["eval_params"], result["params"]) == (eval_params, params)


def test_flops_command_prints_one_count_otherwise(capsys):
    assert main(["flops", "--model", "skipnet-mobilenet_v1", "--size", "64x128"]) == 0
    out = capsys.readouterr().out
    assert "parameters," in out and "at eval" not in out
