"""Model profiles as data, with tiny ONNX graphs and tokenizers built here (no downloads).

The graphs are lookups: the hidden state at each position is a row of a known embedding table
chosen by the token id (plus, where a test needs it, a row of a position table). So each pooling
has an exact expected vector: mean = the normalised mean of the real tokens' rows, cls = the first
real token's row, last_token = the last real token's row. The pad token has its own distinct row,
so a pooling that picks or averages a pad gives a different vector and fails.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from tokenizers import Tokenizer, models, pre_tokenizers  # noqa: E402

from vaultd.config import load_settings  # noqa: E402
from vaultd.embedder import (  # noqa: E402
    DEFAULT_MODEL,
    QUANTIZED_SUFFIX,
    SHIPPED_MODEL,
    ModelProfile,
    OnnxEmbedder,
    builtin_profiles,
    file_sha256,
    profile_from_table,
    quantize,
    resolve_profile,
)
from vaultd.errors import ConfigError, ModelError  # noqa: E402
from vaultd.model_build import RECIPE, manifest_path  # noqa: E402
from vaultd.vault import init_vault, open_vault  # noqa: E402

OPSET = 17
IR_VERSION = 9
DIMS = 8
MAX_POSITIONS = 64
VOCAB = ["[PAD]", "[UNK]", "hello", "world", "alpha", "beta", "gamma", "delta", "notes",
         "deploy", "Instruct", ":", "find", "Query", "<pad>"]
TOKEN = {word: i for i, word in enumerate(VOCAB)}
QUERY_PREFIX = "Instruct: find\nQuery: "
PREFIX_WORDS = ["Instruct", ":", "find", "Query", ":"]
# Very different lengths (in characters and in tokens), deliberately not in length order.
TEXTS = ["hello world alpha beta gamma delta notes", "gamma", "deploy notes alpha",
         "beta", "world hello deploy gamma delta"]


def unit(vector: np.ndarray) -> np.ndarray:
    return (vector / np.linalg.norm(vector)).astype(np.float32)


def token_ids(text: str) -> list[int]:
    """The tiny tokenizer by hand: whitespace words, ':' split off, unknown words -> [UNK]."""
    return [TOKEN.get(w, TOKEN["[UNK]"]) for w in text.replace(":", " : ").split()]


# -- building the model files -------------------------------------------------------------------

def save_tokenizer(path: Path, *, file_padding: tuple[int, str] | None = None) -> Path:
    tok = Tokenizer(models.WordLevel(TOKEN, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    if file_padding is not None:
        tok.enable_padding(pad_id=file_padding[0], pad_token=file_padding[1])
    path.parent.mkdir(parents=True, exist_ok=True)
    tok.save(str(path))
    return path


def _int_input(name: str) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.INT64, ["batch", "seq"])


def save_graph(path: Path, table: np.ndarray, *, attention_mask: bool = True,
               token_type_ids: bool = False, position_table: np.ndarray | None = None,
               weight: np.ndarray | None = None, pooled: bool = False,
               extra_input: str = "", dims: int = DIMS) -> Path:
    """input_ids -> Gather(table) [B, T, D], every declared input used so none is dead:
    attention_mask adds 0 x mask, token_type_ids adds 100 x type id (so only zeros leave the
    lookup unchanged), position_ids adds a row of `position_table`; `weight` appends a MatMul;
    `pooled` adds a second output `sentence_embedding` = ReduceSum over T ([B, D])."""
    inputs = [_int_input("input_ids")]
    initializers = [numpy_helper.from_array(table, "table"),
                    numpy_helper.from_array(np.array([-1], dtype=np.int64), "last_axis"),
                    numpy_helper.from_array(np.array(0.0, dtype=np.float32), "zero"),
                    numpy_helper.from_array(np.array(100.0, dtype=np.float32), "hundred")]
    nodes = [helper.make_node("Gather", ["table", "input_ids"], ["h0"], axis=0)]
    current = "h0"

    def add(term: str) -> None:
        nonlocal current
        out = f"h{len(nodes)}"
        nodes.append(helper.make_node("Add", [current, term], [out]))
        current = out

    def scaled_input(name: str, scale: str) -> str:
        inputs.append(_int_input(name))
        nodes.append(helper.make_node("Cast", [name], [f"{name}_f"], to=TensorProto.FLOAT))
        nodes.append(helper.make_node("Unsqueeze", [f"{name}_f", "last_axis"], [f"{name}_u"]))
        nodes.append(helper.make_node("Mul", [f"{name}_u", scale], [f"{name}_s"]))
        return f"{name}_s"

    if attention_mask:
        add(scaled_input("attention_mask", "zero"))
    if token_type_ids:
        add(scaled_input("token_type_ids", "hundred"))
    if extra_input:
        add(scaled_input(extra_input, "zero"))
    if position_table is not None:
        inputs.append(_int_input("position_ids"))
        initializers.append(numpy_helper.from_array(position_table, "positions"))
        nodes.append(helper.make_node("Gather", ["positions", "position_ids"], ["pos"], axis=0))
        add("pos")
    if weight is not None:
        initializers.append(numpy_helper.from_array(weight, "weight"))
        nodes.append(helper.make_node("MatMul", [current, "weight"], ["projected"]))
        current = "projected"
    nodes.append(helper.make_node("Identity", [current], ["last_hidden_state"]))
    outputs = [helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT,
                                             ["batch", "seq", dims])]
    if pooled:
        nodes.append(helper.make_node("ReduceSum", [current, "one_axis"],
                                      ["sentence_embedding"], keepdims=0))
        initializers.append(numpy_helper.from_array(np.array([1], dtype=np.int64), "one_axis"))
        outputs.append(helper.make_tensor_value_info("sentence_embedding", TensorProto.FLOAT,
                                                     ["batch", dims]))
    graph = helper.make_graph(nodes, "tiny", inputs, outputs, initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="vaultd-tests")
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


@dataclass
class Tiny:
    root: Path
    tokenizer: Path
    table: np.ndarray
    position_table: np.ndarray

    def graph(self, name: str = "tiny.onnx", **kwargs) -> Path:
        table = kwargs.pop("table", self.table)
        return save_graph(self.root / name, table, **kwargs)

    def profile(self, onnx_path: Path | None = None, **fields) -> ModelProfile:
        fields.setdefault("dims", DIMS)
        fields.setdefault("max_tokens", 32)
        return ModelProfile(id=fields.pop("id", "tiny"),
                            onnx=str(onnx_path or self.graph()),
                            tokenizer=str(self.tokenizer), **fields)

    def embedder(self, onnx_path: Path | None = None, batch_size: int = 8,
                 **fields) -> OnnxEmbedder:
        return OnnxEmbedder(self.profile(onnx_path, **fields), threads=1, batch_size=batch_size)

    def expected(self, text: str, pooling: str, *, positions: bool = False) -> np.ndarray:
        ids = token_ids(text)
        rows = self.table[ids]
        if positions:
            rows = rows + self.position_table[: len(ids)]
        picked = {"mean": rows.mean(axis=0), "cls": rows[0], "last_token": rows[-1]}[pooling]
        return unit(picked)


@pytest.fixture
def tiny(tmp_path: Path) -> Tiny:
    rng = np.random.default_rng(7)
    return Tiny(root=tmp_path / "model",
                tokenizer=save_tokenizer(tmp_path / "model" / "tokenizer.json"),
                table=rng.normal(size=(len(VOCAB), DIMS)).astype(np.float32),
                position_table=rng.normal(size=(MAX_POSITIONS, DIMS)).astype(np.float32))


def test_onnxruntime_accepts_the_tiny_graph(tiny: Tiny) -> None:
    import onnxruntime as ort

    session = ort.InferenceSession(str(tiny.graph()), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["input_ids", "attention_mask"]


# -- a user profile declared by config alone ----------------------------------------------------

CONFIG = """\
[embedding]
model = "tiny"
batch_size = 2

[models.tiny]
onnx = "models/tiny.onnx"
tokenizer = "models/tokenizer.json"
dims = 8
pooling = "last_token"
padding_side = "left"
query_prefix = "Instruct: find\\nQuery: "
max_tokens = 32
link_threshold = 0.75
"""


def _vault_with_config(tmp_path: Path, tiny: Tiny, config: str) -> Path:
    vault = tmp_path / "vault"
    init_vault(vault)
    save_graph(vault / "models" / "tiny.onnx", tiny.table)
    save_tokenizer(vault / "models" / "tokenizer.json")
    (vault / ".vaultd" / "config.toml").write_text(config, encoding="utf-8")
    return vault


def test_user_profile_from_config_alone_builds_an_onnx_embedder(tmp_path: Path,
                                                                tiny: Tiny) -> None:
    vault = _vault_with_config(tmp_path, tiny, CONFIG)
    settings = load_settings(vault, env={})
    assert settings.embedding.model == "tiny"
    assert settings.models["tiny"]["query_prefix"] == QUERY_PREFIX  # TOML "\n" is a newline

    opened = open_vault(vault, env={"VAULTD_CACHE_DIR": str(tmp_path / "cache")})
    try:
        profile = opened.profile
        assert profile == ModelProfile(
            id="tiny", dims=8, kind="onnx",
            onnx=str(vault / "models" / "tiny.onnx"),  # relative paths are vault-relative
            tokenizer=str(vault / "models" / "tokenizer.json"),
            pooling="last_token", padding_side="left", query_prefix=QUERY_PREFIX,
            max_tokens=32, link_threshold=0.75)
        embedder = opened.embedder
        assert isinstance(embedder, OnnxEmbedder)
        assert embedder.batch_size == 2 and embedder.dims == 8 and embedder.max_tokens == 32
        texts = ["hello world alpha", "gamma", "deploy notes"]
        queries = embedder.embed(texts, kind="query")
        assert queries.shape == (3, 8) and queries.dtype == np.float32
        for row, text in zip(queries, texts):
            np.testing.assert_allclose(row, tiny.expected(QUERY_PREFIX + text, "last_token"),
                                       atol=1e-6)
        # last-token pooling: the prefix comes first, so the last token and vector are the same
        np.testing.assert_allclose(queries, embedder.embed(texts, kind="document"), atol=1e-6)
        assert embedder.count_tokens(QUERY_PREFIX + "hello") == 6
    finally:
        opened.close()


def test_bad_profile_in_config_is_a_config_error_naming_the_table(tmp_path: Path,
                                                                  tiny: Tiny) -> None:
    vault = _vault_with_config(tmp_path, tiny, CONFIG.replace('"last_token"', '"max"'))
    with pytest.raises(ConfigError, match=r"\[models\.tiny\]: pooling must be"):
        open_vault(vault, env={"VAULTD_CACHE_DIR": str(tmp_path / "cache")})


def test_unknown_model_name_lists_known_ones(tmp_path: Path, tiny: Tiny) -> None:
    vault = _vault_with_config(tmp_path, tiny, CONFIG.replace('model = "tiny"',
                                                              'model = "tiny2"'))
    with pytest.raises(ConfigError, match="unknown embedding model 'tiny2'") as info:
        open_vault(vault, env={"VAULTD_CACHE_DIR": str(tmp_path / "cache")})
    assert "tiny" in str(info.value) and DEFAULT_MODEL in str(info.value)


# -- pooling and padding ------------------------------------------------------------------------

@pytest.mark.parametrize("padding_side", ["left", "right"])
@pytest.mark.parametrize("pooling", ["last_token", "mean", "cls"])
def test_pooling_ignores_padding_on_either_side(tiny: Tiny, pooling: str,
                                                padding_side: str) -> None:
    embedder = tiny.embedder(pooling=pooling, padding_side=padding_side)
    batched = embedder.embed(TEXTS)
    assert embedder.calls == 1  # one padded batch: the lengths differ, so padding happened
    assert embedder._tokenizer.padding["direction"] == padding_side
    for row, text in zip(batched, TEXTS):
        np.testing.assert_allclose(row, tiny.expected(text, pooling), atol=1e-6)
        np.testing.assert_allclose(row, embedder.embed([text])[0], atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(batched, axis=1), 1.0, atol=1e-6)


def test_position_ids_count_real_tokens_under_left_padding(tiny: Tiny) -> None:
    graph = tiny.graph("positions.onnx", position_table=tiny.position_table)
    embedder = tiny.embedder(graph, pooling="last_token", padding_side="left")
    batched = embedder.embed(TEXTS)
    for row, text in zip(batched, TEXTS):
        np.testing.assert_allclose(row, tiny.expected(text, "last_token", positions=True),
                                   atol=1e-6)
        np.testing.assert_allclose(row, embedder.embed([text])[0], atol=1e-6)


def test_truncates_at_max_tokens_but_counts_everything(tiny: Tiny) -> None:
    embedder = tiny.embedder(pooling="mean", max_tokens=3)
    text = "hello world alpha beta gamma"
    assert embedder.count_tokens(text) == 5
    np.testing.assert_allclose(embedder.embed([text])[0],
                               tiny.expected("hello world alpha", "mean"), atol=1e-6)


def test_pad_id_zero_is_not_mistaken_for_missing(tiny: Tiny) -> None:
    # the vocabulary has both [PAD] (id 0) and <pad>: [PAD] is the pad, not <pad>
    embedder = tiny.embedder()
    embedder.load()
    assert embedder._tokenizer.padding["pad_id"] == 0
    assert embedder._tokenizer.padding["pad_token"] == "[PAD]"


def test_padding_configured_in_the_tokenizer_file_is_kept(tiny: Tiny, tmp_path: Path) -> None:
    path = save_tokenizer(tmp_path / "padded" / "tokenizer.json",
                          file_padding=(TOKEN["<pad>"], "<pad>"))
    embedder = OnnxEmbedder(replace(tiny.profile(), tokenizer=str(path), padding_side="left"))
    embedder.load()
    padding = embedder._tokenizer.padding
    assert (padding["pad_id"], padding["pad_token"]) == (TOKEN["<pad>"], "<pad>")
    assert padding["direction"] == "left" and padding["length"] is None  # longest, not fixed


# -- prefixes -----------------------------------------------------------------------------------

def test_query_prefix_applies_to_queries_only(tiny: Tiny) -> None:
    embedder = tiny.embedder(pooling="mean", query_prefix=QUERY_PREFIX)
    query = embedder.embed(["hello"], kind="query")[0]
    document = embedder.embed(["hello"], kind="document")[0]
    ids = [TOKEN[w] for w in PREFIX_WORDS] + [TOKEN["hello"]]
    np.testing.assert_allclose(query, unit(tiny.table[ids].mean(axis=0)), atol=1e-6)
    np.testing.assert_allclose(document, unit(tiny.table[TOKEN["hello"]]), atol=1e-6)
    np.testing.assert_allclose(query, embedder.embed([QUERY_PREFIX + "hello"])[0], atol=1e-6)
    assert float(query @ document) < 0.999


def test_document_prefix_applies_to_documents_only(tiny: Tiny) -> None:
    embedder = tiny.embedder(pooling="mean", query_prefix=QUERY_PREFIX,
                             document_prefix="notes: ")
    np.testing.assert_allclose(embedder.embed(["gamma"], kind="document")[0],
                               tiny.expected("notes: gamma", "mean"), atol=1e-6)
    np.testing.assert_allclose(embedder.embed(["gamma"], kind="query")[0],
                               tiny.expected(QUERY_PREFIX + "gamma", "mean"), atol=1e-6)
    with pytest.raises(ValueError, match="kind"):
        embedder.embed(["gamma"], kind="passage")  # type: ignore[arg-type]


# -- graph inputs and outputs -------------------------------------------------------------------

@pytest.mark.parametrize("token_type_ids", [False, True])
def test_feeds_only_the_inputs_the_graph_declares(tiny: Tiny, token_type_ids: bool) -> None:
    # onnxruntime rejects a feed the graph does not declare, and the token_type_ids graph adds
    # 100 x type id: matching the lookup proves it got exactly the inputs it declares, zeros.
    graph = tiny.graph("tt.onnx", token_type_ids=token_type_ids)
    embedder = tiny.embedder(graph, pooling="mean")
    embedder.load()
    expected_inputs = {"input_ids", "attention_mask"} | ({"token_type_ids"} if token_type_ids
                                                         else set())
    assert embedder._input_names == expected_inputs
    for row, text in zip(embedder.embed(TEXTS), TEXTS):
        np.testing.assert_allclose(row, tiny.expected(text, "mean"), atol=1e-6)


def test_a_pooled_output_is_used_as_is_then_normalised(tiny: Tiny) -> None:
    graph = tiny.graph("pooled.onnx", pooled=True)
    # pooling says last_token, but a [B, D] output is already pooled (sum over T) and wins
    embedder = tiny.embedder(graph, pooling="last_token", output="sentence_embedding")
    for text in TEXTS:
        vector = embedder.embed([text])[0]
        np.testing.assert_allclose(vector, unit(tiny.table[token_ids(text)].sum(axis=0)),
                                   atol=1e-6)
        assert abs(float(np.linalg.norm(vector)) - 1.0) < 1e-6


def test_named_output_that_does_not_exist_is_a_model_error(tiny: Tiny) -> None:
    embedder = tiny.embedder(output="pooler_output")
    with pytest.raises(ModelError, match="failed to run"):
        embedder.embed(["hello"])


def test_graph_without_attention_mask_is_refused(tiny: Tiny) -> None:
    embedder = tiny.embedder(tiny.graph("nomask.onnx", attention_mask=False))
    with pytest.raises(ModelError, match="attention_mask"):
        embedder.load()


def test_graph_needing_an_input_vaultd_cannot_feed_is_refused(tiny: Tiny) -> None:
    embedder = tiny.embedder(tiny.graph("extra.onnx", extra_input="pixel_values"))
    with pytest.raises(ModelError, match="pixel_values"):
        embedder.load()


# -- profile validation -------------------------------------------------------------------------

BASE_TABLE = {"onnx": "m/model.onnx", "tokenizer": "m/tokenizer.json", "dims": 8}


@pytest.mark.parametrize(("change", "message"), [
    ({"colour": "red", "size": 1}, r"unknown key\(s\): colour, size"),
    ({"id": "other"}, r"unknown key\(s\): id"),
    ({"onnx": None}, "'onnx' is required"),
    ({"tokenizer": None}, "'tokenizer' is required"),
    ({"dims": None}, "'dims' is required"),
    ({"pooling": "max"}, "pooling must be mean, cls or last_token"),
    ({"padding_side": "top"}, "padding_side must be right or left"),
    ({"dims": "1024"}, "dims: expected a positive integer"),
    ({"dims": 0}, "dims: expected a positive integer"),
    ({"max_tokens": True}, "max_tokens: expected a positive integer"),
    ({"query_prefix": 3}, "query_prefix: expected a string"),
    ({"onnx": ""}, "onnx: must be a file path"),
    ({"link_threshold": "high"}, "link_threshold: expected a number"),
    ({"build_from": "m/model.onnx"}, r"unknown key\(s\): build_from"),  # built-ins only
])
def test_profile_validation_errors_are_clear(tmp_path: Path, change: dict,
                                             message: str) -> None:
    table = {k: v for k, v in {**BASE_TABLE, **change}.items() if v is not None}
    with pytest.raises(ConfigError, match=r"^\[models\.mine\]") as info:
        profile_from_table("mine", table, tmp_path)
    assert info.match(message)


def test_profile_paths_relative_to_the_vault_absolute_kept_home_expanded(tmp_path: Path) -> None:
    profile = profile_from_table("mine", {**BASE_TABLE, "tokenizer": "/abs/tokenizer.json",
                                          "link_threshold": 1}, tmp_path)
    assert profile.onnx == str(tmp_path / "m" / "model.onnx")
    assert profile.tokenizer == "/abs/tokenizer.json"
    assert profile.link_threshold == 1.0 and isinstance(profile.link_threshold, float)
    assert profile.kind == "onnx" and profile.pooling == "mean"
    home = profile_from_table("mine", {**BASE_TABLE, "onnx": "~/m.onnx"}, tmp_path)
    assert home.onnx == os.path.expanduser("~/m.onnx")


def test_user_table_wins_over_a_builtin_of_the_same_name(tmp_path: Path) -> None:
    profile = resolve_profile(DEFAULT_MODEL, {DEFAULT_MODEL: BASE_TABLE}, tmp_path, tmp_path)
    assert profile.dims == 8 and profile.onnx == str(tmp_path / "m" / "model.onnx")


def test_missing_model_file_names_the_path(tiny: Tiny) -> None:
    missing = tiny.root / "nowhere" / "model.onnx"
    embedder = tiny.embedder(missing)
    with pytest.raises(ModelError, match="model file not found") as info:
        embedder.embed(["hello"])
    assert str(missing) in str(info.value)
    assert embedder.file_hash() == "missing"


def test_missing_tokenizer_file_names_the_path(tiny: Tiny) -> None:
    missing = tiny.root / "nowhere" / "tokenizer.json"
    embedder = OnnxEmbedder(replace(tiny.profile(), tokenizer=str(missing)))
    with pytest.raises(ModelError, match="tokenizer file not found") as info:
        embedder.load()
    assert str(missing) in str(info.value)


def test_sha256_mismatch_names_expected_and_actual(tiny: Tiny) -> None:
    graph = tiny.graph()
    actual = hashlib.sha256(graph.read_bytes()).hexdigest()
    wrong = "0" * 64
    with pytest.raises(ModelError) as info:
        tiny.embedder(graph, sha256=wrong).load()
    assert wrong in str(info.value) and actual in str(info.value) and str(graph) in str(info.value)

    good = tiny.embedder(graph, sha256=actual)
    good.load()  # the right digest loads
    assert good.identity() == {"id": "tiny", "dims": DIMS, "file": actual}
    assert tiny.embedder(graph).file_hash() == actual  # no declared digest: hashed from the file


def test_dims_that_disagree_with_the_graph_are_a_model_error(tiny: Tiny) -> None:
    embedder = tiny.embedder(dims=DIMS + 1)
    with pytest.raises(ModelError, match=r"check 'dims'") as info:
        embedder.embed(["hello"])
    assert f"expected (1, {DIMS + 1})" in str(info.value)


# -- quantisation -------------------------------------------------------------------------------

def test_the_default_profile_is_int8_derived_from_the_shipped_model(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    profiles = builtin_profiles(cache)
    target = profiles[DEFAULT_MODEL]
    source = profiles[SHIPPED_MODEL]
    assert (target.id, source.id) == ("all-MiniLM-L6-v2", "all-MiniLM-L6-v2-fp32")
    assert Path(target.onnx) == cache / "models" / "all-MiniLM-L6-v2-int8.onnx"
    assert target.sha256 == "" and target.dims == 384 and target.max_batch == 1
    assert (target.build_from, target.build_from_sha256) == (source.onnx, source.sha256)
    assert source.sha256 and not source.build_from and source.max_batch == 0
    # the name it had while it was opt-in still works, and is the same model file
    old_name = profiles[DEFAULT_MODEL + QUANTIZED_SUFFIX]
    assert replace(old_name, id=target.id) == target


def _derived(tiny: Tiny, cache: Path) -> ModelProfile:
    weight = np.random.default_rng(3).normal(size=(DIMS, DIMS)).astype(np.float32)
    base = tiny.profile(tiny.graph("matmul.onnx", weight=weight), id="tiny", pooling="mean")
    return replace(base, id="tiny-q8", onnx=str(cache / "models" / "tiny-q8.onnx"),
                   build_from=base.onnx, build_from_sha256=file_sha256(base.onnx))


def test_a_derived_model_is_built_once_when_first_used(tiny: Tiny, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import onnxruntime.quantization

    derived = _derived(tiny, tmp_path / "cache")
    out = Path(derived.onnx)
    assert not out.exists()
    embedder = OnnxEmbedder(derived)
    identity = embedder.identity()  # the index asks for it first: that builds the file
    assert out.is_file() and manifest_path(out).is_file()
    assert sorted(p.name for p in out.parent.iterdir() if not p.name.startswith(".")) == [
        out.name, manifest_path(out).name]  # no temporary file left (only a hidden lock file)
    manifest = json.loads(manifest_path(out).read_text())
    assert identity["file"] == manifest["identity"] == manifest["sha256"] == file_sha256(out)
    assert manifest["recipe"] == RECIPE and manifest["source_sha256"] == derived.build_from_sha256
    assert manifest["graph"] == "as exported"  # not an encoder vaultd can rebuild: quantised as is
    ops = {node.op_type for node in onnx.load(str(out)).graph.node}
    assert ops & {"MatMulInteger", "DynamicQuantizeLinear", "DequantizeLinear"}, ops
    assert embedder.embed(TEXTS).shape == (len(TEXTS), DIMS)
    mtime = out.stat().st_mtime_ns

    def must_not_run(*args, **kwargs):
        raise AssertionError("rebuilt a model whose cached file and manifest are good")

    monkeypatch.setattr(onnxruntime.quantization, "quantize_dynamic", must_not_run)
    again = OnnxEmbedder(derived)
    assert again.identity() == identity
    again.load()
    base = replace(derived, onnx=derived.build_from, sha256=derived.build_from_sha256,
                   build_from="")
    assert quantize(base, derived) == out
    assert quantize(derived, derived) == out  # a derived base stands for its source
    assert out.stat().st_mtime_ns == mtime


def test_int8_weights_are_7_bit_so_the_u8s8_kernel_cannot_saturate(tiny: Tiny,
                                                                   tmp_path: Path) -> None:
    """On x86 without VNNI, onnxruntime's u8 x s8 MatMulInteger adds two products in int16: with
    8-bit weights 255 x 127 x 2 overflows, and this very graph gave cosine 0.90 on one text
    (an exact integer product of the same quantised values: 0.99997). Weights within ±64 can't
    overflow (255 x 64 x 2 = 32,640 <= 32,767), on any CPU."""
    derived = _derived(tiny, tmp_path / "cache")
    exact = OnnxEmbedder(replace(derived, onnx=derived.build_from, build_from="")).embed(TEXTS)
    alone = np.vstack([OnnxEmbedder(derived).embed([t]) for t in TEXTS])
    batched = OnnxEmbedder(derived).embed(TEXTS)
    assert float((exact * alone).sum(axis=1).min()) > 0.999
    assert float((exact * batched).sum(axis=1).min()) > 0.999
    weights = [numpy_helper.to_array(t) for t in onnx.load(derived.onnx).graph.initializer
               if t.data_type == TensorProto.INT8]
    assert weights and max(int(np.abs(w.astype(np.int32)).max()) for w in weights) <= 64


def test_a_damaged_or_outdated_build_is_made_again(tiny: Tiny, tmp_path: Path) -> None:
    derived = _derived(tiny, tmp_path / "cache")
    out, manifest_file = Path(derived.onnx), manifest_path(Path(derived.onnx))
    first = OnnxEmbedder(derived).identity()["file"]
    good = out.read_bytes()

    out.write_bytes(good + b"x")  # damaged: its hash no longer matches the manifest
    assert OnnxEmbedder(derived).identity()["file"] == first
    assert out.read_bytes() == good

    manifest = json.loads(manifest_file.read_text())
    manifest["onnxruntime"] = "0.0.1"  # another onnxruntime made it: built again, same output
    manifest_file.write_text(json.dumps(manifest))
    assert OnnxEmbedder(derived).identity()["file"] == first
    rebuilt = json.loads(manifest_file.read_text())
    assert rebuilt["onnxruntime"] != "0.0.1" and rebuilt["identity"] == first

    # the same bytes computing other vectors under this onnxruntime: a new identity, so every
    # index built with the old vectors is rebuilt
    manifest = {**rebuilt, "onnxruntime": "0.0.1",
                "probe": [-x for x in rebuilt["probe"]]}
    manifest_file.write_text(json.dumps(manifest))
    changed = OnnxEmbedder(derived).identity()["file"]
    assert changed != first and changed.startswith(first)

    manifest_file.write_text("{not json")  # an unreadable manifest is no manifest
    assert OnnxEmbedder(derived).identity()["file"] == json.loads(
        manifest_file.read_text())["identity"]


def test_a_derived_model_refuses_a_damaged_source(tiny: Tiny, tmp_path: Path) -> None:
    derived = replace(_derived(tiny, tmp_path / "cache"), build_from_sha256="e" * 64)
    with pytest.raises(ModelError, match="e" * 64):
        OnnxEmbedder(derived).load()
    assert not Path(derived.onnx).exists()


def test_quantize_refuses_a_missing_or_damaged_base(tiny: Tiny, tmp_path: Path) -> None:
    target = tiny.profile(tmp_path / "out" / "q8.onnx", id="tiny-q8")
    missing = tiny.profile(tmp_path / "none.onnx")
    with pytest.raises(ModelError, match="model file not found") as info:
        quantize(missing, target)
    assert str(tmp_path / "none.onnx") in str(info.value)
    damaged = tiny.profile(sha256="f" * 64)
    with pytest.raises(ModelError, match="f" * 64):
        quantize(damaged, target)
    assert not Path(target.onnx).exists()


# -- length-sorted batching ---------------------------------------------------------------------

def test_length_sorted_batches_return_vectors_in_the_callers_order(tiny: Tiny) -> None:
    embedder = tiny.embedder(pooling="mean", batch_size=2)
    batches: list[list[str]] = []
    run_batch = embedder._embed_batch

    def spy(texts: list[str]) -> np.ndarray:
        batches.append(list(texts))
        return run_batch(texts)

    embedder._embed_batch = spy  # type: ignore[method-assign]
    vectors = embedder.embed(TEXTS)

    assert [len(b) for b in batches] == [2, 2, 1]
    flat = [t for b in batches for t in b]
    assert sorted(flat) == sorted(TEXTS) and flat != TEXTS
    assert [len(t) for t in flat] == sorted(len(t) for t in TEXTS)  # shortest first
    assert embedder.calls == 3 and embedder.texts_embedded == 5
    for row, text in zip(vectors, TEXTS):
        np.testing.assert_allclose(row, tiny.expected(text, "mean"), atol=1e-6)
    assert embedder.embed([]).shape == (0, DIMS)


def test_max_batch_caps_the_texts_per_model_call(tiny: Tiny, tmp_path: Path) -> None:
    embedder = tiny.embedder(pooling="mean", batch_size=8, max_batch=1)
    assert embedder.batch_size == 1
    vectors = embedder.embed(TEXTS)
    assert embedder.calls == len(TEXTS)
    for row, text in zip(vectors, TEXTS):
        np.testing.assert_allclose(row, tiny.expected(text, "mean"), atol=1e-6)
    assert tiny.embedder(batch_size=2, max_batch=4).batch_size == 2  # a cap, not a size
    assert profile_from_table("mine", {**BASE_TABLE, "max_batch": 1}, tmp_path).max_batch == 1
    with pytest.raises(ConfigError, match="max_batch: expected a positive integer"):
        profile_from_table("mine", {**BASE_TABLE, "max_batch": 0}, tmp_path)


def test_a_graph_that_is_not_an_encoder_is_not_rebuilt(tiny: Tiny, tmp_path: Path) -> None:
    from vaultd.encoder_graph import fuse

    out = tmp_path / "fused.onnx"
    assert fuse(tiny.graph(), out) is False
    assert not out.exists()
