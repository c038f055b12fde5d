"""TFJS-speed rewrites of ``--backend tf_nhwc``: exact TF forms that TFJS's wasm backend runs faster.

Each rewrite is tried before the exact handler of its op type (``op_table.REWRITES``) and answers None where the
graph is not exactly its pattern; then the plain translation runs. Each computes the same numbers as the plain
translation, bit for bit (they select, copy or regroup elements, or split a sum into terms of which one is 0):

- :func:`conv_then_split`: a Conv whose only consumer is a channel Split becomes one conv per part (the same dot
  products; TFJS's wasm SplitV on the channel axis is a slow copy);
- :func:`leaky_relu_as_prelu`: LeakyRelu on an NHWC activation as ``relu(x) + (-alpha) * relu(-x)``, the Keras
  PReLU pattern that the TFJS converter turns into ``Prelu`` and fuses into the conv before it;
- :func:`concat_then_shuffle`: a ShuffleNet unit's two-way channel Concat and the channel shuffle after it as
  one outer-axis concat and one 2-D transpose;
- :func:`channel_halves`: a Split of NHWC channels in two equal halves as a 1x1 max pool and a nearest resize
  on reshaped views (no Slice copy).
The figures quoted are TFJS 4.22 wasm kernel times in Node.
"""
from __future__ import annotations

import numpy as np

from .conv import emit_conv
from .layout import NHWC, Value
from .shape_ops import concat_inputs, split_sizes


def _split_after(t, node):
    """The Split (on channels) that is the only consumer of this node's output, with its part sizes."""
    split = t.only_user(node.output[0], "Split")
    if split is None:
        return None, None
    a = t.attr(split)
    if int(a.get("axis", 0)) not in (1, -3):
        return None, None
    if "split" in a:
        return split, list(a["split"])
    if len(split.input) > 1 and split.input[1]:
        v = t.values.get(split.input[1])
        return (split, [int(d) for d in v.const]) if v is not None and v.const is not None else (None, None)
    return split, None


def conv_then_split(t, tf, node, a):
    """Conv + Split of its output channels as one conv per part (same dot products, no copy: TFJS's wasm SplitV
    on the channel axis is slow). None unless the Split is the conv's only consumer and its parts fit."""
    split, sizes = _split_after(t, node)
    w = t.values.get(node.input[1])
    if split is None or w is None or w.const is None:
        return None
    cout = w.const.shape[0]
    if sizes is None and cout % len(split.output) == 0:
        sizes = [cout // len(split.output)] * len(split.output)
    if not (sizes and sum(sizes) == cout and len(sizes) == len(split.output) and int(a.get("group", 1)) == 1):
        return None
    start = 0
    for name, size in zip(split.output, sizes):
        t.consume([split], name, emit_conv(t, tf, node, a, slice(start, start + size)))
        start += size
    return [Value(const=np.zeros(0, np.float32))]  # the conv output itself has no other consumer


def leaky_relu_as_prelu(t, tf, node, a):
    """As relu(x) + (-alpha) * relu(-x): bit-exact (one term is always 0), and it is the Keras PReLU pattern
    that the TFJS converter turns into Prelu and fuses into the conv before it. TFJS's wasm LeakyRelu is a
    scalar loop (about as slow as the 1x1 conv it follows); its Prelu runs on XNNPACK. None off NHWC."""
    alpha = np.float32(a.get("alpha", 0.01))
    x = t.tensor_in(node, node.input[0])
    if len(x.perm) != 4 or x.perm != NHWC:
        return None
    neg_alpha = tf.constant(np.full([x.shape[1]], -alpha, np.float32))
    s = x.tensor
    return [Value(tf.nn.relu(s) + neg_alpha * tf.nn.relu(tf.negative(s)), x.perm)]


def _shuffle_after(t, node, vals, axis):
    """The channel shuffle of ``patches/channel_shuffle_4d.py`` right after a two-way channel Concat of
    equal NHWC halves (N = 1): Reshape [1, 2, C/2, H*W] -> Transpose [0, 2, 1, 3] -> Reshape [1, C, H, W].
    Returns those three nodes, or None where the graph differs in any way (then the plain path runs)."""
    if len(vals) != 2 or axis != 1 or any(v.perm != NHWC for v in vals) or vals[0].shape != vals[1].shape:
        return None
    n, half, h, w = vals[0].shape
    if n != 1:
        return None
    first = t.only_user(node.output[0], "Reshape")
    swap = first and t.only_user(first.output[0], "Transpose")
    last = swap and t.only_user(swap.output[0], "Reshape")
    if last is None or list(t.attr(swap).get("perm", [])) != [0, 2, 1, 3]:
        return None
    shapes = [t.values.get(r.input[1]) for r in (first, last)]
    if any(v is None or v.const is None for v in shapes):
        return None
    if ([int(d) for d in shapes[0].const] != [1, 2, half, h * w]
            or [int(d) for d in shapes[1].const] != [1, 2 * half, h, w]):
        return None
    return first, swap, last


def concat_then_shuffle(t, tf, node, a):
    """Concat + channel shuffle in one data move. Shuffled channel 2i + b of a pixel is channel i of part
    b, i.e. with the parts stacked on the outer axis ([2, H*W*C/2], a concat of two contiguous blocks), the
    shuffled tensor is that matrix transposed ([H*W*C/2, 2]). TFJS's wasm Concat on the innermost (channel)
    axis copies pixel by pixel in JS and its Transpose of [H*W, 2, C/2] runs per pixel: 0.63 ms for a
    52x52x116 unit against 0.19 ms this way (outer concat = two block copies, one 2-D transpose).
    The shuffle's last Reshape gets the result; the Concat's own output has no other reader. None off the
    pattern (``_shuffle_after``)."""
    vals, axis = concat_inputs(t, node, a)
    nodes = _shuffle_after(t, node, vals, axis)
    if nodes is None:
        return None
    _, h, w, half = vals[0].tensor.shape.as_list()
    stacked = tf.reshape(tf.concat([v.tensor for v in vals], axis=0), [2, h * w * half])
    shuffled = tf.reshape(tf.transpose(stacked, [1, 0]), [1, h, w, 2 * half])
    t.consume(nodes, nodes[-1].output[0], Value(shuffled, NHWC))
    return []


def channel_halves(t, tf, node, a):
    """NHWC channel halves. TFJS's wasm Slice/SplitV copy slowly (about 0.4 ms per 52x52x58 half, through
    JS), its MaxPool runs on XNNPACK: seen as [N, H, 2W, C/2], the first half is every other 'column', which
    a 1x1 max pool with stride (1, 2) picks exactly (max of one value). The second half, seen as
    [N, HW, 2, C/2], is column 1 of 2: a nearest resize to width 1 with half-pixel centers reads source
    column floor((0 + 0.5) * 2) = 1 (rows: floor(r + 0.5) = r), a plain copy in TFJS's C++ kernel (about
    3x faster than the Slice; TFJS wasm's StridedSlice is far slower still). None unless a Split of NHWC
    channels in two equal parts."""
    x = t.tensor_in(node, node.input[0])
    axis, sizes = split_sizes(t, node, a, x)
    if not (x.perm == NHWC and axis == 1 and len(sizes) == 2 and sizes[0] == sizes[1]):
        return None
    half = sizes[0]
    n, h, w, _ = x.tensor.shape.as_list()
    view = tf.reshape(x.tensor, [n, h, 2 * w, half])
    first = tf.nn.max_pool2d(view, [1, 1], [1, 2], "VALID")
    pairs = tf.reshape(x.tensor, [n, h * w, 2, half])
    second = tf.reshape(tf.raw_ops.ResizeNearestNeighbor(images=pairs, size=[h * w, 1], align_corners=False,
                                                         half_pixel_centers=True), [n, h, w, half])
    return [Value(first, NHWC), Value(second, NHWC)]
