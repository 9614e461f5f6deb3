"""A BERT-style encoder's ONNX graph rebuilt from onnxruntime's fused operators.

The shipped MiniLM was exported by torch's dynamo exporter with scaled-dot-product attention:
each layer's attention is ~45 small nodes (shape arithmetic, Reshape/Transpose per head, a
mask built with Range/GatherND/Where, a NaN guard after the softmax) that onnxruntime's own
transformer optimiser does not recognise (it fuses no attention in this graph). For one query
of ~20 tokens those nodes cost as much as the matrix products. This module reads the weights
out of the (constant-folded) graph by their Hugging Face names and writes the same network as
onnxruntime's contrib operators: Attention (Q, K and V in one product),
SkipLayerNormalization and BiasGelu — 52 nodes instead of 315. Quantised, Attention
becomes QAttention, and a short query's embedding no longer pays for the small nodes
(bench/RESULTS.md).

The rebuilt graph must compute what the original does: `fuse` checks that on fixed token ids
(several lengths, with padding) and returns False when the graph is not such an encoder, when
a weight is missing, or when the outputs differ; the caller then quantises the original.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

# The largest difference of a hidden-state value (values are O(1)) between the rebuilt and the
# original graph that still counts as "the same network": float reordering gives ~1e-5.
TOLERANCE = 2e-3
_LAYER = re.compile(r"^(.*)encoder\.layer\.(\d+)\.attention\.self\.query\.bias$")
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def fuse(source: str | Path, out: str | Path) -> bool:
    """Write the fused graph of the encoder at `source` (constant-folded, fp32) to `out`.
    False (nothing written) when it is not a BERT-style encoder this module can rebuild, or
    the rebuilt graph's output differs from the original's."""
    import onnx

    model = onnx.load(str(source))
    names = [i.name for i in model.graph.input]
    outputs = [o.name for o in model.graph.output]
    if set(names) - set(_INPUTS) or not {"input_ids", "attention_mask"} <= set(names):
        return False
    weights = _Weights(model)
    if weights.prefix is None or not weights.layers:
        return False
    try:
        hidden = weights.get("embeddings.word_embeddings.weight").shape[1]
    except KeyError:
        return False
    feeds = probe_feeds(names)
    want = outputs_for(model, feeds)  # the original's, once for every try
    if want is None:
        return False
    for head_size in (64, 32, 128):  # the head count is not in the weights: try, and compare
        if hidden % head_size:
            continue
        try:
            fused = _build(weights, hidden // head_size, outputs[0], names, model)
        except (KeyError, ValueError):  # a weight is not there, or not of this layout's shape
            return False
        if same_output(want, outputs_for(fused, feeds), feeds):
            onnx.save(fused, str(out))
            return True
    return False


class _Weights:
    """The graph's float initializers by Hugging Face name, and each linear layer's weight
    matrix found through its bias (the exporter names biases, not the folded matrices)."""

    def __init__(self, model: Any) -> None:
        from onnx import numpy_helper

        self.arrays = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
        self._producer = {o: n for n in model.graph.node for o in n.output}
        self._adds = {n.input[1]: n for n in model.graph.node
                      if n.op_type == "Add" and len(n.input) == 2}
        layers = sorted((m.group(1), int(m.group(2))) for name in self.arrays
                        if (m := _LAYER.match(name)))
        self.prefix = layers[0][0] if layers else None
        self.layers = [n for p, n in layers if p == self.prefix]
        if self.layers != list(range(len(self.layers))):
            self.layers = []

    def get(self, name: str) -> Any:
        return self.arrays[f"{self.prefix}{name}"]

    def matrix(self, bias: str) -> Any:
        """The [in, out] weight of the linear layer whose bias is `bias`: MatMul(x, W) + bias."""
        add = self._adds.get(f"{self.prefix}{bias}")
        matmul = self._producer.get(add.input[0]) if add is not None else None
        if matmul is None or matmul.op_type != "MatMul" or matmul.input[1] not in self.arrays:
            raise KeyError(bias)
        return self.arrays[matmul.input[1]]


def _build(w: _Weights, heads: int, output: str, inputs: list[str], original: Any) -> Any:
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    nodes: list[Any] = []
    initializers: list[Any] = []

    def const(name: str, array: Any) -> str:
        initializers.append(numpy_helper.from_array(
            np.ascontiguousarray(array, dtype=np.float32), name))
        return name

    def const_int(name: str, value: int) -> str:
        initializers.append(numpy_helper.from_array(np.asarray(value, dtype=np.int64), name))
        return name

    def node(op: str, ins: list[str], out: str, contrib: bool = True, **attrs: Any) -> str:
        nodes.append(helper.make_node(op, ins, [out], domain="com.microsoft" if contrib else "",
                                      **attrs))
        return out

    eps = next((float(a.f) for n in original.graph.node if n.op_type == "LayerNormalization"
                for a in n.attribute if a.name == "epsilon"), 1e-12)
    e = "embeddings."
    # Embeddings as Gathers (not EmbedLayerNormalization, which takes whole tables): the
    # quantiser stores a Gather's table in 8 bits, as it did for the exported graph (a quarter
    # of the float32 word table's resident memory)
    node("Shape", ["input_ids"], "length", contrib=False, start=1, end=2)
    node("Squeeze", ["length"], "length0", contrib=False)
    node("Range", [const_int("zero", 0), "length0", const_int("one", 1)], "positions",
         contrib=False)
    node("Gather", [const("word", w.get(e + "word_embeddings.weight")), "input_ids"], "words",
         contrib=False)
    node("Gather", [const("position", w.get(e + "position_embeddings.weight")), "positions"],
         "where", contrib=False)
    x = node("Add", ["words", "where"], "embedded", contrib=False)
    if "token_type_ids" in inputs:
        node("Gather", [const("segment", w.get(e + "token_type_embeddings.weight")),
                        "token_type_ids"], "segments", contrib=False)
        x = node("Add", [x, "segments"], "embedded2", contrib=False)
    node("LayerNormalization", [x, const("embed_gamma", w.get(e + "LayerNorm.weight")),
                                const("embed_beta", w.get(e + "LayerNorm.bias"))], "h",
         contrib=False, epsilon=eps, axis=-1)
    node("Cast", ["attention_mask"], "mask_index", contrib=False, to=TensorProto.INT32)
    h = "h"
    for n in w.layers:
        p = f"encoder.layer.{n}."
        att = p + "attention."
        qkv = [f"{att}self.{x}.bias" for x in ("query", "key", "value")]
        a = node("Attention", [
            h, const(f"qkv_w{n}", np.concatenate([w.matrix(b) for b in qkv], axis=1)),
            const(f"qkv_b{n}", np.concatenate([w.get(b) for b in qkv])), "mask_index"],
            f"attention{n}", num_heads=heads)
        a = node("MatMul", [a, const(f"out_w{n}", w.matrix(att + "output.dense.bias"))],
                 f"attention_out{n}", contrib=False)
        h1 = node("SkipLayerNormalization", [
            a, h, const(f"ln1_g{n}", w.get(att + "output.LayerNorm.weight")),
            const(f"ln1_b{n}", w.get(att + "output.LayerNorm.bias")),
            const(f"out_b{n}", w.get(att + "output.dense.bias"))], f"h1_{n}", epsilon=eps)
        f = node("MatMul", [h1, const(f"ff1_w{n}", w.matrix(p + "intermediate.dense.bias"))],
                 f"ff1_{n}", contrib=False)
        f = node("BiasGelu", [f, const(f"ff1_b{n}", w.get(p + "intermediate.dense.bias"))],
                 f"gelu{n}")
        f = node("MatMul", [f, const(f"ff2_w{n}", w.matrix(p + "output.dense.bias"))],
                 f"ff2_{n}", contrib=False)
        h = node("SkipLayerNormalization", [
            f, h1, const(f"ln2_g{n}", w.get(p + "output.LayerNorm.weight")),
            const(f"ln2_b{n}", w.get(p + "output.LayerNorm.bias")),
            const(f"ff2_b{n}", w.get(p + "output.dense.bias"))],
            output if n == w.layers[-1] else f"h{n + 1}", epsilon=eps)
    graph = helper.make_graph(
        nodes, "encoder",
        [helper.make_tensor_value_info(i, TensorProto.INT64, ["batch", "sequence"])
         for i in inputs],
        [helper.make_tensor_value_info(output, TensorProto.FLOAT,
                                       ["batch", "sequence", int(w.get(
                                           "embeddings.LayerNorm.weight").shape[0])])],
        initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                     helper.make_opsetid("com.microsoft", 1)])
    model.ir_version = original.ir_version
    return model


def probe_feeds(inputs: list[str]) -> list[dict[str, Any]]:
    """Fixed token ids to compare two graphs on: one short text, and a batch of two long ones
    of which the second is padded."""
    import numpy as np

    rng = np.random.default_rng(15)
    ids = rng.integers(1000, 20000, size=(2, 40), dtype=np.int64)
    ids[:, 0], ids[:, -1] = 101, 102
    mask = np.ones_like(ids)
    mask[1, 25:] = 0
    out = [{"input_ids": ids[:1, :9], "attention_mask": mask[:1, :9]},
           {"input_ids": ids, "attention_mask": mask}]
    if "token_type_ids" in inputs:
        for feeds in out:
            feeds["token_type_ids"] = np.zeros_like(feeds["input_ids"])
    return out


def outputs_for(model: Any, feeds: list[dict[str, Any]]) -> list[Any] | None:
    """The model's first output for each of `feeds` (one session), or None when onnxruntime
    cannot run it here."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(model.SerializeToString(), options,
                                       providers=["CPUExecutionProvider"])
        return [session.run(None, f)[0] for f in feeds]
    except Exception:  # onnxruntime's own untyped errors: an op it cannot run here
        return None


def same_output(want: list[Any], got: list[Any] | None, feeds: list[dict[str, Any]]) -> bool:
    """Whether `got` matches `want` within TOLERANCE at every position that is not padding."""
    import numpy as np

    if got is None:
        return False
    for a, b, f in zip(want, got, feeds):
        if a.shape != b.shape:
            return False
        keep = f["attention_mask"].astype(bool)  # padded positions are not used
        if float(np.abs(a[keep] - b[keep]).max()) > TOLERANCE:
            return False
    return True
