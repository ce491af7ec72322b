"""ONNX graph rewrite: take the argmax before the final depth-to-space, not after.

A model whose last layer is an up-sampling transposed convolution ends, once written as a
sub-pixel convolution (``rtseg.inference.subpixel``), in ``Conv -> DepthToSpace -> Slice``
(the crop) and the label map is ``ArgMax`` over the classes of that full-resolution tensor.
DepthToSpace and Slice only move pixels, never across classes, so the argmax can be taken
first, on the convolution's output viewed as ``[N, C, s*s, H, W]``, and the pixel moves
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
    if d2s.get("mode", b"DCR") not in (b"CRD", "CRD"):
        return model, False
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
    graph.initializer.extend([
        numpy_helper.from_array(np.array([batch, classes, block * block, height, width], np.int64), names["shape5"]),
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
        helper.make_node("ArgMax", [names["view"]], [names["index"]], axis=1, keepdims=0),
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
