"""Conv, exactly: ONNX ``Conv`` on an NHWC activation -> TF ``Conv2D`` / ``DepthwiseConv2dNative`` + bias.

- Weights: ONNX [C_out, C_in / group, kH, kW] becomes Conv2D's HWIO kernel, or for a depthwise conv (group ==
  C_in, any channel multiplier) DepthwiseConv2dNative's [kH, kW, C_in, multiplier] kernel, where ONNX's output
  channel ``g * multiplier + k`` reads input channel g, as TF's does. Other grouped convs are refused.
- Padding exactly as ONNX says (``converters.tf_nhwc.padding``): ``SAME`` / ``VALID`` where they are the same
  cells, the ONNX pads as ``EXPLICIT`` paddings (which TFJS supports) otherwise; strides and dilations as given.
- Bias: a ``BiasAdd`` of the ONNX bias, so that the TFJS converter fuses conv + bias + the activation after it
  (the activation stays a separate op). An explicitly padded depthwise conv takes its bias as an identity batch
  norm instead (:func:`identity_batch_norm_bias`: the BiasAdd form aborts TensorFlow's oneDNN path on AVX-512
  hosts; the TFJS graph is the same, bit for bit).
Every step is a layout change of the same numbers or the same dot products: the result is ONNX's up to float32
summation order.
"""
from __future__ import annotations

from functools import partial

import numpy as np

from .layout import NHWC, Value
from .padding import spatial_pads

BN_EPSILON = 2.0 ** -10  # a power of two: 1 - eps is exact in float32 and (1 - eps) + eps == 1 exactly


def conv(t, tf, node, a) -> list[Value]:
    """The ``Conv`` handler: all output channels."""
    return [emit_conv(t, tf, node, a, slice(None))]


def emit_conv(t, tf, node, a, out_channels: slice) -> Value:
    """The conv's ``out_channels`` (all: ``slice(None)``) as one TF conv + bias."""
    x = t.tensor_in(node, node.input[0])
    w = t.const(node, node.input[1], "the weight").astype(np.float32)[out_channels]
    b = t.const(node, node.input[2], "the bias").astype(np.float32) if len(node.input) > 2 and node.input[2] else None
    b = None if b is None else b[out_channels]
    if w.ndim != 4 or len(x.perm) != 4:
        t.fail(node, "2-D convolutions only")
    group = int(a.get("group", 1))
    strides = list(a.get("strides", [1, 1]))
    dil = list(a.get("dilations", [1, 1]))
    kernel = list(a.get("kernel_shape", w.shape[2:]))
    if kernel != list(w.shape[2:]):
        t.fail(node, f"kernel_shape {kernel} disagrees with the weight {list(w.shape)}")
    pad = spatial_pads(a, x.shape[2:], kernel, strides, dil, partial(t.fail, node))
    tf_pad, explicit = ("EXPLICIT", [0, 0, *pad[0], *pad[1], 0, 0]) if isinstance(pad, list) else (pad, [])
    conv_args = dict(input=t.to_perm(tf, x, NHWC), strides=[1, *strides, 1], padding=tf_pad,
                     explicit_paddings=explicit, dilations=[1, *dil, 1], data_format="NHWC")
    cin = x.shape[1]
    if group == 1:
        if w.shape[1] != cin:
            t.fail(node, f"weight {list(w.shape)} does not fit {cin} input channels")
        y = tf.raw_ops.Conv2D(filter=tf.constant(np.ascontiguousarray(w.transpose(2, 3, 1, 0))), **conv_args)
    elif group == cin and w.shape[1] == 1 and w.shape[0] % cin == 0:
        mult = w.shape[0] // cin  # output channel g*mult + k reads input channel g
        k = w.reshape(cin, mult, *w.shape[2:]).transpose(2, 3, 0, 1)
        y = tf.raw_ops.DepthwiseConv2dNative(filter=tf.constant(np.ascontiguousarray(k)), **conv_args)
    else:
        t.fail(node, f"grouped convolution (group {group}, {cin} input channels)")
    if b is not None and group != 1 and tf_pad == "EXPLICIT":
        y = identity_batch_norm_bias(tf, y, b)
    elif b is not None:
        y = tf.nn.bias_add(y, tf.constant(b))
    return Value(y, NHWC)


def identity_batch_norm_bias(tf, y, bias: np.ndarray):
    """``y + bias`` written as an inference batch norm: scale 1, mean 0, variance 1 - eps, epsilon eps.

    Why: on x86 hosts where TensorFlow enables oneDNN by default (AVX-512 ones), grappler's remapper fuses
    ``DepthwiseConv2dNative`` with ``padding=EXPLICIT`` and a following ``BiasAdd`` (or an Add of a 1-D constant)
    into oneDNN's fused depthwise kernel, which aborts the process (``Check failed: index >= 0 && index <
    num_total_dims``, tensor_format.h:428, TF 2.19). This form is not fused: TF 2.19 on such a host runs it as
    ``_MklNativeDepthwiseConv2dNative`` and an ``Add`` (the session's partition graph), so any TF running our
    SavedModel is safe (tests/test_tf_hazards.py runs it under TF's defaults in a child process).
    TFJS pays nothing: tensorflowjs' converter folds the batch norm into the kernel and a BiasAdd
    (``fold_batch_norms``, before its remap pass) and fuses that into ``FusedDepthwiseConv2dNative`` with
    ``BiasAdd`` and the following Prelu: op for op, attribute for attribute and weight byte for weight byte the
    graph that the plain BiasAdd gives (explicit paddings kept). The other exact form, an explicit ``Pad`` and a
    VALID depthwise, leaves a ``Pad`` op (a copy of the input) and its paddings weight in the TFJS graph.
    Exact: the batch norm computes ``(y - 0) * (1 / sqrt((1 - eps) + eps)) * 1 + bias``; ``1 - eps`` is a float32
    and ``(1 - eps) + eps == 1`` exactly, so the scale is exactly 1 and the result is ``y + bias`` bit for bit,
    in TF (float32) and in tensorflowjs' fold (kernel * 1.0, offset ``-0 * 1 + bias``)."""
    c = int(bias.shape[0])
    return tf.raw_ops.FusedBatchNormV3(
        x=y, scale=tf.constant(np.ones(c, np.float32)), offset=tf.constant(bias.astype(np.float32)),
        mean=tf.constant(np.zeros(c, np.float32)), variance=tf.constant(np.full(c, 1.0 - BN_EPSILON, np.float32)),
        epsilon=BN_EPSILON, data_format="NHWC", is_training=False)[0]
