"""SavedModel backend ``tf_nhwc``: our own exact ONNX -> TensorFlow translation that keeps activations in NHWC.

Why: onnx-tf keeps ONNX's NCHW layout and wraps every conv in NCHW<->NHWC Transposes (142 in NanoDet-m), which
also stops TF from fusing conv + bias + LeakyRelu; onnx2tf lays the graph out in NHWC but its TFJS model does not
run (grouped-conv confusion). This backend translates the small op set of the simplified NanoDet graphs itself:

- 4-D activations are stored NHWC; each ONNX value is a TF tensor plus the permutation from its ONNX (logical)
  layout (``converters.nhwc_layout``). Transpose nodes only change that permutation; Reshapes become plain
  reshapes where the memory order allows it, which it does for the head's ``[N,C,H*W] -> [N,H*W,C]`` (no
  transpose left). A ShuffleNet unit's channel Concat and the shuffle after it become one outer-axis concat and
  one 2-D transpose (``_concat_shuffle``); its channel halves, a max pool and a nearest resize on views.
- Conv -> ``Conv2D`` / ``DepthwiseConv2dNative`` with HWIO / HWC1 kernels, ``BiasAdd``; the following LeakyRelu
  stays a separate op so that the TFJS converter's grappler pass fuses conv + bias + activation.
- Padding exactly as ONNX says: TF ``SAME`` only where TF would pad the same rows and columns (a stride-2 conv on
  an even input pads (0, 1) in TF, (1, 1) in ONNX), explicit conv paddings otherwise; pools without TF's
  padding get a ``Pad`` (max pool: with the lowest float) and ``VALID``.
- Any op, attribute or pattern outside this set is refused with a UserError naming the node, never guessed.

The SavedModel (``serving_default``) takes ``input`` [1, H, W, 3] float32 (NHWC) and returns the model signature's
outputs by name, each [1, HW, C]. Before the SavedModel is renamed into place it is run once against onnxruntime
on a seeded input (``TOLERANCE``); the result is written to ``tf_nhwc_check.json`` inside it.
"""
from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nanodet_ref.errors import UserError

from . import nhwc_layout as L
from .tf_compat import import_tensorflow

SIGNATURE = "serving_default"
TOLERANCE = 1e-4  # max |diff| vs onnxruntime on one seeded input, relative to max(1, max |output|)
#                   (float32 rounding: m-416 3e-6, g-416 with random weights 6e-5 seen)
REPORT_FILE = "tf_nhwc_check.json"
NHWC = (0, 2, 3, 1)


@dataclass
class Value:
    """An ONNX value: a TF tensor stored as ``transpose(logical, perm)``, or a numpy constant (``const``)."""

    tensor: object = None
    perm: tuple = ()
    const: np.ndarray | None = None

    @property
    def shape(self) -> tuple:
        if self.const is not None:
            return tuple(self.const.shape)
        return L.logical_shape(self.tensor.shape.as_list(), self.perm)


class Unsupported(UserError):
    pass


class Translator:
    """Walks a topologically sorted ONNX graph and emits TF ops (call inside a tf.function trace)."""

    def __init__(self, model, where: str):
        import onnx
        from onnx import numpy_helper
        self.model, self.where = model, where
        self.graph = model.graph
        self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
        self.inits = {t.name: numpy_helper.to_array(t) for t in self.graph.initializer}
        self.attr = lambda node: {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        self.numpy_helper = numpy_helper

    # -------------------------------------------------------------- helpers

    def fail(self, node, why: str):
        raise Unsupported(f"{self.where}: node '{node.name or node.output[0]}' ({node.op_type}): {why} "
                          f"(not supported by --backend tf_nhwc; use --backend onnx_tf)")

    def const(self, node, name: str, what: str) -> np.ndarray:
        v = self.values.get(name)
        if v is None or v.const is None:
            self.fail(node, f"{what} must be a constant")
        return v.const

    def tensor_in(self, node, name: str) -> Value:
        v = self.values.get(name)
        if v is None:
            self.fail(node, f"input '{name}' is unknown")
        if v.const is not None:
            self.fail(node, "constant-only computation (run onnxsim first)")
        return v

    def to_perm(self, tf, v: Value, want: tuple) -> object:
        """The stored tensor re-laid out so that its perm is ``want``."""
        if tuple(v.perm) == tuple(want):
            return v.tensor
        q = [list(v.perm).index(w) for w in want]
        return tf.transpose(v.tensor, q)

    def const_like(self, tf, c: np.ndarray, v: Value):
        """A constant broadcast against ``v``, laid out as ``v`` is stored."""
        rank = len(v.perm)
        if c.ndim > rank:
            return None
        c = c.reshape((1,) * (rank - c.ndim) + c.shape)
        return tf.constant(np.ascontiguousarray(c.transpose(v.perm)))

    @staticmethod
    def spatial_pads(node_attr, in_hw, kernel, strides, dilations, fail):
        """ONNX pads -> ('SAME' | 'VALID' | [(top, bottom), (left, right)])."""
        auto = node_attr.get("auto_pad", b"NOTSET")
        auto = auto.decode() if isinstance(auto, bytes) else auto
        same = []
        for n, k, s, d in zip(in_hw, kernel, strides, dilations):
            out = -(-n // s)
            total = max((out - 1) * s + (k - 1) * d + 1 - n, 0)
            same.append((total // 2, total - total // 2))
        if auto == "SAME_UPPER":
            return "SAME"
        if auto == "VALID":
            return "VALID"
        if auto not in ("NOTSET", ""):
            fail(f"auto_pad {auto}")
        pads = list(node_attr.get("pads", [0, 0, 0, 0]))
        if len(pads) != 4:
            fail(f"pads {pads} (2-D only)")
        explicit = [(pads[0], pads[2]), (pads[1], pads[3])]
        if all(p == (0, 0) for p in explicit):
            return "VALID"
        if explicit == same:
            return "SAME"
        return explicit

    # -------------------------------------------------------------- the walk

    def run(self, tf, x_nhwc):
        self.values = {name: Value(const=arr) for name, arr in self.inits.items()}
        inputs = [i for i in self.graph.input if i.name not in self.inits]
        if len(inputs) != 1:
            raise UserError(f"{self.where}: expected one graph input, found {[i.name for i in inputs]}")
        self.values[inputs[0].name] = Value(x_nhwc, NHWC)
        self.consumers = {}
        for node in self.graph.node:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)
        self.done = set()  # ids of nodes already translated as part of a pattern
        for node in self.graph.node:
            if id(node) in self.done:
                continue
            handler = getattr(self, f"op_{node.op_type}", None)
            if handler is None or node.domain not in ("", "ai.onnx"):
                self.fail(node, "op type not supported")
            outs = handler(tf, node, self.attr(node))
            for name, val in zip(node.output, outs):
                self.values[name] = val
        result = {}
        for out in self.graph.output:
            v = self.values[out.name]
            if v.const is not None:
                raise UserError(f"{self.where}: output '{out.name}' is a constant")
            result[out.name] = tf.identity(self.to_perm(tf, v, L.identity(len(v.perm))), name=_short(out.name))
        return result

    # -------------------------------------------------------------- ops

    def op_Constant(self, tf, node, a):
        if "value" not in a:
            self.fail(node, "only 'value' constants")
        return [Value(const=self.numpy_helper.to_array(a["value"]))]

    def op_Identity(self, tf, node, a):
        return [self.values[node.input[0]]]

    def _split_after(self, node):
        """The Split (on channels) that is the only consumer of this node's output, with its part sizes."""
        split = self._only_user(node.output[0], "Split")
        if split is None:
            return None, None
        a = self.attr(split)
        if int(a.get("axis", 0)) not in (1, -3):
            return None, None
        if "split" in a:
            return split, list(a["split"])
        if len(split.input) > 1 and split.input[1]:
            v = self.values.get(split.input[1])
            return (split, [int(d) for d in v.const]) if v is not None and v.const is not None else (None, None)
        return split, None

    def op_Conv(self, tf, node, a):
        """Conv, and Conv + Split of its output channels as one conv per part (same dot products, no copy:
        TFJS's wasm SplitV on the channel axis is slow)."""
        split, sizes = self._split_after(node)
        w = self.values.get(node.input[1])
        if split is not None and w is not None and w.const is not None:
            cout = w.const.shape[0]
            if sizes is None and cout % len(split.output) == 0:
                sizes = [cout // len(split.output)] * len(split.output)
            if sizes and sum(sizes) == cout and len(sizes) == len(split.output) and int(a.get("group", 1)) == 1:
                outs, start = [], 0
                for size in sizes:
                    outs.append(self._conv(tf, node, a, slice(start, start + size))[0])
                    start += size
                for name, val in zip(split.output, outs):
                    self.values[name] = val
                self.done.add(id(split))
                return [Value(const=np.zeros(0, np.float32))]  # the conv output itself has no other consumer
        return self._conv(tf, node, a, slice(None))

    def _conv(self, tf, node, a, out_channels: slice):
        x = self.tensor_in(node, node.input[0])
        w = self.const(node, node.input[1], "the weight").astype(np.float32)[out_channels]
        b = self.const(node, node.input[2], "the bias").astype(np.float32) if len(node.input) > 2 and node.input[2] else None
        b = None if b is None else b[out_channels]
        if w.ndim != 4 or len(x.perm) != 4:
            self.fail(node, "2-D convolutions only")
        group = int(a.get("group", 1))
        strides = list(a.get("strides", [1, 1]))
        dil = list(a.get("dilations", [1, 1]))
        kernel = list(a.get("kernel_shape", w.shape[2:]))
        if kernel != list(w.shape[2:]):
            self.fail(node, f"kernel_shape {kernel} disagrees with the weight {list(w.shape)}")
        cin = x.shape[1]
        pad = self.spatial_pads(a, x.shape[2:], kernel, strides, dil, lambda why: self.fail(node, why))
        if isinstance(pad, list):
            tf_pad, explicit = "EXPLICIT", [0, 0, *pad[0], *pad[1], 0, 0]
        else:
            tf_pad, explicit = pad, []
        xs = self.to_perm(tf, x, NHWC)
        if group == 1:
            if w.shape[1] != cin:
                self.fail(node, f"weight {list(w.shape)} does not fit {cin} input channels")
            y = tf.raw_ops.Conv2D(input=xs, filter=tf.constant(np.ascontiguousarray(w.transpose(2, 3, 1, 0))),
                                  strides=[1, *strides, 1], padding=tf_pad, explicit_paddings=explicit,
                                  dilations=[1, *dil, 1], data_format="NHWC")
        elif group == cin and w.shape[1] == 1 and w.shape[0] % cin == 0:
            mult = w.shape[0] // cin  # output channel g*mult + k reads input channel g
            k = w.reshape(cin, mult, *w.shape[2:]).transpose(2, 3, 0, 1)
            y = tf.raw_ops.DepthwiseConv2dNative(input=xs, filter=tf.constant(np.ascontiguousarray(k)),
                                                 strides=[1, *strides, 1], padding=tf_pad,
                                                 explicit_paddings=explicit, dilations=[1, *dil, 1],
                                                 data_format="NHWC")
        else:
            self.fail(node, f"grouped convolution (group {group}, {cin} input channels)")
        if b is not None:
            y = tf.nn.bias_add(y, tf.constant(b))
        return [Value(y, NHWC)]

    def _unary(self, tf, node, fn):
        x = self.tensor_in(node, node.input[0])
        return [Value(fn(x.tensor), x.perm)]

    def op_LeakyRelu(self, tf, node, a):
        """As relu(x) + (-alpha) * relu(-x): bit-exact (one term is always 0), and it is the Keras PReLU pattern
        that the TFJS converter turns into Prelu and fuses into the conv before it. TFJS's wasm LeakyRelu is a
        scalar loop (about as slow as the 1x1 conv it follows); its Prelu runs on XNNPACK."""
        alpha = np.float32(a.get("alpha", 0.01))
        x = self.tensor_in(node, node.input[0])
        if len(x.perm) != 4 or x.perm != NHWC:
            return [Value(tf.nn.leaky_relu(x.tensor, alpha=float(alpha)), x.perm)]
        neg_alpha = tf.constant(np.full([x.shape[1]], -alpha, np.float32))
        t = x.tensor
        return [Value(tf.nn.relu(t) + neg_alpha * tf.nn.relu(tf.negative(t)), x.perm)]

    def op_Relu(self, tf, node, a):
        return self._unary(tf, node, tf.nn.relu)

    def op_Sigmoid(self, tf, node, a):
        return self._unary(tf, node, tf.math.sigmoid)

    def _binary(self, tf, node, fn):
        va, vb = (self.values.get(n) for n in node.input[:2])
        if va is None or vb is None:
            self.fail(node, "unknown input")
        if va.const is not None and vb.const is not None:
            self.fail(node, "constant-only computation (run onnxsim first)")
        if va.const is not None or vb.const is not None:
            c, v, c_first = (va.const, vb, True) if va.const is not None else (vb.const, va, False)
            ct = self.const_like(tf, c.astype(np.float32), v)
            if ct is None:
                self.fail(node, "constant of higher rank than the tensor")
            return [Value(fn(ct, v.tensor) if c_first else fn(v.tensor, ct), v.perm)]
        if len(va.perm) != len(vb.perm):
            if va.perm == L.identity(len(va.perm)) and vb.perm == L.identity(len(vb.perm)):
                return [Value(fn(va.tensor, vb.tensor), va.perm)]
            self.fail(node, "broadcast between tensors of different rank")
        return [Value(fn(va.tensor, self.to_perm(tf, vb, va.perm)), va.perm)]

    def op_Add(self, tf, node, a):
        return self._binary(tf, node, tf.add)

    def op_Mul(self, tf, node, a):
        return self._binary(tf, node, tf.multiply)

    def op_Sub(self, tf, node, a):
        return self._binary(tf, node, tf.subtract)

    def op_Div(self, tf, node, a):
        return self._binary(tf, node, tf.divide)

    def op_Concat(self, tf, node, a):
        vals = [self.tensor_in(node, n) for n in node.input]
        rank = len(vals[0].perm)
        axis = int(a["axis"]) % rank
        perm = vals[0].perm
        shuffle = self._shuffle_after(node, vals, axis)
        if shuffle is not None:
            return self._concat_shuffle(tf, node, vals, shuffle)
        return [Value(tf.concat([self.to_perm(tf, v, perm) for v in vals], axis=list(perm).index(axis)), perm)]

    def _only_user(self, name: str, op_type: str):
        """The one node that reads ``name``, if it has type ``op_type`` and ``name`` is not a graph output."""
        users = self.consumers.get(name, [])
        if len(users) != 1 or users[0].op_type != op_type or name in {o.name for o in self.graph.output}:
            return None
        return users[0]

    def _shuffle_after(self, node, vals, axis):
        """The channel shuffle of ``patches/channel_shuffle_4d.py`` right after a two-way channel Concat of
        equal NHWC halves (N = 1): Reshape [1, 2, C/2, H*W] -> Transpose [0, 2, 1, 3] -> Reshape [1, C, H, W].
        Returns those three nodes, or None where the graph differs in any way (then the plain path runs)."""
        if len(vals) != 2 or axis != 1 or any(v.perm != NHWC for v in vals) or vals[0].shape != vals[1].shape:
            return None
        n, half, h, w = vals[0].shape
        if n != 1:
            return None
        first = self._only_user(node.output[0], "Reshape")
        swap = first and self._only_user(first.output[0], "Transpose")
        last = swap and self._only_user(swap.output[0], "Reshape")
        if last is None or list(self.attr(swap).get("perm", [])) != [0, 2, 1, 3]:
            return None
        shapes = [self.values.get(r.input[1]) for r in (first, last)]
        if any(v is None or v.const is None for v in shapes):
            return None
        if ([int(d) for d in shapes[0].const] != [1, 2, half, h * w]
                or [int(d) for d in shapes[1].const] != [1, 2 * half, h, w]):
            return None
        return first, swap, last

    def _concat_shuffle(self, tf, node, vals, nodes):
        """Concat + channel shuffle in one data move. Shuffled channel 2i + b of a pixel is channel i of part
        b, i.e. with the parts stacked on the outer axis ([2, H*W*C/2], a concat of two contiguous blocks), the
        shuffled tensor is that matrix transposed ([H*W*C/2, 2]). TFJS's wasm Concat on the innermost (channel)
        axis copies pixel by pixel in JS and its Transpose of [H*W, 2, C/2] runs per pixel: 0.63 ms for a
        52x52x116 unit against 0.19 ms this way (outer concat = two block copies, one 2-D transpose)."""
        _, h, w, half = vals[0].tensor.shape.as_list()
        stacked = tf.reshape(tf.concat([v.tensor for v in vals], axis=0), [2, h * w * half])
        shuffled = tf.reshape(tf.transpose(stacked, [1, 0]), [1, h, w, 2 * half])
        for n in nodes:
            self.done.add(id(n))
        self.values[nodes[-1].output[0]] = Value(shuffled, NHWC)
        return []

    def op_Split(self, tf, node, a):
        x = self.tensor_in(node, node.input[0])
        axis = int(a.get("axis", 0)) % len(x.perm)
        if "split" in a:
            sizes = list(a["split"])
        elif len(node.input) > 1 and node.input[1]:
            sizes = [int(s) for s in self.const(node, node.input[1], "split")]
        else:
            n = len(node.output)
            if x.shape[axis] % n:
                self.fail(node, "uneven split without sizes")
            sizes = [x.shape[axis] // n] * n
        if sum(sizes) != x.shape[axis] or len(sizes) != len(node.output):
            self.fail(node, f"split {sizes} does not fit dimension {x.shape[axis]}")
        if x.perm == NHWC and axis == 1 and len(sizes) == 2 and sizes[0] == sizes[1]:
            return self._split_channel_halves(tf, x.tensor, sizes[0])
        parts = tf.split(x.tensor, sizes, axis=list(x.perm).index(axis))
        return [Value(p, x.perm) for p in parts]

    @staticmethod
    def _split_channel_halves(tf, t, half: int):
        """NHWC channel halves. TFJS's wasm Slice/SplitV copy slowly (about 0.4 ms per 52x52x58 half, through
        JS), its MaxPool runs on XNNPACK: seen as [N, H, 2W, C/2], the first half is every other 'column', which
        a 1x1 max pool with stride (1, 2) picks exactly (max of one value). The second half, seen as
        [N, HW, 2, C/2], is column 1 of 2: a nearest resize to width 1 with half-pixel centers reads source
        column floor((0 + 0.5) * 2) = 1 (rows: floor(r + 0.5) = r), a plain copy in TFJS's C++ kernel (about
        3x faster than the Slice; TFJS wasm's StridedSlice is far slower still)."""
        n, h, w, _ = t.shape.as_list()
        view = tf.reshape(t, [n, h, 2 * w, half])
        first = tf.nn.max_pool2d(view, [1, 1], [1, 2], "VALID")
        pairs = tf.reshape(t, [n, h * w, 2, half])
        second = tf.reshape(tf.raw_ops.ResizeNearestNeighbor(images=pairs, size=[h * w, 1], align_corners=False,
                                                             half_pixel_centers=True), [n, h, w, half])
        return [Value(first, NHWC), Value(second, NHWC)]

    def op_Slice(self, tf, node, a):
        x = self.tensor_in(node, node.input[0])
        rank = len(x.perm)
        if self.opset < 10:
            starts, ends = list(a["starts"]), list(a["ends"])
            axes = list(a.get("axes", range(len(starts))))
            steps = [1] * len(starts)
        else:
            starts = [int(v) for v in self.const(node, node.input[1], "starts")]
            ends = [int(v) for v in self.const(node, node.input[2], "ends")]
            axes = ([int(v) for v in self.const(node, node.input[3], "axes")]
                    if len(node.input) > 3 and node.input[3] else list(range(len(starts))))
            steps = ([int(v) for v in self.const(node, node.input[4], "steps")]
                     if len(node.input) > 4 and node.input[4] else [1] * len(starts))
        index = [slice(None)] * rank
        shape = x.shape
        for s, e, ax, st in zip(starts, ends, axes, steps):
            ax %= rank
            if st <= 0:
                self.fail(node, "non-positive slice steps")
            lo, hi, _ = slice(s, e, st).indices(shape[ax])  # clamps like ONNX does for positive steps
            index[list(x.perm).index(ax)] = slice(lo, hi, st)
        return [Value(x.tensor[tuple(index)], x.perm)]

    def op_Reshape(self, tf, node, a):
        x = self.tensor_in(node, node.input[0])
        target = [int(v) for v in self.const(node, node.input[1], "the shape")]
        if int(a.get("allowzero", 0)):
            self.fail(node, "allowzero=1")
        shape = x.shape
        out = [shape[i] if t == 0 else t for i, t in enumerate(target)]
        if out.count(-1) > 1:
            self.fail(node, f"shape {target}")
        if -1 in out:
            known = int(np.prod([d for d in out if d != -1]))
            out[out.index(-1)] = int(np.prod(shape)) // known
        if int(np.prod(out)) != int(np.prod(shape)):
            self.fail(node, f"shape {target} does not fit {list(shape)}")
        pre, out_perm = L.plan_reshape(tuple(shape), tuple(x.perm), tuple(out))
        t = x.tensor if pre is None else tf.transpose(x.tensor, list(pre))
        return [Value(tf.reshape(t, L.stored_shape(out, out_perm)), out_perm)]

    def op_Transpose(self, tf, node, a):
        x = self.tensor_in(node, node.input[0])
        perm = list(a.get("perm", reversed(range(len(x.perm)))))
        return [Value(x.tensor, L.after_transpose(x.perm, perm))]

    def _pool_common(self, tf, node, a):
        x = self.tensor_in(node, node.input[0])
        if len(x.perm) != 4:
            self.fail(node, "2-D pooling only")
        if int(a.get("ceil_mode", 0)):
            self.fail(node, "ceil_mode=1")
        if list(a.get("dilations", [1, 1])) != [1, 1]:
            self.fail(node, "dilated pooling")
        if int(a.get("storage_order", 0)):
            self.fail(node, "storage_order=1")
        kernel = list(a["kernel_shape"])
        strides = list(a.get("strides", [1, 1]))
        pad = self.spatial_pads(a, x.shape[2:], kernel, strides, [1, 1], lambda why: self.fail(node, why))
        return self.to_perm(tf, x, NHWC), kernel, strides, pad

    def op_MaxPool(self, tf, node, a):
        if len(node.output) > 1 and node.output[1]:
            self.fail(node, "MaxPool indices output")
        xs, kernel, strides, pad = self._pool_common(tf, node, a)
        if isinstance(pad, list):  # TFJS MaxPool has no explicit paddings: pad with the lowest float, VALID
            xs = tf.pad(xs, [[0, 0], list(pad[0]), list(pad[1]), [0, 0]],
                        constant_values=float(np.finfo(np.float32).min))
            pad = "VALID"
        return [Value(tf.nn.max_pool2d(xs, kernel, strides, pad), NHWC)]

    def op_AveragePool(self, tf, node, a):
        xs, kernel, strides, pad = self._pool_common(tf, node, a)
        include = int(a.get("count_include_pad", 0))
        if pad == "SAME" and include:  # TF's SAME average leaves the padding out; ONNX counts it here
            pad = _same_pads(xs.shape.as_list()[1:3], kernel, strides)
        if isinstance(pad, list):
            if not include:
                self.fail(node, "count_include_pad=0 with padding other than TF's SAME")
            xs = tf.pad(xs, [[0, 0], list(pad[0]), list(pad[1]), [0, 0]])
            pad = "VALID"
        return [Value(tf.nn.avg_pool2d(xs, kernel, strides, pad), NHWC)]

    def _nearest(self, tf, node, x: Value, scales):
        if len(x.perm) != 4 or len(scales) != 4:
            self.fail(node, "4-D resize only")
        if scales[0] != 1 or scales[1] != 1:
            self.fail(node, f"scales {list(scales)} resize batch or channels")
        if any(float(s) != int(s) or int(s) < 1 for s in scales[2:]):
            self.fail(node, f"non-integer scales {list(scales)}")
        sh, sw = int(scales[2]), int(scales[3])
        h, w = x.shape[2:]
        xs = self.to_perm(tf, x, NHWC)
        if (sh, sw) == (1, 1):
            return [Value(xs, NHWC)]
        y = tf.raw_ops.ResizeNearestNeighbor(images=xs, size=[h * sh, w * sw], align_corners=False,
                                             half_pixel_centers=False)
        return [Value(y, NHWC)]

    def op_Upsample(self, tf, node, a):
        mode = a.get("mode", b"nearest")
        if (mode.decode() if isinstance(mode, bytes) else mode) != "nearest":
            self.fail(node, f"mode {mode}")
        x = self.tensor_in(node, node.input[0])
        scales = list(a["scales"]) if "scales" in a else list(self.const(node, node.input[1], "scales"))
        return self._nearest(tf, node, x, scales)

    def op_Resize(self, tf, node, a):
        def text(key, default):
            v = a.get(key, default)
            return v.decode() if isinstance(v, bytes) else v
        if text("mode", "nearest") != "nearest":
            self.fail(node, f"mode {text('mode', '')}")
        x = self.tensor_in(node, node.input[0])
        if self.opset < 11:
            scales = list(self.const(node, node.input[1], "scales"))
            coord, nearest = "asymmetric", "floor"
        else:
            coord = text("coordinate_transformation_mode", "half_pixel")
            nearest = text("nearest_mode", "round_prefer_floor")
            scales = (list(self.const(node, node.input[2], "scales"))
                      if len(node.input) > 2 and node.input[2] and self.values[node.input[2]].const.size else None)
            if scales is None:
                sizes = list(self.const(node, node.input[3], "sizes"))
                scales = [o / i for o, i in zip(sizes, x.shape)]
        # out[i] = in[i // s] holds for integer s: asymmetric+floor always; half_pixel(+pytorch)+round_prefer_floor
        # (the source coordinate lies strictly within (k - 1/2, k + 1/2)); asymmetric+round_prefer_floor for s <= 2
        ok = ((coord == "asymmetric" and nearest == "floor")
              or (coord in ("half_pixel", "pytorch_half_pixel") and nearest in ("round_prefer_floor",
                                                                                "round_prefer_ceil", "floor")
                  and (nearest != "floor" or all(float(s) == 1 for s in scales)))
              or (coord == "asymmetric" and nearest == "round_prefer_floor" and all(float(s) <= 2 for s in scales)))
        if not ok:
            self.fail(node, f"nearest resize with {coord} / {nearest}")
        return self._nearest(tf, node, x, scales)


def _same_pads(in_hw, kernel, strides):
    out = []
    for n, k, s in zip(in_hw, kernel, strides):
        total = max((-(-n // s) - 1) * s + k - n, 0)
        out.append((total // 2, total - total // 2))
    return out


def _short(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "_" else "_" for ch in name)


# ---------------------------------------------------------------- entry points


def build_module(onnx_path: Path):
    """(tf.Module with ``serve`` [1,H,W,3] -> {output name: [1,HW,C]}, input shape NCHW, output names)."""
    import onnx
    tf = import_tensorflow()

    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise UserError(f"{onnx_path}: ONNX file not found")
    model = onnx.load(str(onnx_path))
    inits = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if len(inputs) != 1:
        raise UserError(f"{onnx_path}: expected one graph input, found {[i.name for i in inputs]}")
    dims = [d.dim_value for d in inputs[0].type.tensor_type.shape.dim]
    if len(dims) != 4 or not all(dims):
        raise UserError(f"{onnx_path}: input '{inputs[0].name}' must be a static [N, C, H, W] tensor, got {dims}")
    translator = Translator(model, str(onnx_path))
    nhwc = [dims[0], dims[2], dims[3], dims[1]]

    class Model(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec(nhwc, tf.float32, name="input")], autograph=False)
        def serve(self, x):
            return translator.run(tf, x)

    module = Model()
    module.serve.get_concrete_function()  # trace now: an unsupported op fails here, before anything is written
    return module, dims, [o.name for o in model.graph.output]


def check_against_onnxruntime(saved_model_dir: Path, onnx_path: Path, dims, names, seed: int = 0) -> dict:
    """Max |diff| per output between the SavedModel and onnxruntime on one seeded input, divided by
    max(1, max |onnxruntime output|)."""
    import onnxruntime as ort
    tf = import_tensorflow()
    x = np.random.default_rng(seed).normal(size=dims).astype(np.float32)
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    want = dict(zip(names, sess.run(names, {sess.get_inputs()[0].name: x})))
    fn = tf.saved_model.load(str(saved_model_dir)).signatures[SIGNATURE]
    got = {k: v.numpy() for k, v in fn(input=tf.constant(x.transpose(0, 2, 3, 1))).items()}
    diffs = {}
    for n in names:
        if got[n].shape != want[n].shape:
            raise RuntimeError(f"tf_nhwc output {n} has shape {list(got[n].shape)}, onnxruntime "
                               f"{list(want[n].shape)}")
        diffs[n] = float(np.abs(got[n].astype(np.float64) - want[n]).max()) / max(1.0, float(np.abs(want[n]).max()))
    return diffs


def to_saved_model(onnx_path: Path, out_dir: Path, cfg=None) -> dict:
    """Convert ``onnx_path`` to a SavedModel at ``out_dir``; return its io spec (input NHWC)."""
    tf = import_tensorflow()

    onnx_path, out_dir = Path(onnx_path), Path(out_dir)
    module, dims, names = build_module(onnx_path)
    if cfg is not None:
        from .context import output_names
        missing = [n for n in output_names(cfg.strides) if n not in names]
        if missing:
            raise UserError(f"{onnx_path}: graph lacks the signature outputs {missing}")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="tf_nhwc-", dir=out_dir.parent) as tmp:
        staged = Path(tmp) / "saved_model"
        tf.saved_model.save(module, str(staged), signatures={SIGNATURE: module.serve.get_concrete_function()})
        diffs = check_against_onnxruntime(staged, onnx_path, dims, names)
        bad = {n: d for n, d in diffs.items() if not d <= TOLERANCE}
        if bad:
            raise RuntimeError(f"tf_nhwc SavedModel differs from onnxruntime beyond {TOLERANCE}: {bad}")
        (staged / REPORT_FILE).write_text(json.dumps({"max_rel_diff_vs_onnxruntime": diffs}, indent=1))
        if out_dir.exists():
            shutil.rmtree(out_dir)
        staged.rename(out_dir)
    return {"input": {"name": "input", "layout": "NHWC", "shape": [dims[0], dims[2], dims[3], dims[1]]},
            "outputs": {n: n for n in names}, "signature": SIGNATURE}
