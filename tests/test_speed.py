"""The speed protocol's mechanics, the inference rewrites and every engine/precision, on tiny inputs.

No test asserts a time: timings on a shared CI machine prove nothing. They check the
warm-up rule, the statistics, the JSON record, that graph rewrites keep the function, and
that each engine gives the answer of plain PyTorch.
"""

from __future__ import annotations

import io
import json
import statistics
import warnings
from contextlib import redirect_stderr, redirect_stdout

import numpy as np
import pytest
import torch
from torch import nn

import rtseg
from rtseg.cli import main
from rtseg.errors import RtsegError
from rtseg.inference import (Backend, Predictor, SubPixelConvTranspose2d, build_runners, fold_batch_norm,
                             rewrite_conv_transpose, supported_combinations)
from rtseg.profiling.hardware import describe
from rtseg.profiling.layers import ARGMAX, UPSAMPLED_LABELS, profile_runner
from rtseg.models import SegmentationNetwork
from rtseg.profiling.roofline import Peak, combine_peaks, measure_peak
from rtseg.profiling.speed import SpeedResult, TimingProtocol, efficiency_fault, measure_speed, timing_warnings
from rtseg.profiling.timing import TimingStats, settle, time_in_blocks, wait_until_idle

SIZE = (32, 64)


class TinyNet(SegmentationNetwork):
    """Conv-BN-ReLU down, class scores, transposed-conv up: every rewrite applies, and it exports in a blink."""

    def __init__(self):
        super().__init__("tiny", 19)
        self.down = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.score = nn.Conv2d(8, 19, 1)
        self.up = nn.ConvTranspose2d(19, 19, 4, stride=2, padding=1, bias=False)

    def forward(self, x):
        return self.up(self.score(self.down(x)))

    # its up-sampler's output is already the input's size, so the engines may take the labels inside it
    def output_layer(self):
        return self.up

    def output_layer_input(self, x):
        return self.score(self.down(x))


@pytest.fixture(scope="module")
def tiny_net():
    torch.manual_seed(0)
    model = TinyNet().eval()
    _randomise_batch_norm(model)
    return model


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    model = rtseg.create_model("skipnet-mobilenet_v1", width=0.25).eval()
    _randomise_batch_norm(model)
    return model


def _randomise_batch_norm(model: nn.Module) -> None:
    """Non-trivial running statistics, so folding has something to fold."""
    generator = torch.Generator().manual_seed(1)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            n = module.num_features
            module.running_mean.copy_(torch.randn(n, generator=generator) * 0.1)
            module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
            module.weight.data.copy_(torch.rand(n, generator=generator) + 0.5)
            module.bias.data.copy_(torch.randn(n, generator=generator) * 0.1)


# --- warm-up and statistics ------------------------------------------------------------

def _fake_clock(times):
    """A step whose latency follows ``times`` (seconds): a model that is slow until it settles."""
    iterator = iter(times)
    return lambda: next(iterator)


def test_settle_stops_once_the_median_stops_moving():
    # medians of 3: (1.0, .8, .6) -> .8 ; then .6 ; then .5 == .5 at the 8th run
    warm = settle(_fake_clock([1.0, 0.8, 0.6, 0.5, 0.5, 0.5, 0.5, 0.5] + [0.5] * 20), window=3, tolerance=0.05)
    assert warm.settled and warm.runs == 8
    assert warm.last_median_ms == pytest.approx(500.0)


def test_settle_gives_up_at_the_cap_when_timings_keep_drifting():
    drifting = [1.0 / (1 + i) for i in range(100)]  # always 20-50 % faster than before
    warm = settle(_fake_clock(drifting), window=2, tolerance=0.05, max_runs=12)
    assert not warm.settled and warm.runs == 12


def test_settle_tolerates_noise_within_the_tolerance():
    noisy = [0.100, 0.102, 0.099, 0.101, 0.100, 0.103] * 5
    assert settle(_fake_clock(noisy), window=3, tolerance=0.05).runs == 6


def test_timing_stats_match_numpy_and_statistics():
    seconds = [0.010, 0.012, 0.011, 0.030, 0.009, 0.010, 0.013]
    stats = TimingStats.from_seconds(seconds, batch=2)
    ms = np.array(seconds) * 1e3
    assert stats.runs == 7 and stats.batch == 2
    assert stats.latency_median_ms == pytest.approx(np.median(ms))
    assert stats.latency_p90_ms == pytest.approx(np.percentile(ms, 90))
    assert stats.latency_mean_ms == pytest.approx(ms.mean())
    assert stats.latency_std_ms == pytest.approx(statistics.stdev(ms))
    assert stats.fps_median == pytest.approx(2 / np.median(seconds))  # odd count: the median run
    assert stats.fps_p10 == pytest.approx(np.percentile(2 / np.array(seconds), 10))
    assert stats.fps_p10 < stats.fps_median < 2 / min(seconds)


def test_time_in_blocks_takes_turns_in_blocks_and_waits_before_each():
    calls = []

    def step(name):
        return lambda: calls.append(name) or 0.001

    times = time_in_blocks([step("a"), step("b")], runs=5, block=2, before_block=lambda: calls.append("|"),
                           lead_in=0)
    assert "".join(calls) == "|aa|bb|aa|bb|a|b"
    assert [len(t) for t in times] == [5, 5]
    calls.clear()
    times = time_in_blocks([step("a"), step("b")], runs=3, block=2, before_block=lambda: calls.append("|"))
    assert "".join(calls) == "|aaa|bbb|aa|bb"  # one untimed call leads each block in
    assert [len(t) for t in times] == [3, 3]
    with pytest.raises(ValueError):
        time_in_blocks([step("a")], runs=3, block=0)


class _FakeProcess:
    """CPU and wall clocks of a process whose other threads spin for ``spin`` seconds, then sleep."""

    def __init__(self, spin: float):
        self.wall = 0.0
        self.spin = spin

    def cpu(self) -> float:
        return min(self.wall, self.spin)  # one spinning thread uses a full core until it parks

    def sleep(self, seconds: float) -> None:
        self.wall += seconds


@pytest.mark.parametrize("spin", [0.0, 0.012, 0.040])
def test_wait_until_idle_waits_for_spinning_threads_to_park(spin):
    process = _FakeProcess(spin)
    idle = wait_until_idle(max_seconds=1.0, slice_seconds=0.005, clock=process.cpu, wall=lambda: process.wall,
                           sleep=process.sleep)
    assert idle.idle
    assert spin <= idle.waited_s <= spin + 0.011  # the slice in which it parked, and one quiet slice


def test_wait_until_idle_gives_up_on_a_busy_process():
    process = _FakeProcess(spin=10.0)
    idle = wait_until_idle(max_seconds=0.05, clock=process.cpu, wall=lambda: process.wall, sleep=process.sleep)
    assert not idle.idle and 0.05 <= idle.waited_s < 0.06


def test_an_idle_process_is_seen_idle_at_once():
    # real clocks: no thread of this test process is busy after a short sleep
    assert wait_until_idle(max_seconds=2.0).idle


# --- rewrites ----------------------------------------------------------------------------

@pytest.mark.parametrize("kernel,stride,padding,output_padding,bias", [
    (16, 8, 4, 0, False),  # SkipNet's final up-sampler
    (4, 2, 1, 0, False),   # SkipNet/UNet x2
    (3, 2, 1, 1, True),    # ENet's up-sampling bottleneck
    (2, 2, 0, 0, True),    # ENet's classifier
    (3, 1, 1, 0, True),    # stride 1
    (5, 3, 2, 1, True),    # kernel not a multiple of the stride
])
def test_subpixel_rewrite_equals_conv_transpose(kernel, stride, padding, output_padding, bias):
    torch.manual_seed(0)
    deconv = nn.ConvTranspose2d(5, 7, kernel, stride, padding, output_padding=output_padding, bias=bias)
    rewritten = SubPixelConvTranspose2d(deconv)
    for shape in ((2, 5, 4, 6), (1, 5, 5, 7)):
        x = torch.randn(shape)
        expected = deconv(x)
        got = rewritten(x)
        assert got.shape == expected.shape
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_subpixel_rewrite_honours_output_size():
    deconv = nn.ConvTranspose2d(4, 4, 3, 2, 1)
    x = torch.randn(1, 4, 5, 6)
    expected = deconv(x, output_size=[10, 12])
    torch.testing.assert_close(SubPixelConvTranspose2d(deconv)(x, output_size=[10, 12]), expected,
                               rtol=1e-5, atol=1e-5)


def test_rewrite_conv_transpose_keeps_the_model_function(tiny):
    import copy

    model = copy.deepcopy(tiny)
    assert rewrite_conv_transpose(model) == 3  # SkipNet: two x2 and one x8 up-sampler
    assert not any(isinstance(m, nn.ConvTranspose2d) for m in model.modules())
    x = torch.randn(1, 3, 40, 70)  # not a multiple of 32: the decoder crops
    with torch.no_grad():
        torch.testing.assert_close(model(x), tiny(x), rtol=1e-4, atol=1e-4)


def test_fold_batch_norm_equals_unfolded(tiny):
    x = torch.randn(2, 3, *SIZE)
    batch_norms = sum(isinstance(m, nn.BatchNorm2d) for m in tiny.modules())
    folded, count = fold_batch_norm(tiny, torch.randn(1, 3, 64, 64))
    assert count == batch_norms > 0
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in tiny.modules())  # the original is untouched
    with torch.no_grad():
        torch.testing.assert_close(folded(x), tiny(x), rtol=1e-4, atol=1e-4)


class _SharedConvOutput(nn.Module):
    """The conv output feeds the BN *and* a residual: folding would change the residual."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.bn = nn.BatchNorm2d(3)

    def forward(self, x):
        y = self.conv(x)
        return self.bn(y) + y


def test_fold_batch_norm_refuses_a_pair_whose_conv_output_is_shared():
    model = _SharedConvOutput().eval()
    _randomise_batch_norm(model)
    x = torch.randn(1, 3, 8, 8)
    with pytest.warns(RuntimeWarning, match="keeping the unfolded model"):
        folded, count = fold_batch_norm(model, x)
    assert count == 0
    torch.testing.assert_close(folded(x), model(x))


def test_fold_batch_norm_handles_conv_transpose_and_plain_sequential():
    model = nn.Sequential(nn.ConvTranspose2d(3, 4, 2, 2), nn.BatchNorm2d(4), nn.ReLU(),
                          nn.Conv2d(4, 2, 1), nn.BatchNorm2d(2)).eval()
    _randomise_batch_norm(model)
    x = torch.randn(1, 3, 6, 6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        folded, count = fold_batch_norm(model, x)
    assert count == 2
    torch.testing.assert_close(folded(x), model(x), rtol=1e-5, atol=1e-5)


# --- engines and precisions ----------------------------------------------------------------

FAST = [c for c in supported_combinations("cpu") if c[0] != "compile"]


@pytest.mark.parametrize("engine,precision", FAST)
def test_every_engine_and_precision_runs(tiny_net, engine, precision):
    tiny = tiny_net
    calibration = None
    if precision == "int8":
        from rtseg.inference.calibration import random_calibration

        calibration = random_calibration(tiny, SIZE, batches=2)
    model_only, end_to_end = build_runners(tiny, SIZE, Backend(engine, precision), calibration=calibration)
    x = torch.randn(1, 3, *SIZE)
    logits, labels = model_only(x), end_to_end(x)
    assert logits.shape == (1, 19, *SIZE) and labels.shape == (1, *SIZE)
    assert labels.dtype == torch.int64 and torch.isfinite(logits.float()).all()
    with torch.no_grad():
        reference = tiny(x)
    if precision == "fp32":
        torch.testing.assert_close(logits, reference, rtol=1e-4, atol=1e-4)
        assert torch.equal(labels, reference.argmax(1))
    else:  # reduced precision: close, not equal
        assert (logits.float() - reference).abs().max() < 0.25 * reference.abs().max()
    assert end_to_end.details == model_only.details


@pytest.mark.slow
def test_compile_engine_matches_eager(tiny_net):
    tiny = tiny_net
    x = torch.randn(1, 3, *SIZE)
    with torch.no_grad():
        reference = tiny(x)
    for fused_labels in (None, True, False):  # timed against a compiled argmax head, forced, off
        model_only, end_to_end = build_runners(tiny, SIZE, Backend("compile", "fp32", fused_labels=fused_labels))
        torch.testing.assert_close(model_only(x), reference, rtol=1e-4, atol=1e-4)
        assert torch.equal(end_to_end(x), reference.argmax(1))
        choice = end_to_end.details.get("labels_choice")
        if fused_labels is None:  # the argmax head it was timed against ran compiled, as it would in the graph
            assert choice["argmax_head"] == "compiled"
            assert end_to_end.details["argmax_first"] is choice["inside the last layer"]
        else:
            assert choice is None and end_to_end.details["argmax_first"] is fused_labels


class _DataDependent(TinyNet):
    """A branch on a tensor's value: dynamo cannot put it in one graph."""

    def forward(self, x):
        y = super().forward(x)
        return y if y.sum() > 0 else -y

    def output_layer(self):  # its logits are not the up-sampler's output alone
        return None


@pytest.mark.slow
def test_compile_that_would_fall_back_to_eager_fails_the_setting():
    from rtseg.inference.torch_engines import CompileFallback, check_compiled

    with pytest.raises(CompileFallback, match="failed instead of compiling the whole model"):
        build_runners(_DataDependent().eval(), SIZE, Backend("compile"))
    with pytest.raises(CompileFallback, match="0 graph"):
        check_compiled("m", "fp32", new_graphs=0, new_breaks=0)  # dynamo skipped the frame: all eager
    with pytest.raises(CompileFallback, match="1 graph break"):
        check_compiled("m", "fp32", new_graphs=2, new_breaks=1)


@pytest.mark.slow
# dynamo's own patch, not monkeypatch: undoing a setattr on its config left recompile_limit
# unreadable ("does not exist"), and every later torch.compile in the process failed
@torch._dynamo.config.patch(recompile_limit=1)
def test_compiled_models_do_not_share_a_recompile_limit():
    """Many compiled models in one process (bench_speed, the benchmark) used to exhaust dynamo's
    shared recompile limit, after which later ones ran eager under the name "compile"."""
    from torch._dynamo.utils import counters

    graphs = counters["stats"]["unique_graphs"]
    runners = [build_runners(TinyNet().eval(), SIZE, Backend("compile", precision))
               for precision in ("fp32", "bf16", "fp32")]  # the same forward code, other autocast states
    # model only, end-to-end and the argmax head timed against the fused labels, each compiled
    assert counters["stats"]["unique_graphs"] - graphs == 9
    x = torch.randn(1, 3, *SIZE)
    for _ in range(2):  # calling them in turn recompiles none of them
        for model_only, end_to_end in runners:
            model_only(x), end_to_end(x)
    assert counters["stats"]["unique_graphs"] - graphs == 9
    # inputs the guards would otherwise tell apart: an inference tensor, a batch axis with an odd stride
    with torch.inference_mode():
        runners[1][1](torch.randn(1, 3, *SIZE))
    odd = torch.randn(1, 3, *SIZE).contiguous(memory_format=torch.channels_last)
    runners[1][1](odd.as_strided(odd.shape, (3, 1, 3 * SIZE[1], 3)))  # how an HxWx3 image arrives
    assert counters["stats"]["unique_graphs"] - graphs == 9
    from rtseg.inference.torch_engines import CompileFallback

    with pytest.raises(CompileFallback, match="would have to recompile"):
        runners[0][0](torch.randn(1, 3, 64, 64))  # another shape would need a new graph: it raises


@pytest.mark.parametrize("engine,precision,device", [
    ("eager", "int8", "cpu"), ("onnxruntime", "bf16", "cpu"), ("onnxruntime", "fp16", "cpu"),
    ("tensorrt", "fp32", "cpu"), ("eager", "fp8", "cpu"),
])
def test_unsupported_combinations_say_what_to_use(engine, precision, device):
    with pytest.raises(RtsegError, match=engine if engine != "eager" or precision == "int8" else precision):
        Backend(engine, precision, device).check()


# --- int8: which layers stay in float ------------------------------------------------------------

class EveryConvKind(SegmentationNetwork):
    """One layer of each kind ``rtseg.inference.int8_layers`` tells apart."""

    def __init__(self):
        super().__init__("every-kind", 19)
        self.stem = nn.Conv2d(3, 12, 3, stride=2, padding=1)
        self.depthwise = nn.Conv2d(12, 12, 3, padding=1, groups=12)
        self.grouped = nn.Conv2d(12, 12, 1, groups=3)
        self.pointwise = nn.Conv2d(12, 19, 1)
        self.dense = nn.Conv2d(19, 19, 3, padding=1)
        self.up = nn.ConvTranspose2d(19, 19, 4, stride=2, padding=1)

    def forward(self, x):
        x = torch.relu(self.stem(x))
        x = self.grouped(self.depthwise(x)) + x
        return self.up(self.dense(self.pointwise(x)))


@pytest.fixture(scope="module")
def quantizer(tmp_path_factory):
    from rtseg.inference.calibration import random_calibration
    from rtseg.inference.onnx_export import export_onnx
    from rtseg.inference.quantize import Quantizer

    work = tmp_path_factory.mktemp("int8")
    model = EveryConvKind().eval()
    path = export_onnx(model, work / "float.onnx", SIZE, argmax_first=False)
    return model, path, Quantizer(path, random_calibration(model, SIZE, batches=2), work)


def test_layer_kinds_tell_every_convolution_apart(quantizer):
    import onnx

    from rtseg.inference.int8_layers import (DENSE, DEPTHWISE, GROUPED, OTHER, POINTWISE, STEM, UPSAMPLING,
                                             layer_kinds)

    kinds = layer_kinds(onnx.load(str(quantizer[2].prepared)))
    assert {k: len(v) for k, v in kinds.items() if k != OTHER} == {
        STEM: 1, DEPTHWISE: 1, GROUPED: 1, POINTWISE: 1, DENSE: 1, UPSAMPLING: 1}
    assert kinds[OTHER]  # the Relu, the Add and the pixel shuffle


def _fake_timer(times: dict):
    """A ``time_graphs`` whose figures are ``times`` (ms per candidate name, round by round)."""
    rounds = iter(times)

    def timer(graphs, x, threads, runs):
        values = next(rounds)
        assert set(graphs) == set(values)
        return values
    return timer


def test_int8_plan_keeps_in_float_what_was_faster_in_float(quantizer):
    from rtseg.inference.int8_layers import (ALL_INT8, CONFIRM_FLOAT, CONFIRM_INT8, DEPTHWISE, FLOAT, GROUPED, KINDS,
                                             choose_float_layers)

    model, path, quant = quantizer
    x = torch.randn(1, 3, *SIZE).numpy()
    present = list(KINDS)
    first = {ALL_INT8: 10.0, FLOAT: 20.0, **{k: 10.1 for k in present}, DEPTHWISE: 9.0, GROUPED: 9.5}
    union = f"{GROUPED} + {DEPTHWISE}"  # in the order of KINDS
    second = {union: 8.0, DEPTHWISE: 9.0, FLOAT: 20.0}  # the same clock as the first round
    confirmed = {CONFIRM_INT8: 8.0, CONFIRM_FLOAT: 20.0}  # the winner against float, once more
    plan = choose_float_layers(path, quant, x, 1, timer=_fake_timer([first, second, confirmed]))
    assert plan.float_kinds == (GROUPED, DEPTHWISE) and not plan.all_float
    assert len(plan.float_nodes) == 2 and plan.timings_ms[union] == 8.0
    assert plan.timings_ms[CONFIRM_FLOAT] == 20.0 and "kept in float" in plan.label
    # nothing beats all-int8 by the margin: everything is quantized
    flat = {ALL_INT8: 10.0, FLOAT: 20.0, **{k: 9.9 for k in present}}
    assert choose_float_layers(path, quant, x, 1, timer=_fake_timer([flat, confirmed])).float_kinds == ()
    # int8 faster in the first round only: the confirmation keeps every layer in float
    noisy = {ALL_INT8: 10.0, FLOAT: 11.0, **{k: 10.5 for k in present}}
    reversed_round = {CONFIRM_INT8: 11.0, CONFIRM_FLOAT: 10.0}
    plan = choose_float_layers(path, quant, x, 1, timer=_fake_timer([noisy, reversed_round]))
    assert plan.all_float and plan.timings_ms[CONFIRM_INT8] == 11.0
    # float beats every int8 graph, or int8 is not clearly faster: nothing is quantized, and the plan says so
    for float_ms in (7.0, 10.1):
        slow = {ALL_INT8: 10.0, FLOAT: float_ms, **{k: 11.0 for k in present}}
        plan = choose_float_layers(path, quant, x, 1, timer=_fake_timer([slow]))
        assert plan.all_float and "every layer in float" in plan.label


def test_int8_graph_keeps_the_planned_layers_in_float(quantizer, tmp_path):
    import onnx

    from rtseg.inference.int8_layers import DEPTHWISE, FLOAT, build_int8_graph

    model, path, quant = quantizer
    x = torch.randn(1, 3, *SIZE).numpy()
    calibration = quant.calibration
    target, plan = build_int8_graph(path, tmp_path / "dw-float.onnx", calibration, x, float_kinds=(DEPTHWISE,))
    graph = onnx.load(str(target)).graph
    depthwise_name, = plan.float_nodes
    depthwise = next(n for n in graph.node if n.name == depthwise_name)
    producers = {o: n for n in graph.node for o in n.output}
    weight = producers.get(depthwise.input[1])
    assert weight is None or weight.op_type != "DequantizeLinear"  # float weights, not int8 ones
    assert sum(n.op_type == "QuantizeLinear" for n in graph.node) > 0  # the rest is quantized
    target, plan = build_int8_graph(path, tmp_path / "float.onnx", calibration, x, float_kinds=(FLOAT,))
    assert plan.all_float and not any(n.op_type == "QuantizeLinear" for n in onnx.load(str(target)).graph.node)
    with pytest.raises(RtsegError, match="not one of"):
        build_int8_graph(path, tmp_path / "x.onnx", calibration, x, float_kinds=("fast conv",))


def test_int8_labels_are_the_argmax_of_the_int8_logits(tiny_net, tmp_path):
    """The argmax-first rewrite of a quantized graph: labels from the uint8 class scores, exactly."""
    import onnx
    import onnxruntime as ort

    from rtseg.inference.calibration import random_calibration
    from rtseg.inference.onnx_export import export_onnx
    from rtseg.inference.quantize import quantize_int8

    float_path = export_onnx(tiny_net, tmp_path / "m.onnx", SIZE, argmax_first=False)
    path = quantize_int8(float_path, tmp_path / "q.onnx", random_calibration(tiny_net, SIZE, batches=2))
    graph = onnx.load(str(path)).graph
    producer = {o: n for n in graph.node for o in n.output}
    argmax = next(n for n in graph.node if n.op_type == "ArgMax")
    assert producer[argmax.input[0]].op_type == "DequantizeLinear"  # of the reshaped uint8 scores
    assert producer[producer[argmax.input[0]].input[0]].op_type == "Reshape"
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for seed in range(3):
        x = np.random.default_rng(seed).standard_normal((1, 3, *SIZE)).astype(np.float32)
        logits, labels = session.run(["logits", "labels"], {"image": x})
        np.testing.assert_array_equal(labels, logits.argmax(1))


# --- per-layer-kind profiles ---------------------------------------------------------------------

@pytest.mark.parametrize("engine", ["onnxruntime", "eager"])
def test_layer_profile_sorts_the_time_into_kinds(tiny_net, engine):
    from rtseg.inference.int8_layers import POINTWISE, STEM
    from rtseg.profiling.layers import profile_runner

    # the argmax of the logits as its own kind: without the labels taken inside the up-sampling
    _, end_to_end = build_runners(tiny_net, SIZE, Backend(engine, threads=1, fused_labels=False))
    profile = profile_runner(end_to_end, torch.randn(1, 3, *SIZE), runs=3)
    kinds = {k.kind: k for k in profile.kinds}
    assert {STEM, POINTWISE} <= set(kinds) and "argmax" in kinds
    assert sum(k.share for k in profile.kinds) == pytest.approx(1.0)
    assert [k.ms_per_run for k in profile.kinds] == sorted((k.ms_per_run for k in profile.kinds), reverse=True)
    stem_flops = 2 * (8 * SIZE[0] // 2 * SIZE[1] // 2) * (3 * 3 * 3)  # 3 -> 8 channels, 3x3, stride 2
    assert kinds[STEM].gflops == pytest.approx(stem_flops / 1e9, rel=1e-6)
    rated = profile.with_peak(kinds[STEM].gflops_per_s * 2)
    assert {k.kind: k for k in rated.kinds}[STEM].efficiency == pytest.approx(0.5)
    assert "stem conv" in rated.table()


@pytest.mark.parametrize("engine", ["eager", "compile"])
def test_layer_profile_counts_the_flops_of_transposed_convolutions(tiny_net, engine):
    """torch.profiler counts no FLOPs for a transposed convolution: the up-sampling layers (53 % of
    SkipNet-ShuffleNet's folded eager profile at 512x1024 on a Zen 3 EPYC) had no GFLOPs and no
    efficiency."""
    from rtseg.inference.int8_layers import UPSAMPLING
    from rtseg.profiling.flops import count_flops
    from rtseg.profiling.layers import profile_runner

    _, end_to_end = build_runners(tiny_net, SIZE, Backend(engine, threads=1, fused_labels=False))
    kinds = {k.kind: k for k in profile_runner(end_to_end, torch.randn(1, 3, *SIZE), runs=2).kinds}
    up_flops = count_flops(tiny_net, SIZE) - count_flops(nn.Sequential(tiny_net.down, tiny_net.score), SIZE)
    assert up_flops == 2 * 19 * (SIZE[0] // 2) * (SIZE[1] // 2) * 19 * 4 * 4
    assert kinds[UPSAMPLING].gflops == pytest.approx(up_flops / 1e9, rel=1e-6)
    assert kinds[UPSAMPLING].gflops_per_s > 0


@pytest.mark.parametrize("engine", ["eager", "compile"])
def test_layer_profile_gives_the_fused_up_sampling_and_argmax_one_kind_with_its_flops(tiny_net, engine):
    _, end_to_end = build_runners(tiny_net, SIZE, Backend(engine, threads=1, fused_labels=True))
    assert end_to_end.details["argmax_first"]
    kinds = {k.kind: k for k in profile_runner(end_to_end, torch.randn(1, 3, *SIZE), runs=2).kinds}
    assert UPSAMPLED_LABELS in kinds and ARGMAX not in kinds  # the max inside it is not counted again
    # its matrix products: (17 x 33 phase pixels) x (2 x 2 taps x 19 in) x (19 classes x 2 x 2 phases)
    assert kinds[UPSAMPLED_LABELS].gflops == pytest.approx(2 * 17 * 33 * 76 * 76 / 1e9, rel=1e-6)


def test_onnxruntime_profile_counts_only_the_timed_runs():
    from rtseg.profiling.layers import timed_runs_start

    events = [{"cat": "Session", "name": "model_run", "ts": t} for t in (10, 20, 30, 40)]
    assert timed_runs_start(events, 2) == 30 and timed_runs_start(events, 9) == 0.0


# --- measure_speed and the command -------------------------------------------------------------

EXPECTED_KEYS = {"fps", "fps_model", "latency_ms", "latency_model_ms", "engine", "precision", "gflops",
                 "efficiency", "efficiency_fault", "peak_gflops_per_s", "peak_spread", "warnings", "end_to_end", "model_only", "hardware", "warmup",
                 "threads", "batch", "size", "model", "device", "settings"}


def test_measure_speed_records_the_protocol(tiny_net):
    tiny = tiny_net
    threads_before = torch.get_num_threads()
    result = measure_speed(tiny, SIZE, Backend(threads=1), TimingProtocol(runs=3, max_warmup=4, warmup_window=2,
                                                                          peak_matrix=64), batch=2)
    record = json.loads(json.dumps(result.as_dict()))
    assert EXPECTED_KEYS <= set(record)
    assert record["engine"] == "eager" and record["precision"] == "fp32" and record["threads"] == 1
    assert record["end_to_end"]["runs"] == record["model_only"]["runs"] == 3
    assert record["fps"] == pytest.approx(result.end_to_end.fps_median, rel=1e-3)
    assert record["latency_ms"] == pytest.approx(result.end_to_end.latency_median_ms, rel=1e-3, abs=0.005)  # 2 decimals
    assert record["gflops"] == pytest.approx(rtseg.profiling.flops.count_flops(tiny, SIZE) / 1e9, rel=1e-3)
    # efficiency = achieved FLOP/s / measured peak, or a fault when the tiny peak matrix was beaten
    ratio = record["gflops"] * record["fps_model"] / record["peak_gflops_per_s"]
    if ratio <= 1:
        assert record["efficiency"] == pytest.approx(ratio, rel=1e-2) and record["efficiency_fault"] is None
    else:
        assert record["efficiency"] is None and "measurement fault" in record["efficiency_fault"]
    assert len(record["peak"]["trials"]) == 2 * TimingProtocol().peak_trials  # before and after the timing
    assert record["settings"]["protocol"]["block"] == TimingProtocol().block
    assert record["settings"]["bn_folded"] > 0
    assert record["warmup"]["end_to_end"]["runs"] <= 4
    assert record["hardware"]["threads"] == 1 and torch.__version__.startswith(record["hardware"]["versions"]["torch"])
    assert torch.get_num_threads() == threads_before  # the caller's thread count is restored
    memory = record["settings"]["allocator"]
    assert memory["policy"] == "reuse" and memory["how"]
    assert memory["page_faults_per_run"] is None or memory["page_faults_per_run"] >= 0


def test_measure_speed_times_with_the_allocator_policy_of_the_backend(tiny_net, monkeypatch):
    import rtseg.profiling.speed as speed

    policies = []
    real = speed.allocator

    def recording(policy):
        policies.append(policy)
        return real(policy)

    monkeypatch.setattr(speed, "allocator", recording)
    result = measure_speed(tiny_net, SIZE, Backend(threads=1, allocator="system"),
                           TimingProtocol(runs=3, max_warmup=2, warmup_window=1, measure_peak=False))
    assert policies == ["system"] and result.settings["allocator"]["policy"] == "system"


def test_speed_command_prints_one_json_object():
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(["speed", "--model", "skipnet-mobilenet_v1", "-O", "width=0.25", "--size", "32x64",
                     "--threads", "1", "--json"])
    assert code == 0, err.getvalue()
    record = json.loads(out.getvalue())
    assert EXPECTED_KEYS <= set(record)
    assert record["end_to_end"]["runs"] >= 20 and record["size"] == "32x64"
    assert record["peak"]["method"] in ("torch.mm", "torch conv2d 3x3 256ch channels_last") and record["peak_gflops_per_s"] > 0
    assert set(record["peak"]["candidates"]) == {"torch", "conv"}


@pytest.mark.parametrize("argv,message", [
    (["--runs", "5"], "at least 20"),
    (["--engine", "eager", "--precision", "int8"], "cannot run precision 'int8'"),
    (["--calibration-data", "/nonexistent"], "for --precision int8"),
])
def test_speed_command_errors_are_one_line(argv, message):
    err = io.StringIO()
    with redirect_stderr(err), redirect_stdout(io.StringIO()):
        code = main(["speed", "--model", "skipnet-mobilenet_v1", "-O", "width=0.25", "--size", "32x64", *argv])
    assert code == 2
    assert message in err.getvalue() and "Traceback" not in err.getvalue()
    assert len(err.getvalue().strip().splitlines()) == 1


# --- roofline and hardware ------------------------------------------------------------------

def test_matmul_peak_is_the_best_of_its_trials_over_sizes():
    fp32 = measure_peak("fp32", sizes=(32, 64), runs=2, trials=3)
    assert set(fp32.candidates) == {"torch", "conv"}  # a matrix multiply and, on the CPU, a convolution
    assert fp32.gflops_per_s == pytest.approx(max(fp32.candidates.values()), abs=0.01)
    assert fp32.method in ("torch.mm", "torch conv2d 3x3 256ch channels_last")
    assert fp32.sizes == (32, 64) and fp32.matrix in (32, 64)
    assert len(fp32.trials) == 3 and fp32.gflops_per_s == max(fp32.trials)
    assert fp32.spread == pytest.approx((max(fp32.trials) - min(fp32.trials)) / max(fp32.trials))
    record = fp32.as_dict()
    assert record["trials"] and record["spread"] is not None and record["sizes"] == [32, 64]
    int8 = measure_peak("int8", matrix=64, runs=2, trials=1)
    assert set(int8.candidates) == {"torch", "onnxruntime"}
    measured = [v for v in int8.candidates.values() if isinstance(v, float)]
    assert int8.gflops_per_s == (pytest.approx(max(measured), abs=0.01) if measured else None)
    with pytest.raises(ValueError):
        measure_peak("fp64")


def test_peak_climbs_to_a_larger_size_only_where_a_call_there_stays_short(monkeypatch):
    from rtseg.profiling import roofline

    measured = []

    def fake(precision, device, n, runs):
        measured.append(n)
        return float(n), (n / 256) ** 3 * 0.05  # GFLOP/s, seconds: 64 -> 0.8 ms, 256 -> 0.05 s, 1024 -> 3.2 s
    def fake_conv(precision, device, n, runs):
        measured.append(-n)
        return n / 2, (n / 64) ** 3 * 0.05  # slower than the multiply here: 64 -> 0.05 s, 256 -> 3.2 s

    monkeypatch.setattr(roofline, "_torch_matmul", fake)
    monkeypatch.setattr(roofline, "_torch_conv", fake_conv)
    peak = measure_peak("fp32", sizes=(256, 64, 1024), trials=2, longest_call_s=1.0)
    # 1024 is never tried (a call there would take 3.2 s), nor the conv at 256: projected from its 64 call
    assert measured == [64, 256, -64] * 2
    assert peak.gflops_per_s == 256.0 and peak.matrix == 256 and peak.trials == [256.0, 256.0]
    assert peak.method == "torch.mm" and peak.candidates == {"torch": 256.0, "conv": 32.0}


def test_a_convolution_faster_than_the_multiply_is_the_float_peak(monkeypatch):
    """On an AMD EPYC Zen 5 oneDNN's convolutions beat torch.mm, so models beat a multiply-only peak."""
    from rtseg.profiling import roofline

    monkeypatch.setattr(roofline, "_torch_matmul", lambda precision, device, n, runs: (180.0, 0.01))
    monkeypatch.setattr(roofline, "_torch_conv", lambda precision, device, n, runs: (240.0, 0.01))
    peak = measure_peak("fp32", sizes=(64,), trials=1)
    assert peak.gflops_per_s == 240.0 and peak.method.startswith("torch conv2d")
    assert "conv" not in roofline._kernels("int8", "cpu", 1) and "conv" not in roofline._kernels("fp32", "cuda", 1)


def test_combined_peak_keeps_the_best_and_every_trial():
    before = Peak("fp32", 90.0, "torch.mm", 1024, {"torch": 90.0}, [80.0, 90.0], (1024, 2048))
    after = Peak("fp32", 160.0, "torch.mm", 2048, {"torch": 160.0}, [160.0, 150.0], (1024, 2048))
    peak = combine_peaks(before, after)
    assert peak.gflops_per_s == 160.0 and peak.matrix == 2048 and peak.trials == [80.0, 90.0, 160.0, 150.0]
    assert peak.spread == pytest.approx(0.5)
    unmeasured = Peak("fp16", None, "n/a", 2048, {"torch": "n/a: no kernel"})
    assert combine_peaks(unmeasured, unmeasured).gflops_per_s is None


def _result(gflops: float, fps_model: float, peak: float | None, e2e_ms: float = 10.0) -> SpeedResult:
    model_only = TimingStats.from_seconds([1 / fps_model] * 3)
    end_to_end = TimingStats.from_seconds([e2e_ms / 1e3] * 3)
    return SpeedResult("m", (8, 8), 1, "eager", "fp32", "cpu", 1, gflops, 1, end_to_end, model_only, {},
                       {"gflops_per_s": peak} if peak else None, {})


def test_efficiency_above_100_percent_is_a_fault_not_a_figure():
    fine = _result(gflops=10.0, fps_model=5.0, peak=100.0)
    assert fine.efficiency == pytest.approx(0.5) and fine.efficiency_fault is None
    faulty = _result(gflops=10.0, fps_model=16.8, peak=93.7)  # the demo's 179.7 % (UNet-ResNet18)
    assert faulty.efficiency is None
    assert "measurement fault" in faulty.efficiency_fault and "93.7" in faulty.efficiency_fault
    record = faulty.as_dict()
    assert record["efficiency"] is None and record["efficiency_fault"] == faulty.efficiency_fault
    assert _result(gflops=10.0, fps_model=5.0, peak=None).efficiency is None
    assert efficiency_fault(100.0, 100.0, "fp32") is None


def test_model_only_slower_than_end_to_end_is_flagged():
    fast, slow = TimingStats.from_seconds([0.010] * 3), TimingStats.from_seconds([0.020] * 3)
    assert timing_warnings(fast, slow, {}) == []
    assert timing_warnings(TimingStats.from_seconds([0.0102] * 3), fast, {}) == []  # within the noise
    warning, = timing_warnings(slow, fast, {"argmax_first": True})
    assert "100 % slower than end-to-end" in warning and "argmax" in warning
    assert "disturbed" in timing_warnings(slow, fast, {})[0]


def test_hardware_record():
    info = describe("cpu", threads=3)
    assert info["cpu"] and info["threads"] == 3 and info["usable_cores"] >= 1
    assert torch.__version__.startswith(info["versions"]["torch"]) and info["gpu"] is None


# --- CUDA (benchmarks/gpu_smoke.sh runs these on a GPU machine; skipped without one) ---------------

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@CUDA
@pytest.mark.parametrize("engine,precision", [("eager", "fp32"), ("eager", "fp16"), ("eager", "bf16"),
                                              ("compile", "fp16")])
def test_cuda_engines_give_the_cpu_answer(tiny_net, engine, precision):
    model_only, end_to_end = build_runners(tiny_net, SIZE, Backend(engine, precision, "cuda"))
    x = torch.randn(1, 3, *SIZE)
    with torch.no_grad():
        reference = tiny_net(x)
    logits = model_only(x.cuda()).float().cpu()
    labels = end_to_end(x.cuda()).cpu()
    tolerance = 1e-3 if precision == "fp32" else 0.05 * reference.abs().max()
    assert (logits - reference).abs().max() < tolerance
    assert (labels == reference.argmax(1)).float().mean() > (0.999 if precision == "fp32" else 0.95)


@CUDA
def test_cuda_measure_speed_times_the_gpu(tiny_net):
    result = measure_speed(tiny_net, SIZE, Backend("eager", "fp16", "cuda"),
                           TimingProtocol(runs=3, max_warmup=4, warmup_window=2, peak_matrix=256))
    record = result.as_dict()
    assert record["device"] == "cuda" and record["hardware"]["gpu"] == torch.cuda.get_device_name()
    assert record["end_to_end"]["runs"] == 3 and record["fps"] > 0
    assert record["peak"]["method"] == "torch.mm" and len(record["peak"]["trials"]) == 4


@CUDA
def test_cuda_onnxruntime_binds_gpu_memory(tiny_net):
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("onnxruntime-gpu is not installed")
    model_only, end_to_end = build_runners(tiny_net, SIZE, Backend("onnxruntime", "fp16", "cuda"))
    x = torch.randn(1, 3, *SIZE)
    with torch.no_grad():
        reference = tiny_net(x)
    assert (end_to_end(x.cuda()).cpu() == reference.argmax(1)).float().mean() > 0.95
    assert model_only.details["providers"][0] == "CUDAExecutionProvider"


# --- the engine-agnostic predictor ------------------------------------------------------------

def _reference_prediction(model, image, size):
    """What rtseg evaluate computes: torchvision resize + normalise, then the evaluator's argmax path."""
    from torchvision.transforms.v2 import functional as TF

    from rtseg.normalisation import IMAGENET_MEAN, IMAGENET_STD
    from rtseg.training.evaluator import predict_labels

    x = torch.from_numpy(image).permute(2, 0, 1)
    if size is not None:
        x = TF.resize(x, list(size), antialias=True)
    x = TF.normalize(TF.to_dtype(x, torch.float32, scale=True), list(IMAGENET_MEAN), list(IMAGENET_STD))
    return predict_labels(model, x.unsqueeze(0), image.shape[:2])[0].to(torch.uint8).numpy()


@pytest.mark.parametrize("engine", ["eager", "onnxruntime"])
def test_predictor_matches_the_evaluators_prediction(tiny_net, engine):
    image = np.random.default_rng(0).integers(0, 256, (40, 72, 3), dtype=np.uint8)
    for size in (None, SIZE):  # as it is, and resized to the network's size and back
        expected = _reference_prediction(tiny_net, image, size)
        got = Predictor(tiny_net, Backend(engine), size=size)(image)
        assert got.dtype == np.uint8 and got.shape == image.shape[:2]
        assert (got == expected).mean() > 0.999


def test_predictor_int8_needs_calibration(tiny_net):
    tiny = tiny_net
    with pytest.raises(RtsegError, match="calibration"):
        Predictor(tiny, Backend("onnxruntime", "int8"))


def test_a_conv_is_timed_with_what_it_calls_so_no_kind_beats_the_peak(tiny_net):
    """The profiler puts a convolution's FLOPs on its outer op and its time on the inner one;
    counted op by op, a kind got FLOPs with a fraction of its time (a grouped conv at 125 % of
    the peak on an AVX-512 EPYC). Rated against the whole frame's rate, no kind may be faster
    than the model as a whole by more than the share of time it is not given."""
    from rtseg.profiling.layers import profile_runner
    from rtseg.profiling.speed import layer_warnings

    _, end_to_end = build_runners(tiny_net, SIZE, Backend("eager", threads=1))
    profile = profile_runner(end_to_end, torch.randn(1, 3, *SIZE), runs=3)
    conv_kinds = [k for k in profile.kinds if k.gflops > 0]
    assert conv_kinds and all(k.ms_per_run > 0 for k in conv_kinds)
    total_ms = sum(k.ms_per_run for k in profile.kinds)
    assert sum(k.ms_per_run for k in conv_kinds) > 0.2 * total_ms  # the kernels' time sits with the convs
    rated = profile.with_peak(max(k.gflops_per_s for k in conv_kinds) / 2).as_dict()  # a peak every conv beats
    from rtseg.profiling.layers import KindTime, LayerProfile

    beaten = LayerProfile("eager", "fp32", 3, [KindTime("grouped conv", 10.0, 1.0, 44, 2.5, 250.0)]).with_peak(200.0)
    assert "fault" in beaten.table() and "125" not in beaten.table()  # never printed as a figure
    assert layer_warnings(rated) and "measurement fault" in layer_warnings(rated)[0]
    assert layer_warnings(profile.with_peak(1e9).as_dict()) == []
