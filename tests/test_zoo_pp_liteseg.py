"""PP-LiteSeg-T/B: sizes, gradients, PaddleSeg's .pdparams and key layout, cost, ONNX export.

The outputs were also checked against PaddleSeg's model code (d7975e7, ``paddleseg/models/
pp_liteseg.py``) run with PaddlePaddle 3.3.1 outside the repository: docs/zoo.md gives the figures.
"""

import pickle

import numpy as np
import pytest
import torch

import rtseg
from rtseg.errors import RtsegError
from rtseg.normalisation import INCEPTION_MEAN, INCEPTION_STD
from rtseg.models.pdparams import read_pdparams
from rtseg.models.zoo.eval_parameters import count_eval_params, training_only_modules
from rtseg.profiling.flops import count_params
from zoo_checks import (FIXTURES, assert_any_size, assert_exports, assert_gradients_everywhere, assert_registered,
                        official_layout, random_state)

SINGLE_THREAD = True
MODELS = ("pp_liteseg_t", "pp_liteseg_b")
FIXTURE = "pp_liteseg"


def paddle_save(state: dict, path) -> None:
    """What paddle.save writes for a state dict: a pickle of numpy arrays plus its name table."""
    saved = {k: v.numpy() for k, v in state.items()}
    saved["StructuredToParameterName@@"] = {k: f"param_{i}" for i, k in enumerate(state)}
    path.write_bytes(pickle.dumps(saved, protocol=4))


def test_registered_with_paddleseg_normalisation():
    assert_registered(MODELS, INCEPTION_MEAN, INCEPTION_STD)


@pytest.mark.parametrize("name", MODELS)
def test_any_input_size_in_train_and_eval_mode(name):
    assert_any_size(name, {"out": 7, "aux": 7, "aux2": 7})


@pytest.mark.parametrize("name", MODELS)
def test_training_outputs_reach_every_parameter(name):
    assert set(assert_gradients_everywhere(rtseg.create_model(name, num_classes=3))) == {"out", "aux", "aux2"}


# --- PaddleSeg's weights ----------------------------------------------------------------------

def test_a_file_written_by_paddle_save_reads_as_tensors():
    # tests/fixtures/zoo/paddle_save_3.3.1.pdparams: paddle.save of a Conv2D(3, 2, 3) weight
    # (paddle.seed(0)), a fresh BatchNorm2D's weight/_mean/_variance and paddle.ones([1]).
    state = read_pdparams(FIXTURES / "paddle_save_3.3.1.pdparams")
    assert {k: tuple(v.shape) for k, v in state.items()} == {
        "conv.weight": (2, 3, 3, 3), "bn.weight": (2,), "bn._mean": (2,), "bn._variance": (2,), "scale": (1,)}
    assert state["conv.weight"].dtype == torch.float32
    assert state["conv.weight"].flatten()[:3].tolist() == pytest.approx([-0.20605935, -0.103584, 0.02979306])
    assert state["bn._variance"].tolist() == [1.0, 1.0] and state["bn._mean"].tolist() == [0.0, 0.0]


def test_protocol_2_files_from_numpy_1_read_too(tmp_path):
    # Older Paddle wrote protocol 2; numpy 1.x pickles arrays through numpy.core.multiarray,
    # numpy 2.x through numpy._core.multiarray (protocol 2 names globals as plain text lines).
    state = read_pdparams(FIXTURES / "paddle_save_3.3.1.pdparams")
    data = pickle.dumps({k: v.numpy() for k, v in state.items()}, protocol=2)
    old = data.replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n")
    assert old != data
    path = tmp_path / "old.pdparams"
    path.write_bytes(old)
    assert torch.equal(read_pdparams(path)["conv.weight"], state["conv.weight"])


class _RunsCode:
    def __reduce__(self):
        return (print, ("this must never run",))


@pytest.mark.parametrize("payload, refused", [({"w": _RunsCode()}, "builtins.print"),
                                              ({"w": np.array([object()], dtype=object)}, "numpy")])
def test_a_pdparams_that_names_code_is_refused_before_anything_runs(tmp_path, capsys, payload, refused):
    path = tmp_path / "evil.pdparams"
    path.write_bytes(pickle.dumps(payload, protocol=4))
    with pytest.raises(RtsegError, match=f"cannot read PaddlePaddle weights .*{refused}|not a numeric array"):
        read_pdparams(path)
    assert "never run" not in capsys.readouterr().out


@pytest.mark.parametrize("name", MODELS)
def test_the_released_pdparams_layout_converts_and_loads(name, tmp_path):
    state = random_state(official_layout(FIXTURE, name))
    path = tmp_path / "model.pdparams"
    paddle_save(state, path)
    ours = rtseg.create_model(name, weights=path).state_dict()
    pairs = {"backbone.stages.0.bn.running_var": "backbone.features.0.bn._variance",
             "backbone.stages.2.0.down.conv.weight": "backbone.features.2.avd_layer.0.weight",
             "sppm.stages.2.conv.bias": "ppseg_head.cm.stages.2.1._conv.bias",
             "sppm.project.bn.running_mean": "ppseg_head.cm.conv_out._batch_norm._mean",
             "fusions.1.project.conv.weight": "ppseg_head.arm_list.1.conv_x._conv.weight",
             "fusions.2.attention.1.bn.weight": "ppseg_head.arm_list.2.conv_xy_atten.1._batch_norm.weight",
             "fusions.0.fuse.bn.bias": "ppseg_head.arm_list.0.conv_out._batch_norm.bias",
             "fusions.0.scale": "ppseg_head.arm_list.0._scale",
             "heads.2.classifier.weight": "seg_heads.2.conv_out.weight",
             "heads.0.conv.conv.weight": "seg_heads.0.conv._conv.weight"}
    for our_key, official_key in pairs.items():
        assert torch.equal(ours[our_key], state[official_key]), our_key


def test_a_misfit_pdparams_names_its_keys(tmp_path):
    state = random_state(official_layout(FIXTURE, "pp_liteseg_t"))
    del state["seg_heads.1.conv._batch_norm.weight"]
    path = tmp_path / "model.pdparams"
    paddle_save(state, path)
    with pytest.raises(RtsegError, match=r"missing keys: heads\.1\.conv\.bn\.weight"):
        rtseg.create_model("pp_liteseg_t", weights=path)
    paddle_save(random_state(official_layout(FIXTURE, "pp_liteseg_b")), path)
    with pytest.raises(RtsegError, match="keys with another shape"):
        rtseg.create_model("pp_liteseg_t", weights=path)


def test_paddlesegs_imagenet_trunk_loads(tmp_path):
    state = random_state(official_layout(FIXTURE, "stdc1_imagenet"))
    path = tmp_path / "model.pdparams"
    paddle_save(state, path)
    model = rtseg.create_model("pp_liteseg_t", pretrained=path)
    assert torch.equal(model.backbone.state_dict()["stages.3.1.convs.0.bn.running_mean"],
                       state["features.5.conv_list.0.bn._mean"])


# --- Cost and export --------------------------------------------------------------------------

def test_eval_parameters_leave_out_the_two_deep_heads():
    model = rtseg.create_model("pp_liteseg_t")
    assert training_only_modules(model) == ("heads.1", "heads.2")
    heads = count_params(model.heads[1]) + count_params(model.heads[2])
    assert count_eval_params(model) == count_params(model) - heads


@pytest.mark.slow  # a dynamo export of the whole network: about 8 s on one core
def test_onnx_export_at_any_size(tmp_path):
    # The SPPM's 2x2 and 4x4 pools: a /32 map of 2x3 at 64x96, of 3x2 at 71x45.
    assert_exports(rtseg.create_model("pp_liteseg_t", num_classes=4), tmp_path, (64, 96), (71, 45))
