"""The PyTorch engines: ``eager`` and ``compile`` (inductor), in fp32, bf16 and fp16.

Both start from the same prepared copy of the model: eval mode, batch norm folded into the
convolutions, optionally transposed convolutions rewritten as sub-pixel convolutions, and
channels_last memory format (oneDNN's native layout on CPU, tensor cores' on GPU). The labels
of a network that ends in a linear layer (a transposed convolution to full resolution, a 1x1
classifier at it) can be taken inside it (``rtseg.inference.upsampled_labels``), as ONNX
Runtime's graph takes the argmax before its last pixel shuffle: unless ``Backend.fused_labels``
says, both ways are timed at build and the faster kept (``details["labels_choice"]``); the
model-only runner always returns the full logits.
Reduced precision is ``torch.autocast``, the standard way; ``compile`` freezes the weights
(``torch._inductor.config.freezing``), which lets inductor pre-pack them for oneDNN.

``compile`` is what it says or it fails: every build is its own ``torch.compile`` call with
``isolate_recompiles=True`` (its compiled code and its recompile count are its own, so models
compiled earlier in the same process cannot use up its recompile limit, as happened with
dynamo's shared per-function limit of 8), ``fullgraph=True`` (a graph break raises instead of
running part of the model eagerly) and ``recompile_limit=1`` (a later call that would need
another graph raises ``FailOnRecompileLimitHit`` instead of quietly running eager). After the
build call, dynamo's counters must show one new graph and no graph break; anything else is a
``CompileFallback`` error, so the setting is reported as failed and never timed as "compile".
``torch._dynamo.reset()`` is not used: it would throw away the compiled code of runners built
earlier in the same process, which would then recompile while being timed.
"""

from __future__ import annotations

import copy
import functools
import time
from typing import Callable

import torch
from torch import nn

from rtseg.errors import RtsegError
from rtseg.inference.backend import Backend
from rtseg.inference.folding import fold_batch_norm
from rtseg.inference.runner import Runner
from rtseg.inference.subpixel import rewrite_conv_transpose
from rtseg.inference.upsampled_labels import UpsampledLabels, can_fuse
from rtseg.memory import allocator
from rtseg.models.decoders.base import fit_to
from rtseg.profiling.timing import settled_medians, stopwatch
from rtseg.runtime import autocast

# Small enough to cost nothing, large enough for a stride-32 encoder.
_PROBE_SIZE = (64, 64)
# The labels are taken inside the last layer only when that is this much faster (the int8 plan's margin).
LABELS_MARGIN = 0.03


def fused_labels_of(model: nn.Module) -> UpsampledLabels | None:
    """The labels step inside ``model``'s output layer (``SegmentationNetwork.output_layer``),
    or None for a network without one that can be fused."""
    layer = model.output_layer() if hasattr(model, "output_layer") else None
    return UpsampledLabels(layer) if can_fuse(layer) else None


class EndToEnd(nn.Module):
    """Image -> train ids, inside the timed (and compiled) region: the argmax over the classes of
    the logits, or, given ``labels`` (``fused_labels_of(model)``), the labels taken inside the
    network's output layer."""

    def __init__(self, model: nn.Module, labels: UpsampledLabels | None = None):
        super().__init__()
        self.model = model
        self.labels = labels

    @property
    def fused(self) -> bool:
        return self.labels is not None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.labels is None:
            return self.model(x).argmax(1)
        return self.labels(self.model.output_layer_input(x), x.shape[-2:])


def prepare_model(model: nn.Module, device: str = "cpu", *, fold_bn: bool = True, subpixel: bool = False,
                  channels_last: bool = True) -> tuple[nn.Module, dict]:
    """An inference copy of ``model`` and what was done to it (``bn_folded``, ``conv_transpose_rewritten``)."""
    model = copy.deepcopy(model).eval().to(device)
    probe = torch.randn(1, 3, *_PROBE_SIZE, device=device)
    details = {"bn_folded": 0, "conv_transpose_rewritten": 0, "channels_last": bool(channels_last)}
    if fold_bn:
        model, details["bn_folded"] = fold_batch_norm(model, probe, inplace=True)
    if subpixel:
        details["conv_transpose_rewritten"] = rewrite_conv_transpose(model)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model, details


def _eager_fn(module: nn.Module, precision: str, device: str, channels_last: bool, compiled: bool = False):
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    if not compiled:
        def run(x: torch.Tensor) -> torch.Tensor:
            with torch.inference_mode(), autocast(precision, device):
                return module(x.contiguous(memory_format=memory_format))
        return run

    def run_compiled(x: torch.Tensor) -> torch.Tensor:
        # Dynamo guards on the input's dispatch keys and strides: an inference-mode tensor has other
        # keys than an ordinary one, and a size-1 axis may carry any stride. Compiled code always
        # sees an ordinary tensor with the canonical strides (a free view for a size-1 axis), also
        # when the caller runs under inference_mode.
        with torch.inference_mode(False), torch.no_grad(), autocast(precision, device):
            if x.is_inference():
                x = x.clone()
            x = x.contiguous(memory_format=memory_format)
            return module(x.as_strided(x.shape, canonical_strides(x.shape, channels_last), x.storage_offset()))
    return run_compiled


def canonical_strides(shape: torch.Size, channels_last: bool) -> tuple[int, ...]:
    """The strides ``torch.empty(shape)`` would have (NCHW or NHWC order for 4-d shapes)."""
    memory_format = torch.channels_last if channels_last and len(shape) == 4 else torch.contiguous_format
    return torch.empty(shape, device="meta", memory_format=memory_format).stride()


def build_torch_runners(model: nn.Module, size: tuple[int, int], backend: Backend, *,
                        batch: int = 1) -> tuple[Runner, Runner]:
    started = time.perf_counter()
    channels_last = True if backend.channels_last is None else backend.channels_last
    subpixel = False if backend.subpixel is None else backend.subpixel
    device, precision = backend.device, backend.precision
    prepared, details = prepare_model(model, device, fold_bn=backend.fold_bn, subpixel=subpixel,
                                      channels_last=channels_last)
    example = torch.randn(batch, 3, *size, device=device)
    labels = fused_labels_of(prepared) if backend.fused_labels is not False else None
    if labels is not None and backend.fused_labels is None:  # timed: pays for SkipNet's x8, not ENet's x2 (Zen 3)
        labels, details["labels_choice"] = choose_labels(prepared, labels, example, backend, channels_last)
    end_to_end = EndToEnd(prepared, labels)
    # The same words as ONNX Runtime's graph: the labels come before the full-resolution scores.
    details["argmax_first"] = end_to_end.fused
    modules = (prepared, end_to_end)
    if backend.engine == "compile":
        modules = tuple(_compile(m, example, precision, device, channels_last) for m in modules)
        details["compile"] = "inductor, freezing, max-autotune off"
    fns = [_eager_fn(m, precision, device, channels_last, compiled=backend.engine == "compile") for m in modules]
    if backend.engine == "compile":
        fns = [_no_recompile(fn, getattr(model, "name", type(model).__name__), precision, size) for fn in fns]
    details["build_s"] = round(time.perf_counter() - started, 3)
    return (Runner(fns[0], backend, output="logits", details=details),
            Runner(fns[1], backend, output="labels", details=details))


class ArgmaxHead(nn.Module):
    """What the fused labels are timed against: the output layer, ``fit_to``, then the argmax."""

    def __init__(self, layer: nn.Module, size: tuple[int, int]):
        super().__init__()
        self.layer, self.size = layer, tuple(size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fit_to(self.layer(x), self.size).argmax(1)


def choose_labels(model: nn.Module, labels: UpsampledLabels, example: torch.Tensor, backend: Backend,
                  channels_last: bool = True, *,
                  timer: Callable[[list], list[float]] = settled_medians) -> tuple[UpsampledLabels | None, dict]:
    """``labels`` when taking them inside ``model``'s output layer is faster by
    ``LABELS_MARGIN`` than the argmax after it, else None; and the record of the timing.

    Both run on the output layer's input for ``example`` as ``backend``'s engine runs them
    (its precision's autocast, freed memory kept as its allocator says): for ``compile`` the
    argmax head is compiled, because inductor's argmax is faster than eager's (ENet's: 24.7
    against 32.3 ms, ``bench_labels --upsampling`` on a Zen 3) and a choice timed in eager slowed
    compiled ENet to 0.90x (``bench_speed.py``, docs/speed.md); the fused step is one custom
    operator that a compiled graph runs as eager does."""
    precision, device = backend.precision, backend.device
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    size = tuple(example.shape[-2:])
    with torch.inference_mode(), autocast(precision, device):
        features = model.output_layer_input(example.contiguous(memory_format=memory_format))
    compiled = backend.engine == "compile"
    head = ArgmaxHead(model.output_layer(), size)
    if compiled:
        head = _compile(head, features, precision, device, channels_last)
    runs = [_eager_fn(head, precision, device, channels_last, compiled=compiled),
            _eager_fn(functools.partial(labels, size=size), precision, device, channels_last)]
    with allocator(backend.allocator):
        argmax_s, fused_s = timer([stopwatch(run, features, device) for run in runs])
    chosen = fused_s < (1 - LABELS_MARGIN) * argmax_s
    return (labels if chosen else None), {
        "inside the last layer": chosen, "argmax_ms": round(1e3 * argmax_s, 3), "fused_ms": round(1e3 * fused_s, 3),
        "argmax_head": "compiled" if compiled else "eager"}


class CompileFallback(RtsegError):
    """``torch.compile`` did not compile the whole model into one graph (or would recompile)."""


def _compile(module: nn.Module, example: torch.Tensor, precision: str, device: str, channels_last: bool):
    """``torch.compile`` and run once, so compilation (with frozen weights) happens here, not in timing."""
    import torch._inductor.config as inductor_config
    from torch._dynamo.utils import counters

    name = getattr(getattr(module, "model", module), "name", type(module).__name__)
    compiled = torch.compile(module, dynamic=False, fullgraph=True, isolate_recompiles=True, recompile_limit=1)
    graphs_before = counters["stats"]["unique_graphs"]
    breaks_before = sum(counters["graph_break"].values())
    try:
        with inductor_config.patch(freezing=True):
            _eager_fn(compiled, precision, device, channels_last, compiled=True)(example)
    except RtsegError:
        raise
    except Exception as exc:  # dynamo's Unsupported, FailOnRecompileLimitHit, inductor's lowering errors
        raise CompileFallback(f"torch.compile of {name} ({precision}) failed instead of compiling the whole "
                              f"model: {type(exc).__name__}: {exc}".splitlines()[0]) from exc
    check_compiled(name, precision, counters["stats"]["unique_graphs"] - graphs_before,
                   sum(counters["graph_break"].values()) - breaks_before)
    return compiled


def _no_recompile(fn, name: str, precision: str, size: tuple[int, int]):
    """``fn``, with dynamo's refusal to recompile turned into a ``CompileFallback`` that says why."""
    from torch._dynamo.exc import FailOnRecompileLimitHit

    def run(x: torch.Tensor) -> torch.Tensor:
        try:
            return fn(x)
        except FailOnRecompileLimitHit as exc:
            raise CompileFallback(f"the compiled {name} ({precision}) was built for input {tuple(size)} and "
                                  f"would have to recompile for {tuple(x.shape)}; build another runner for "
                                  f"that input") from exc

    return run


def check_compiled(name: str, precision: str, new_graphs: int, new_breaks: int) -> None:
    """Raise ``CompileFallback`` unless the build call compiled exactly one graph without a break."""
    if new_breaks or new_graphs != 1:
        raise CompileFallback(f"torch.compile of {name} ({precision}) compiled {new_graphs} graph(s) with "
                              f"{new_breaks} graph break(s), not one whole graph: it would run partly or wholly "
                              f"eager, so the compile setting is reported as failed")
