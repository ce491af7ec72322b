"""Which layers an int8 graph keeps in float, chosen by timing on this machine.

ONNX Runtime's int8 kernels are not faster for every layer: its u8 x s8 convolutions shine
on dense and 1x1 convolutions, but grouped and depthwise ones, or a 3-channel stem, can run
slower than in float once the quantize/dequantize steps around them are counted
(SkipNet-ShuffleNet ran slower in int8 than in fp32). No rule predicts it across CPUs, so
``choose_float_layers`` measures: the layers are sorted into kinds (``layer_kinds``); the
all-int8 graph, the float graph and one graph per kind kept in float are timed side by side
(end-to-end, in blocks after the process's threads are idle, as the speed protocol does);
every kind whose float version beat all-int8 by more than ``margin`` joins the plan, their
union is timed against the best single choice, and the fastest graph measured wins, unless it
does not beat the float graph by ``margin`` too: then every layer stays in float (no mIoU
cost for no clear gain) and the plan says so. A winning int8 graph is then timed once more
against the float graph alone, with twice the runs, and must beat it by ``margin`` again: two
graphs within a few per cent flip between rounds (SkipNet-EfficientNet-B0 on a Zen 3: int8
106.1 against 117.6 ms at one build, kept in float at the next, and 0.89x its fp32 graph in the
frame of the first), and "int8 is never slower than fp32" must not rest on one round.

The result, ``Int8Plan``, lists the kinds and node names kept in float and every timing it was
chosen on; ``rtseg.inference.onnx_runtime`` records it with the runner, and a later build at
another size can reuse it (``Backend.int8_float``) instead of measuring again.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from rtseg.errors import RtsegError
from rtseg.inference.onnx_export import INPUT_NAME, rewrite_labels, sub_graph
from rtseg.inference.ort_session import create_session
from rtseg.inference.quantize import Quantizer
from rtseg.profiling.timing import settled_medians

STEM = "stem conv"  # the first convolution, on the 3-channel image
POINTWISE = "1x1 conv"
DENSE = "kxk conv"
GROUPED = "grouped conv"
DEPTHWISE = "depthwise conv"
UPSAMPLING = "up-sampling conv"  # a sub-pixel convolution, feeding a DepthToSpace
OTHER = "pooling, resize, element-wise"
KINDS = (STEM, POINTWISE, DENSE, GROUPED, DEPTHWISE, UPSAMPLING, OTHER)
ALL_INT8, FLOAT = "all int8", "all float"
# The names of the confirmation round's two graphs in ``Int8Plan.timings_ms``.
CONFIRM_INT8, CONFIRM_FLOAT = "chosen int8 (confirmation)", "all float (confirmation)"
# Ops that never carry quantization themselves (shapes and the argmax's own chain).
_NEVER_QUANTIZED = {"Shape", "Constant", "ArgMax", "Cast", "Squeeze", "Unsqueeze"}


@dataclass(frozen=True)
class Int8Plan:
    float_kinds: tuple[str, ...]  # kinds kept in float ((): everything quantized)
    all_float: bool = False  # int8 was slower than float for this model: nothing is quantized
    kinds: dict = field(default_factory=dict)  # kind -> number of nodes of that kind
    float_nodes: tuple[str, ...] = ()
    timings_ms: dict = field(default_factory=dict)  # candidate -> median end-to-end ms (empty: not measured)

    @property
    def label(self) -> str:
        if self.all_float:
            return "every layer in float (int8 was slower here)"
        return f"kept in float: {', '.join(self.float_kinds)}" if self.float_kinds else "every layer in int8"

    def as_dict(self) -> dict:
        data = asdict(self)
        data["label"] = self.label
        return data


def conv_kind(node, weights: dict[str, tuple[int, ...]], feeds_depth_to_space: bool) -> str:
    """The kind of one ``Conv`` node, from its group and its weight's shape ``[O, I/g, kh, kw]``."""
    from onnx import helper

    attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    group = int(attributes.get("group", 1))
    shape = weights.get(node.input[1])
    if feeds_depth_to_space:
        return UPSAMPLING
    if shape is None:
        return DENSE
    channels_in = shape[1] * group
    if channels_in <= 4:
        return STEM
    if group > 1:
        return DEPTHWISE if group == channels_in else GROUPED
    return POINTWISE if tuple(shape[2:]) == (1, 1) else DENSE


# Ops between a sub-pixel convolution and its DepthToSpace in quantized or optimised graphs.
_PASS_THROUGH = {"Transpose", "Reshape", "QuantizeLinear", "DequantizeLinear", "Cast", "ReorderOutput"}


def reaches_pixel_shuffle(node, consumers: dict, depth: int = 0) -> bool:
    """Whether ``node``'s output reaches a DepthToSpace (or the argmax taken before one) through
    layout and quantization steps only: then it is a sub-pixel up-sampling convolution.
    ``consumers``: tensor name -> the nodes that read it."""
    for out in node.output:
        for consumer in consumers.get(out, ()):
            if consumer.op_type in ("DepthToSpace", "ArgMax"):
                return True
            if consumer.op_type in _PASS_THROUGH and depth < 4 and reaches_pixel_shuffle(consumer, consumers, depth + 1):
                return True
    return False


def consumers_of(graph) -> dict[str, list]:
    found: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            found.setdefault(name, []).append(node)
    return found


def layer_kinds(model) -> dict[str, list[str]]:
    """``kind -> names`` of the nodes of an ONNX graph that quantization would touch."""
    from onnx import numpy_helper

    graph = model.graph
    weights = {t.name: tuple(numpy_helper.to_array(t).shape) for t in graph.initializer}
    consumers = consumers_of(graph)
    kinds: dict[str, list[str]] = {}
    for node in graph.node:
        if node.op_type == "Conv":
            kind = conv_kind(node, weights, reaches_pixel_shuffle(node, consumers))
        elif node.op_type in _NEVER_QUANTIZED:
            continue
        else:
            kind = OTHER
        kinds.setdefault(kind, []).append(node.name)
    return {kind: kinds[kind] for kind in KINDS if kind in kinds}


def time_graphs(graphs: dict[str, bytes], x: np.ndarray, threads: int | None, *, runs: int = 10,
                block: int = 5, output: str = "labels") -> dict[str, float]:
    """Median ms of each serialised graph's ``output`` on ``x``, side by side in blocks."""
    sessions = {name: create_session(graph, "cpu", threads) for name, graph in graphs.items()}
    feed = {INPUT_NAME: np.ascontiguousarray(x, dtype=np.float32)}

    def step_of(session) -> Callable[[], float]:
        import time

        def step() -> float:
            began = time.perf_counter()
            session.run([output], feed)
            return time.perf_counter() - began
        return step

    medians = settled_medians([step_of(s) for s in sessions.values()], runs, block)
    del sessions
    return {name: 1e3 * seconds for name, seconds in zip(graphs, medians)}


def choose_float_layers(float_graph: str | Path, quantizer: Quantizer, x: np.ndarray, threads: int | None, *,
                        margin: float = 0.03, runs: int = 10, timer=time_graphs) -> Int8Plan:
    """Time the candidates (see the module docstring) and return the fastest plan.

    ``float_graph``: the float ONNX graph the quantizer was made from (its labels are timed as
    the float candidate); ``x``: an input of the graph's shape; ``timer`` is for tests.
    """
    import onnx

    kinds = layer_kinds(onnx.load(str(quantizer.prepared)))
    work = quantizer.work
    float_copy = work / "float-timed.onnx"
    float_copy.write_bytes(Path(float_graph).read_bytes())
    rewrite_labels(float_copy)

    def build(kept: Sequence[str]) -> bytes:
        path = work / f"int8-{len(list(work.glob('int8-*.onnx')))}.onnx"
        quantizer.quantize(path, [n for kind in kept for n in kinds[kind]])
        return sub_graph(path, "labels")

    candidates = {ALL_INT8: build(()), FLOAT: sub_graph(float_copy, "labels")}
    candidates.update({kind: build((kind,)) for kind in kinds})
    graphs = {(): candidates[ALL_INT8], **{(kind,): candidates[kind] for kind in kinds}}
    timings = dict(timer(candidates, x, threads, runs=runs))
    faster = tuple(k for k in kinds if timings[k] < (1 - margin) * timings[ALL_INT8])
    if len(faster) > 1:  # their union, against the best single one and the float graph
        union = " + ".join(faster)
        best_single = min(faster, key=timings.get)
        graphs[faster] = build(faster)
        again = timer({union: graphs[faster], best_single: candidates[best_single], FLOAT: candidates[FLOAT]},
                      x, threads, runs=runs)
        timings.update({union: again[union], f"{best_single} (again)": again[best_single],
                        f"{FLOAT} (again)": again[FLOAT]})
        scale = timings[best_single] / again[best_single]  # put the second round on the first's clock
        choices = {(): timings[ALL_INT8], (best_single,): timings[best_single], faster: again[union] * scale}
        float_time = min(timings[FLOAT], again[FLOAT] * scale)
    else:
        choices = {(): timings[ALL_INT8], **{(k,): timings[k] for k in faster}}
        float_time = timings[FLOAT]
    kept = min(choices, key=choices.get)
    counts = {kind: len(names) for kind, names in kinds.items()}
    rounded = {k: round(v, 3) for k, v in timings.items()}
    all_float = Int8Plan(tuple(kinds), True, counts, tuple(n for names in kinds.values() for n in names), rounded)
    if choices[kept] > (1 - margin) * float_time:  # int8 must be clearly faster: float has no mIoU cost
        return all_float
    confirm = timer({CONFIRM_INT8: graphs[kept], CONFIRM_FLOAT: candidates[FLOAT]}, x, threads, runs=2 * runs)
    rounded.update({k: round(v, 3) for k, v in confirm.items()})
    if confirm[CONFIRM_INT8] > (1 - margin) * confirm[CONFIRM_FLOAT]:  # faster in one round only
        return all_float
    return Int8Plan(kept, False, counts, tuple(n for kind in kept for n in kinds[kind]), rounded)


def plan_from_kinds(quantizer: Quantizer, float_kinds: Sequence[str]) -> Int8Plan:
    """The plan that keeps ``float_kinds`` in float, without measuring (a plan chosen before;
    ``("all float",)``: nothing quantized)."""
    import onnx

    unknown = [k for k in float_kinds if k not in (*KINDS, FLOAT)]
    if unknown:
        raise RtsegError(f"int8 float layer kind {unknown[0]!r} is not one of {', '.join(KINDS)}")
    kinds = layer_kinds(onnx.load(str(quantizer.prepared)))
    counts = {k: len(v) for k, v in kinds.items()}
    if FLOAT in float_kinds:
        return Int8Plan(tuple(kinds), True, counts, tuple(n for names in kinds.values() for n in names))
    kept = tuple(k for k in float_kinds if k in kinds)
    return Int8Plan(kept, False, counts, tuple(n for k in kept for n in kinds[k]))


def build_int8_graph(float_graph: str | Path, target: str | Path, calibration, x: np.ndarray, *,
                     threads: int | None = None, float_kinds: Sequence[str] | None = None,
                     measure: bool = True) -> tuple[Path, Int8Plan]:
    """Write the int8 graph of ``float_graph`` (not yet argmax-rewritten) to ``target``, ``labels``
    rewritten, keeping in float what ``float_kinds`` names, or, when None and ``measure``, what
    ``choose_float_layers`` finds faster in float on input ``x``; without either, all int8."""
    import shutil
    import tempfile

    target = Path(target)
    with tempfile.TemporaryDirectory(prefix="rtseg-int8-") as work:
        quantizer = Quantizer(float_graph, calibration, work)
        if float_kinds is not None:
            plan = plan_from_kinds(quantizer, float_kinds)
        elif measure:
            plan = choose_float_layers(float_graph, quantizer, x, threads)
        else:
            plan = plan_from_kinds(quantizer, ())
        if plan.all_float:
            shutil.copyfile(float_graph, target)
            rewrite_labels(target)
        else:
            quantizer.quantize(target, plan.float_nodes)
    return target, plan
