"""ONNX graph rewrite: take the argmax before the final depth-to-space, not after.

A model whose last layer is an up-sampling transposed convolution ends, once written as a
sub-pixel convolution (``rtseg.inference.subpixel``), in ``Conv -> DepthToSpace -> Slice``
(the crop) and the label map is ``ArgMax`` over the classes of that full-resolution tensor.
DepthToSpace and Slice only move pixels, never across classes, so the argmax can be taken
first, on the convolution's output viewed as ``[N, C, s*s, H, W]`` (``[N, s*s, C, H, W]`` in DCR
mode), and the pixel moves
applied to the one-channel index map: the same labels, bit for bit, but the
full-resolution C-channel tensor is never shuffled or cropped (on SkipNet at 512x1024 that
is 10 million values moved twice). ONNX Runtime does not do this by itself, hence this file.

Quantized (QDQ) graphs are handled too: the argmax then reads the uint8 tensor through
its per-tensor DequantizeLinear, which ONNX Runtime drops for ArgMax (order-preserving).
(Casting the uint8 scores to float32 for ONNX Runtime's faster float ArgMax was tried: alone
it wins, 7.0 against 9.9 ms for SkipNet's 10 million scores, but in the graph ONNX Runtime
then adds a transpose of the whole tensor, and side by side the graph was no faster.)
ONNX Runtime's CPU DepthToSpace has no int64 kernel, so the index map is moved as uint8
(float32 when there are more than 256 classes) and cast back to int64 at the end.

A network whose last up-sampling is followed by per-pixel layers (UNet: batch norm, ReLU and a
1x1 classifier at full resolution) first gets those layers moved before the DepthToSpace
(``pointwise_before_depth_to_space``): a per-pixel layer commutes with moving pixels, so on the
``s*s`` phases of the low-resolution map it is the same layer applied to each phase. The
convolution before the shuffle gets its output channels reordered phase-major (DepthToSpace's
DCR mode), so each phase is a contiguous group: batch norm's parameters are tiled, and the 1x1
classifier becomes a grouped convolution, one group per phase, with no extra multiply-adds
(a dense block-diagonal weight, ``kron(W, I)``, would do ``s*s`` times the multiply-adds).
The graph then ends in ``Conv ->
DepthToSpace -> Slice`` like SkipNet's, and its argmax is taken first too: no full-resolution
feature map is shuffled, cropped, normalised or classified.
"""

from __future__ import annotations

import numpy as np

_PASS_THROUGH = ("Slice", "QuantizeLinear", "DequantizeLinear")
# Tensors the rewrite adds are named "<output>" + this + "_<step>".
REWRITTEN_SUFFIX = "_argmax_first"


def _shapes(model) -> dict[str, list[int]]:
    from onnx import shape_inference

    inferred = shape_inference.infer_shapes(model)
    graph = inferred.graph
    shapes = {}
    for info in list(graph.value_info) + list(graph.input) + list(graph.output):
        dims = info.type.tensor_type.shape.dim
        shapes[info.name] = [d.dim_value if d.HasField("dim_value") else 0 for d in dims]
    return shapes


def argmax_before_depth_to_space(model, output: str = "labels"):
    """Rewrite the ``ArgMax`` producing ``output``; returns ``(model, rewritten)``.

    Leaves the model as it is (``rewritten`` False) when the pattern is not there, the
    channel and spatial sizes are not static, or the Slices touch other axes than height and width.
    """
    import onnx
    from onnx import helper, numpy_helper

    graph = model.graph
    producer = {name: node for node in graph.node for name in node.output}
    argmax = producer.get(output)
    if argmax is None or argmax.op_type != "ArgMax":
        return model, False
    attributes = {a.name: helper.get_attribute_value(a) for a in argmax.attribute}
    if attributes.get("axis") != 1 or attributes.get("keepdims", 1) != 0 or attributes.get("select_last_index", 0):
        return model, False
    slices, node = [], producer.get(argmax.input[0])
    while node is not None and node.op_type in _PASS_THROUGH:
        if node.op_type == "Slice":
            slices.append(node)
        node = producer.get(node.input[0])
    if node is None or node.op_type != "DepthToSpace":
        return model, False
    d2s = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    mode = d2s.get("mode", b"DCR")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    block = int(d2s["blocksize"])
    initializers = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for piece in slices:  # the crop must be on height/width only
        axes = initializers.get(piece.input[3]) if len(piece.input) > 3 and piece.input[3] else None
        steps = initializers.get(piece.input[4]) if len(piece.input) > 4 and piece.input[4] else None
        if axes is None or not set(int(a) for a in axes) <= {2, 3, -1, -2}:
            return model, False
        if steps is not None and not (steps == 1).all():
            return model, False
    source = node.input[0]
    shape = _shapes(model).get(source, [])
    if len(shape) != 4 or 0 in shape[1:]:  # a free batch is fine: Reshape's 0 copies it
        return model, False
    batch, channels, height, width = shape
    classes = channels // (block * block)
    index_type = onnx.TensorProto.UINT8 if classes <= 256 else onnx.TensorProto.FLOAT
    prefix = f"{output}{REWRITTEN_SUFFIX}"
    names = {k: f"{prefix}_{k}" for k in ("shape5", "axis1", "view", "index", "small", "up", "squeezed")}
    # CRD holds class c's phase p in channel c*s*s + p, DCR in p*C + c
    phases = block * block
    view = [batch, classes, phases, height, width] if mode == "CRD" else [batch, phases, classes, height, width]
    graph.initializer.extend([
        numpy_helper.from_array(np.array(view, np.int64), names["shape5"]),
        numpy_helper.from_array(np.array([1], np.int64), names["axis1"])])
    new_nodes = []
    dequantize = producer.get(source)
    if dequantize is not None and dequantize.op_type == "DequantizeLinear" and _per_tensor(dequantize, initializers):
        # reshape the quantized tensor, then dequantize: ONNX Runtime runs ArgMax on the uint8 values
        new_nodes.append(helper.make_node("Reshape", [dequantize.input[0], names["shape5"]], [names["view"] + "_q"]))
        new_nodes.append(helper.make_node("DequantizeLinear", [names["view"] + "_q", *dequantize.input[1:]],
                                          [names["view"]]))
    else:
        new_nodes.append(helper.make_node("Reshape", [source, names["shape5"]], [names["view"]]))
    new_nodes += [
        helper.make_node("ArgMax", [names["view"]], [names["index"]], axis=1 if mode == "CRD" else 2, keepdims=0),
        helper.make_node("Cast", [names["index"]], [names["small"]], to=index_type),
        helper.make_node("DepthToSpace", [names["small"]], [names["up"]], blocksize=block, mode="CRD"),
    ]
    current = names["up"]
    for k, piece in enumerate(reversed(slices)):
        new_nodes.append(helper.make_node("Slice", [current, *piece.input[1:]], [f"{prefix}_crop{k}"]))
        current = f"{prefix}_crop{k}"
    new_nodes += [helper.make_node("Squeeze", [current, names["axis1"]], [names["squeezed"]]),
                  helper.make_node("Cast", [names["squeezed"]], [output], to=onnx.TensorProto.INT64)]
    for number, node in enumerate(new_nodes):  # named, so that profiles and quantization can refer to them
        node.name = f"{prefix}_{node.op_type}_{number}"
    kept = [n for n in graph.node if n is not argmax]
    del graph.node[:]
    graph.node.extend(kept + new_nodes)
    return _prune(model), True


# Per-pixel layers that commute with DepthToSpace and the crops after it.
_POINTWISE = ("Relu", "BatchNormalization", "Conv", "Identity")
POINTWISE_PREFIX = "pointwise_first"


def _slice_on_height_width(node, initializers) -> bool:
    axes = initializers.get(node.input[3]) if len(node.input) > 3 and node.input[3] else None
    steps = initializers.get(node.input[4]) if len(node.input) > 4 and node.input[4] else None
    return (axes is not None and set(int(a) for a in axes) <= {2, 3, -1, -2}
            and (steps is None or bool((steps == 1).all())))


def _is_pointwise(node, attributes, initializers) -> bool:
    if node.op_type == "Conv":  # a 1x1 convolution with its parameters in the graph
        weight = initializers.get(node.input[1])
        return (weight is not None and weight.ndim == 4 and weight.shape[2:] == (1, 1)
                and attributes.get("group", 1) == 1
                and all(v == 1 for v in attributes.get("strides", [1, 1]))
                and all(v == 1 for v in attributes.get("dilations", [1, 1]))
                and not any(attributes.get("pads", [0, 0, 0, 0]))
                and attributes.get("auto_pad", b"NOTSET") in (b"NOTSET", "NOTSET")
                and (len(node.input) < 3 or not node.input[2] or node.input[2] in initializers))
    if node.op_type == "BatchNormalization":
        return (len(node.output) == 1 and not attributes.get("training_mode", 0)
                and all(name in initializers for name in node.input[1:5]))
    return node.op_type in ("Relu", "Identity")


def _pointwise_chain(graph, output: str, initializers: dict):
    """``(chain, depth_to_space, source_conv)`` for ``output``: the Slices and per-pixel layers
    between a CRD ``DepthToSpace`` and ``output`` (from the shuffle on, with their attributes),
    or None when the pattern is not there or a tensor on the way is read by another node too."""
    from onnx import helper

    producer = {name: node for node in graph.node for name in node.output}
    consumers: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            consumers[name] = consumers.get(name, 0) + 1
    outputs = {o.name for o in graph.output}
    chain, node = [], producer.get(output)
    while node is not None and node.op_type in _POINTWISE + ("Slice",):
        attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type == "Slice" and not _slice_on_height_width(node, initializers):
            return None
        if node.op_type != "Slice" and not _is_pointwise(node, attributes, initializers):
            return None
        chain.append((node, attributes))
        node = producer.get(node.input[0])
        if node is not None and (consumers.get(node.output[0], 0) != 1 or node.output[0] in outputs):
            return None  # another node reads this tensor: it must stay as it is
    if node is None or node.op_type != "DepthToSpace" or not any(n.op_type != "Slice" for n, _ in chain):
        return None
    d2s = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    source = producer.get(node.input[0])
    if (d2s.get("mode", b"DCR") not in (b"CRD", "CRD") or source is None or source.op_type != "Conv"
            or source.input[1] not in initializers or consumers.get(node.input[0], 0) != 1
            or (len(source.input) > 2 and source.input[2] and source.input[2] not in initializers)):
        return None
    return chain[::-1], node, source


def pointwise_before_depth_to_space(model, output: str = "logits"):
    """Move the per-pixel layers between the last ``DepthToSpace`` and ``output`` before it;
    returns ``(model, rewritten)``. Leaves the model as it is when there are none, or when a
    tensor on the way is used by another node too."""
    from onnx import helper, numpy_helper

    graph = model.graph
    initializers = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    found = _pointwise_chain(graph, output, initializers)
    if found is None:
        return model, False
    chain, node, source = found  # chain from the DepthToSpace towards the output
    block = int(next(a.i for a in node.attribute if a.name == "blocksize"))
    phases = block * block
    new_nodes, added = [], []

    def constant(array, name):
        added.append(numpy_helper.from_array(np.ascontiguousarray(array), f"{POINTWISE_PREFIX}_{name}"))
        return added[-1].name

    # The convolution before the shuffle, its output channels phase-major: channel p*C + c holds
    # what CRD's c*s*s + p held, so each phase is a contiguous group and the shuffle is DCR's.
    weight = initializers[source.input[1]]
    channels = weight.shape[0] // phases
    order = np.arange(channels * phases).reshape(channels, phases).T.reshape(-1)
    inputs = [source.input[0], constant(weight[order], "source_weight")]
    if len(source.input) > 2 and source.input[2]:
        inputs.append(constant(initializers[source.input[2]][order], "source_bias"))
    current = f"{POINTWISE_PREFIX}_source"
    new_nodes.append(helper.make_node("Conv", inputs, [current]))
    new_nodes[-1].attribute.extend(source.attribute)
    for number, (layer, attributes) in enumerate(n for n in chain if n[0].op_type != "Slice"):
        target = f"{POINTWISE_PREFIX}_{number}_{layer.op_type}"
        if layer.op_type == "Conv":  # one group per phase: (K, C) -> s*s groups of (K, C)
            inputs = [current, constant(np.tile(initializers[layer.input[1]], (phases, 1, 1, 1)), f"{number}_weight")]
            if len(layer.input) > 2 and layer.input[2]:
                inputs.append(constant(np.tile(initializers[layer.input[2]], phases), f"{number}_bias"))
            new_nodes.append(helper.make_node("Conv", inputs, [target], kernel_shape=[1, 1], group=phases))
        elif layer.op_type == "BatchNormalization":
            params = [constant(np.tile(initializers[name], phases), f"{number}_{k}")
                      for k, name in enumerate(layer.input[1:5])]
            new_nodes.append(helper.make_node("BatchNormalization", [current, *params], [target],
                                              epsilon=attributes.get("epsilon", 1e-5)))
        else:
            new_nodes.append(helper.make_node(layer.op_type, [current], [target]))
        current = target
    slices = [n for n, _ in chain if n.op_type == "Slice"]
    shuffled = output if not slices else f"{POINTWISE_PREFIX}_shuffled"
    new_nodes.append(helper.make_node("DepthToSpace", [current], [shuffled], blocksize=block, mode="DCR"))
    current = shuffled
    for k, piece in enumerate(slices):
        target = output if k == len(slices) - 1 else f"{POINTWISE_PREFIX}_crop{k}"
        new_nodes.append(helper.make_node("Slice", [current, *piece.input[1:]], [target]))
        current = target
    for number, new in enumerate(new_nodes):
        new.name = f"{POINTWISE_PREFIX}_{new.op_type}_{number}"
    # In topological order: where the old chain ended, everything it read has been computed
    removed = {id(n) for n, _ in chain} | {id(node), id(source)}
    nodes = list(graph.node)
    end = next(i for i, n in enumerate(nodes) if n is chain[-1][0])
    before = [n for n in nodes[:end] if id(n) not in removed]
    after = [n for n in nodes[end:] if id(n) not in removed]
    graph.initializer.extend(added)
    del graph.node[:]
    graph.node.extend(before + new_nodes + after)
    return _prune(model), True


def is_rewritten(model, output: str = "labels") -> bool:
    """True when ``argmax_before_depth_to_space`` rewrote ``output`` of this graph."""
    prefix = f"{output}{REWRITTEN_SUFFIX}_"
    return any(name.startswith(prefix) for node in model.graph.node for name in node.output)


def _per_tensor(dequantize, initializers) -> bool:
    scale = initializers.get(dequantize.input[1])
    return scale is not None and scale.size == 1 and float(scale.reshape(-1)[0]) > 0


def _prune(model):
    """Drop nodes and initializers no output depends on any more (the old shuffle, if unused)."""
    from onnx.utils import Extractor

    inputs = [i.name for i in model.graph.input]
    outputs = [o.name for o in model.graph.output]
    return Extractor(model).extract_model(inputs, outputs)
