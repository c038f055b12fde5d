"""The walk of ``--backend tf_nhwc``: a topologically sorted ONNX graph -> TF ops, node by node, inside a trace.

Each node goes to the handler that ``converters.tf_nhwc.op_table`` names for its op type: first its TFJS speed
rewrite where it has one (which may translate the nodes after it too, and answers None where the graph is not
its pattern), else its exact translation. An op type without a handler, or of another domain, is refused with
an :class:`Unsupported` naming the node, as is every attribute or pattern a handler does not translate exactly.
The translator keeps the graph's values (:class:`~converters.tf_nhwc.layout.Value`) and what the handlers share:
constant and tensor lookups, layout changes, the consumers of a value.
"""
from __future__ import annotations

import numpy as np

from contracts.errors import UserError

from . import layout as L
from .layout import NHWC, Value
from .op_table import OPS, REWRITES


class Unsupported(UserError):
    """An op, attribute or pattern this backend does not translate exactly (exit 2: the user picks a backend)."""


def attributes(node) -> dict:
    """{name: python value} of an ONNX node's attributes."""
    from onnx import helper
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def output_name(name: str) -> str:
    """A TF op name for a graph output (letters, digits, underscores)."""
    return "".join(ch if ch.isalnum() or ch in "_" else "_" for ch in name)


class Translator:
    """Walks a topologically sorted ONNX graph and emits TF ops (call :meth:`run` inside a tf.function trace)."""

    def __init__(self, model, where: str):
        from onnx import numpy_helper
        self.model, self.where = model, where
        self.graph = model.graph
        self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
        self.inits = {t.name: numpy_helper.to_array(t) for t in self.graph.initializer}
        self.values: dict[str, Value] = {}
        self.consumers: dict[str, list] = {}
        self.done: set[int] = set()   # ids of nodes already translated as part of a pattern

    # -------------------------------------------------------------- what the handlers share

    def fail(self, node, why: str):
        raise Unsupported(f"{self.where}: node '{node.name or node.output[0]}' ({node.op_type}): {why} "
                          f"(not supported by --backend tf_nhwc; use --backend onnx_tf)")

    @staticmethod
    def attr(node) -> dict:
        return attributes(node)

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

    @staticmethod
    def to_perm(tf, v: Value, want: tuple) -> object:
        """The stored tensor re-laid out so that its perm is ``want``."""
        if tuple(v.perm) == tuple(want):
            return v.tensor
        q = [list(v.perm).index(w) for w in want]
        return tf.transpose(v.tensor, q)

    @staticmethod
    def const_like(tf, c: np.ndarray, v: Value):
        """A constant broadcast against ``v``, laid out as ``v`` is stored (None if its rank is higher)."""
        rank = len(v.perm)
        if c.ndim > rank:
            return None
        c = c.reshape((1,) * (rank - c.ndim) + c.shape)
        return tf.constant(np.ascontiguousarray(c.transpose(v.perm)))

    def only_user(self, name: str, op_type: str):
        """The one node that reads ``name``, if it has type ``op_type`` and ``name`` is not a graph output."""
        users = self.consumers.get(name, [])
        if len(users) != 1 or users[0].op_type != op_type or name in {o.name for o in self.graph.output}:
            return None
        return users[0]

    def consume(self, nodes, value_name: str, value: Value) -> None:
        """Mark later ``nodes`` as translated by a pattern that computed ``value_name`` for them."""
        self.done.update(id(n) for n in nodes)
        self.values[value_name] = value

    # -------------------------------------------------------------- the walk

    def run(self, tf, x_nhwc) -> dict:
        """{graph output name: TF tensor in the ONNX layout} for the NHWC input tensor ``x_nhwc``."""
        self.values = {name: Value(const=arr) for name, arr in self.inits.items()}
        inputs = [i for i in self.graph.input if i.name not in self.inits]
        if len(inputs) != 1:
            raise UserError(f"{self.where}: expected one graph input, found {[i.name for i in inputs]}")
        self.values[inputs[0].name] = Value(x_nhwc, NHWC)
        self.consumers = {}
        for node in self.graph.node:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)
        self.done = set()
        for node in self.graph.node:
            if id(node) not in self.done:
                for name, val in zip(node.output, self.translate(tf, node)):
                    self.values[name] = val
        return {out.name: self.graph_output(tf, out.name) for out in self.graph.output}

    def translate(self, tf, node) -> list[Value]:
        """The values of ``node``'s outputs: its speed rewrite's where that applies, else the exact handler's."""
        handler = OPS.get(node.op_type)
        if handler is None or node.domain not in ("", "ai.onnx"):
            self.fail(node, "op type not supported")
        a = attributes(node)
        rewrite = REWRITES.get(node.op_type)
        outs = rewrite(self, tf, node, a) if rewrite is not None else None
        return handler(self, tf, node, a) if outs is None else outs

    def graph_output(self, tf, name: str):
        v = self.values[name]
        if v.const is not None:
            raise UserError(f"{self.where}: output '{name}' is a constant")
        return tf.identity(self.to_perm(tf, v, L.identity(len(v.perm))), name=output_name(name))
