"""Where a runner's time goes: the share of each kind of layer, and its efficiency against the peak.

``profile_runner`` runs a built runner ``runs`` times under the engine's own profiler (ONNX
Runtime's ``enable_profiling`` for ``onnxruntime``, ``torch.profiler`` for ``eager`` and
``compile``), sorts every node or operator into a kind (the convolution kinds of
``rtseg.inference.int8_layers``, the argmax, pixel moves, quantize/dequantize, layout
reorders, element-wise and pooling), and sums per kind: milliseconds per run, share of the
profiled time, GFLOPs (convolutions: 2 x output elements x input channels per group x kernel
area; nothing else is counted) and GFLOP/s, which ``LayerProfile.with_peak`` turns into an
efficiency. The profilers add a little overhead per node, so the shares matter, not the sum.
"""

from __future__ import annotations

import json
import tempfile
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import conv_flop_count

from rtseg.inference.int8_layers import UPSAMPLING, consumers_of, conv_kind, reaches_pixel_shuffle
from rtseg.inference.onnx_export import INPUT_NAME, name_unnamed_nodes
from rtseg.inference.ort_session import create_session
from rtseg.inference.runner import Runner

ARGMAX = "argmax"
# rtseg.inference.upsampled_labels: the final up-sampling with the argmax, one operator
UPSAMPLED_LABELS = "up-sampling conv + argmax"
_UPSAMPLED_LABELS_OP = "rtseg::upsampled_labels"
PIXEL_MOVES = "pixel shuffle, crop, transpose"
QUANTIZE = "quantize, dequantize"
REORDER = "layout reorder"
ELEMENTWISE = "element-wise, pooling, other"
_MOVES = {"DepthToSpace", "SpaceToDepth", "Slice", "Transpose", "Reshape", "Squeeze", "Unsqueeze", "Cast",
          "pixel_shuffle", "slice", "permute", "transpose", "view", "reshape", "squeeze", "copy_", "contiguous",
          "clone", "_to_copy", "to"}
_QUANTIZE = {"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear"}
_REORDER = {"ReorderInput", "ReorderOutput"}


@dataclass(frozen=True)
class KindTime:
    kind: str
    ms_per_run: float
    share: float  # of the profiled time, 0..1
    nodes: int
    gflops: float = 0.0  # per run
    gflops_per_s: float | None = None
    efficiency: float | None = None  # against the peak given to with_peak, 0..1


@dataclass
class LayerProfile:
    engine: str
    precision: str
    runs: int
    kinds: list[KindTime] = field(default_factory=list)  # largest share first
    peak_gflops_per_s: float | None = None

    def with_peak(self, peak: float | None) -> "LayerProfile":
        kinds = [KindTime(k.kind, k.ms_per_run, k.share, k.nodes, k.gflops, k.gflops_per_s,
                          k.gflops_per_s / peak if peak and k.gflops_per_s else None) for k in self.kinds]
        return LayerProfile(self.engine, self.precision, self.runs, kinds, peak)

    def as_dict(self) -> dict:
        return asdict(self)

    def table(self) -> str:
        lines = [f"{'layer kind':32s} {'ms/run':>8s} {'share':>7s} {'nodes':>6s} {'GFLOPs':>7s} {'GFLOP/s':>8s} "
                 f"{'of peak':>8s}"]
        for k in self.kinds:
            rate = f"{k.gflops_per_s:8.1f}" if k.gflops_per_s and k.gflops >= 1e-3 else f"{'-':>8s}"
            eff = f"{'-':>8s}"
            if k.efficiency is not None and k.gflops >= 1e-3:  # above the peak: a measurement fault, no figure
                eff = f"{100 * k.efficiency:7.1f}%" if k.efficiency <= 1.0 else f"{'fault':>8s}"
            lines.append(f"{k.kind:32s} {k.ms_per_run:8.2f} {100 * k.share:6.1f}% {k.nodes:6d} {k.gflops:7.2f} "
                         f"{rate} {eff}")
        return "\n".join(lines)


def _summarise(engine: str, precision: str, runs: int, per_kind: dict[str, list]) -> LayerProfile:
    """``per_kind``: kind -> [total microseconds, nodes, total FLOPs] over all runs."""
    total = sum(v[0] for v in per_kind.values()) or 1.0
    kinds = []
    for kind, (micros, nodes, flops) in per_kind.items():
        ms = micros / runs / 1e3
        gflops = flops / runs / 1e9
        kinds.append(KindTime(kind, ms, micros / total, nodes, gflops, gflops / (ms / 1e3) if gflops and ms else None))
    return LayerProfile(engine, precision, runs, sorted(kinds, key=lambda k: -k.ms_per_run))


def conv_flops(output_shape, weight_shape) -> float:
    """2 x output elements x (input channels per group x kernel area)."""
    return 2.0 * float(np.prod(output_shape)) * float(np.prod(weight_shape[1:]))


def onnx_node_kinds(model) -> dict[str, str]:
    """``node name -> kind`` for every node of an (optimised) ONNX graph."""
    from onnx import numpy_helper

    graph = model.graph
    weights = {t.name: tuple(numpy_helper.to_array(t).shape) for t in graph.initializer}
    consumers = consumers_of(graph)
    kinds = {}
    for node in graph.node:
        op = node.op_type
        # the weight: input 1 of Conv and FusedConv, input 3 of QLinearConv
        weight = next((i for i in node.input if i in weights and len(weights[i]) == 4), None)
        if "Conv" in op and weight is not None:
            kinds[node.name] = conv_kind(_as_conv(node, weight), weights, reaches_pixel_shuffle(node, consumers))
        elif op == "ArgMax":
            kinds[node.name] = ARGMAX
        elif op in _MOVES:
            kinds[node.name] = PIXEL_MOVES
        elif op in _QUANTIZE:
            kinds[node.name] = QUANTIZE
        elif op in _REORDER:
            kinds[node.name] = REORDER
        else:
            kinds[node.name] = ELEMENTWISE
    return kinds


def _as_conv(node, weight: str):
    """A Conv-shaped view of a fused or quantized convolution node: its weight as input 1."""
    from onnx import helper

    return helper.make_node("Conv", ["x", weight], node.output[:1],
                            **{a.name: helper.get_attribute_value(a) for a in node.attribute if a.name == "group"})


def profile_onnxruntime(graph: bytes, x: np.ndarray, threads: int | None, runs: int = 20, *, warmup: int = 5,
                        engine: str = "onnxruntime", precision: str = "?") -> LayerProfile:
    """Per-kind time of one serialised graph (as ONNX Runtime optimises it here) on ``x``."""
    import onnx

    feed = {INPUT_NAME: np.ascontiguousarray(x, dtype=np.float32)}
    model = onnx.load_from_string(graph)
    if name_unnamed_nodes(model):  # the profiler tells nodes apart by name
        graph = model.SerializeToString()
    with tempfile.TemporaryDirectory(prefix="rtseg-profile-") as work:
        optimized = Path(work) / "optimized.onnx"
        session = create_session(graph, "cpu", threads, profile_prefix=Path(work) / "profile",
                                 optimized_path=optimized)
        outputs = [session.get_outputs()[0].name]
        for _ in range(warmup):
            session.run(outputs, feed)
        for _ in range(runs):
            session.run(outputs, feed)
        events = json.loads(Path(session.end_profiling()).read_text())
        kinds = onnx_node_kinds(onnx.load(str(optimized)))
    started = timed_runs_start(events, runs)
    per_kind: dict[str, list] = defaultdict(lambda: [0.0, 0, 0.0])
    counted = set()
    for event in events:
        if event.get("cat") != "Node" or not event["name"].endswith("_kernel_time") or event["ts"] < started:
            continue
        name = event["name"][: -len("_kernel_time")]
        kind = kinds.get(name, ELEMENTWISE)
        per_kind[kind][0] += event["dur"]
        if name not in counted:
            per_kind[kind][1] += 1
            counted.add(name)
    # FLOPs from the graph as written: the optimised one pads channels to the CPU's vector blocks
    for kind, flops in graph_conv_flops(model).items():
        if kind in per_kind:
            per_kind[kind][2] = flops * runs
    return _summarise(engine, precision, runs, per_kind)


def graph_conv_flops(model) -> dict[str, float]:
    """FLOPs per run of each convolution kind of an ONNX graph (float or QDQ), from shape inference."""
    from onnx import numpy_helper, shape_inference

    graph = shape_inference.infer_shapes(model).graph
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in list(graph.value_info) + list(graph.output)}
    weights = {t.name: tuple(numpy_helper.to_array(t).shape) for t in graph.initializer}
    for node in graph.node:  # a QDQ graph's weights arrive through a DequantizeLinear
        if node.op_type == "DequantizeLinear" and node.input[0] in weights:
            weights[node.output[0]] = weights[node.input[0]]
    consumers = consumers_of(graph)
    flops: dict[str, float] = defaultdict(float)
    for node in graph.node:
        if node.op_type == "Conv" and node.input[1] in weights and node.output[0] in shapes:
            kind = conv_kind(node, weights, reaches_pixel_shuffle(node, consumers))
            flops[kind] += conv_flops(shapes[node.output[0]], weights[node.input[1]])
    return dict(flops)


def timed_runs_start(events: list[dict], runs: int) -> float:
    """The timestamp from which the profile holds the last ``runs`` runs only (the warm-up excluded)."""
    starts = sorted(e["ts"] for e in events if e.get("cat") == "Session" and e.get("name") == "model_run")
    return starts[-runs] if len(starts) >= runs else 0.0


def _conv_kind_of(group: int, weight_shape) -> str:
    from onnx import helper

    node = helper.make_node("Conv", ["x", "w"], ["y"], group=group)
    return conv_kind(node, {"w": tuple(weight_shape)}, False)


def _torch_kind(name: str, shapes) -> tuple[str, float]:
    """Kind of one torch.profiler event (convolutions from their input shapes), and the FLOPs the
    profiler leaves out: it counts none for a transposed convolution (``aten::conv_transpose2d``,
    inductor's ``mkldnn::_convolution_transpose_pointwise``), which were the up-sampling layers'
    GFLOPs, so their efficiency went unreported; they are counted here from the input and weight
    shapes with ``torch.utils.flop_counter``'s rule (2 x input elements x the weight's
    ``out / groups x kernel area``, as ``count_flops`` counts them)."""
    if name == _UPSAMPLED_LABELS_OP:
        return UPSAMPLED_LABELS, 0.0  # its FLOPs are its matrix products', found inside it
    conv_shapes = _conv_shapes(shapes) if "conv" in name else None
    if "conv" in name and "transpose" in name:
        flops = conv_flop_count(*conv_shapes, [], transposed=True) if conv_shapes else 0  # none when not recorded
        return UPSAMPLING, float(flops)
    if conv_shapes:
        x_shape, w_shape = conv_shapes
        group = max(1, x_shape[1] // max(1, w_shape[1]))
        return _conv_kind_of(group, w_shape), 0.0
    base = name.split("::")[-1]
    if base.startswith("argmax"):
        return ARGMAX, 0.0
    if base in _MOVES:
        return PIXEL_MOVES, 0.0
    return ELEMENTWISE, 0.0


def _conv_shapes(shapes) -> tuple[list[int], list[int]] | None:
    """A convolution event's recorded input and weight shapes (both 4-d), or None."""
    if not shapes or len(shapes) < 2 or len(shapes[0]) != 4 or len(shapes[1]) != 4:
        return None
    return list(shapes[0]), list(shapes[1])


def _counted_whole(name: str) -> bool:
    """An op counted whole (inclusive time, FLOPs found anywhere inside): a convolution, or the
    fused up-sampling and argmax, whose matrix products and max are its own."""
    return "conv" in name or name == _UPSAMPLED_LABELS_OP


def _inside_whole_op(event) -> bool:
    parent = event.cpu_parent
    while parent is not None:
        if _counted_whole(parent.name):
            return True
        parent = parent.cpu_parent
    return False


def _subtree_flops(event) -> float:
    """The FLOPs the profiler gave a convolution: on its outer op or on one of the ops it calls
    (``aten::conv2d`` -> ``aten::convolution`` -> ``aten::mkldnn_convolution``); the largest, not
    the sum, since more than one level may carry the same count."""
    return max([float(event.flops or 0)] + [_subtree_flops(child) for child in event.cpu_children])


def profile_torch(runner: Runner, x: torch.Tensor, runs: int = 20, *, warmup: int = 5) -> LayerProfile:
    """Per-kind time of a PyTorch runner from ``torch.profiler``'s CPU operators. A convolution is
    its outermost op with everything it calls (inclusive time, and the FLOPs found anywhere in
    it): the FLOPs sit on the outer op and the time on the inner one that runs the kernel, so
    counting ops one by one split them (a kind with FLOPs but a fraction of its time, above the
    machine's peak). Every other op counts its self time; nothing is counted twice."""
    from torch.profiler import ProfilerActivity, profile

    for _ in range(warmup):
        runner(x)
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True, with_flops=True) as prof:
        for _ in range(runs):
            runner(x)
    per_kind: dict[str, list] = defaultdict(lambda: [0.0, 0, 0.0])
    for event in prof.events():
        if _inside_whole_op(event):
            continue  # inside a convolution's inclusive time
        conv = _counted_whole(event.name)
        micros = event.cpu_time_total if conv else event.self_cpu_time_total
        if micros <= 0:
            continue
        kind, shape_flops = _torch_kind(event.name, event.input_shapes)
        record = per_kind[kind]
        record[0] += micros
        record[1] += 1
        record[2] += max(_subtree_flops(event), shape_flops) if conv else float(event.flops or 0)
    for record in per_kind.values():
        record[1] = max(1, round(record[1] / runs))  # ops per run
    return _summarise(runner.engine, runner.precision, runs, per_kind)


def profile_runner(runner: Runner, x: torch.Tensor, runs: int = 20) -> LayerProfile:
    """``profile_onnxruntime`` or ``profile_torch``, whichever the runner's engine needs."""
    graph = getattr(runner, "graph", None)
    if runner.engine == "onnxruntime" and graph is not None:
        return profile_onnxruntime(graph, x.detach().cpu().numpy(), runner.backend.threads, runs,
                                   precision=runner.precision)
    return profile_torch(runner, x, runs)
