"""The plainest programs the protocol is checked against: they run in a process of their own and
time exactly the calls they are given (no rtseg runner, no other thread pool)."""

import numpy as np
from onnx import TensorProto, helper
import pytest
import torch

from rtseg.profiling.plain_program import plain_session_seconds, plain_torch_seconds

SINGLE_THREAD = True


@pytest.mark.parametrize("settings", [None, {"engine": "eager", "precision": "bf16"}])
def test_plain_torch_program_times_each_run_of_the_named_network(settings):
    seconds = plain_torch_seconds("enet", torch.randn(1, 3, 32, 64), threads=1, settings=settings, warmup=1, runs=3)
    assert len(seconds) == 3 and all(0 < s < 60 for s in seconds)


def test_plain_session_program_times_each_run_of_the_graph():
    shape = [1, 3, 16, 16]
    graph = helper.make_graph([helper.make_node("Relu", ["image"], ["out"])], "relu",
                              [helper.make_tensor_value_info("image", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, shape)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    seconds = plain_session_seconds(model.SerializeToString(), np.zeros(shape, np.float32), threads=1,
                                    warmup=1, runs=4)
    assert len(seconds) == 4 and all(0 < s < 60 for s in seconds)


def test_a_failing_plain_program_says_which_and_why():
    with pytest.raises(RuntimeError, match="plain PyTorch program failed.*nosuch"):
        plain_torch_seconds("nosuch", torch.randn(1, 3, 8, 8), threads=1, warmup=0, runs=1)


def test_the_plain_program_gets_the_variables_it_is_given_beside_the_allocators():
    from rtseg.memory import ENVIRONMENT
    from rtseg.profiling import plain_program

    program = "import json, os; print(json.dumps([os.environ.get(n, '-') for n in ('THP_MEM_ALLOC_ENABLE', %r)]))"
    name = next(iter(ENVIRONMENT))
    assert plain_program._run(program % name, [], 60, "test", "system", {"THP_MEM_ALLOC_ENABLE": "1"}) == ["1", "-"]
    expected = "-" if plain_program.preloaded_allocator() else ENVIRONMENT[name]  # a preloaded one is left alone
    assert plain_program._run(program % name, [], 60, "test", "reuse")[1] == expected
