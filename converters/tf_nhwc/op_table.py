"""The op table of ``--backend tf_nhwc``: which function translates which ONNX op type (default domain only).

``OPS`` holds the exact translation of every supported op type; an op type missing here is refused, naming the
node. ``REWRITES`` holds the TFJS-speed forms (``speed_rewrites``) that the translator tries first for their op
type; each answers None where the graph is not its pattern, and the exact handler in ``OPS`` runs. A handler is
``handler(translator, tf, node, attributes) -> [Value per node output]``.
"""
from __future__ import annotations

from . import conv, elementwise, matmul, pooling, reductions, shape_ops, speed_rewrites

OPS = {
    "Conv": conv.conv,
    "Relu": elementwise.relu,
    "Sigmoid": elementwise.sigmoid,
    "LeakyRelu": elementwise.leaky_relu,
    "Clip": elementwise.clip,
    "Add": elementwise.add,
    "Mul": elementwise.mul,
    "Sub": elementwise.sub,
    "Div": elementwise.div,
    "Constant": elementwise.constant,
    "Identity": elementwise.identity,
    "MaxPool": pooling.max_pool,
    "AveragePool": pooling.average_pool,
    "Resize": pooling.resize,
    "Upsample": pooling.upsample,
    "Reshape": shape_ops.reshape,
    "Transpose": shape_ops.transpose,
    "Concat": shape_ops.concat,
    "Split": shape_ops.split,
    "Slice": shape_ops.slice_op,
    "Sqrt": elementwise.sqrt,
    "Erf": elementwise.erf,
    "MatMul": matmul.matmul,
    "Gemm": matmul.gemm,
    "ReduceMean": reductions.reduce_mean,
    "Softmax": reductions.softmax,
}

REWRITES = {
    "Conv": speed_rewrites.conv_then_split,
    "LeakyRelu": speed_rewrites.leaky_relu_as_prelu,
    "Concat": speed_rewrites.concat_then_shuffle,
    "Split": speed_rewrites.channel_halves,
}
