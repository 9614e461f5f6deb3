"""The real models: the shipped all-MiniLM-L6-v2 file (fp32 arithmetic) and the default, its
int8 copy built from it: fidelity to sentence-transformers, batching, load checks, end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from vaultd.embedder import DEFAULT_MODEL, SHIPPED_MODEL, OnnxEmbedder, builtin_profiles
from vaultd.errors import ModelError
from vaultd.vault import init_vault, open_vault

FIXTURE = Path(__file__).parent / "fixtures" / "minilm_reference.json"

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def minilm(tmp_path_factory: pytest.TempPathFactory) -> OnnxEmbedder:
    """The shipped file as it is: the pipeline's exactness is measured on it."""
    profile = builtin_profiles(tmp_path_factory.mktemp("cache"))[SHIPPED_MODEL]
    embedder = OnnxEmbedder(profile, threads=2, batch_size=8)
    embedder.load()
    return embedder


@pytest.fixture(scope="module")
def minilm_int8(tmp_path_factory: pytest.TempPathFactory) -> OnnxEmbedder:
    """The default model (built once per test session, see conftest)."""
    profile = builtin_profiles(tmp_path_factory.mktemp("cache"))[DEFAULT_MODEL]
    embedder = OnnxEmbedder(profile, threads=2, batch_size=8)
    embedder.load()
    return embedder


@pytest.fixture(params=["fp32", "int8"])
def either(request: pytest.FixtureRequest, minilm: OnnxEmbedder,
           minilm_int8: OnnxEmbedder) -> OnnxEmbedder:
    return minilm if request.param == "fp32" else minilm_int8


@pytest.fixture(scope="module")
def reference() -> dict:
    return json.loads(FIXTURE.read_text(encoding="utf-8"))


@pytest.mark.slow
def test_matches_sentence_transformers(minilm: OnnxEmbedder, reference: dict) -> None:
    """Cosine to reference vectors made once with sentence-transformers (fixture README).

    The shipped ONNX file stores its weights as int8, which costs a little fidelity on very
    short texts (measured: 0.9984 for "TODO", 0.9990 for "hello world"; the same graph with the
    fp32 weights reaches ≥ 0.9999999 on every text, so the pipeline itself is exact)."""
    ours = minilm.embed(reference["texts"], kind="document")
    ref = np.asarray(reference["vectors"], dtype=np.float32)
    cos = (ours * ref).sum(axis=1) / np.linalg.norm(ref, axis=1)
    tokens = [minilm.count_tokens(t) for t in reference["texts"]]
    for text, c, n in zip(reference["texts"], cos, tokens):
        floor = 0.999 if n > 6 else 0.998
        assert c >= floor, f"cosine {c:.5f} < {floor} for {text[:40]!r} ({n} tokens)"
    assert float(cos.mean()) >= 0.999


@pytest.mark.slow
def test_the_int8_default_stays_close_to_sentence_transformers(minilm_int8: OnnxEmbedder,
                                                               minilm: OnnxEmbedder,
                                                               reference: dict) -> None:
    """Measured (onnxruntime 1.32, AMD EPYC): mean 0.989, min 0.975 ("TODO" and other texts of
    3-4 tokens sit lowest); the gate that made it the default is on retrieval, not on this
    (bench/quality/int8_gate.py: SciFact and locomo-dev within 0.005 of the fp32 file)."""
    assert minilm_int8.batch_size == 1  # max_batch: vectors independent of the batch
    ours = minilm_int8.embed(reference["texts"], kind="document")
    ref = np.asarray(reference["vectors"], dtype=np.float32)
    cos = (ours * ref).sum(axis=1) / np.linalg.norm(ref, axis=1)
    assert float(cos.min()) >= 0.965 and float(cos.mean()) >= 0.985, cos
    to_fp32 = (ours * minilm.embed(reference["texts"])).sum(axis=1)
    assert float(to_fp32.min()) >= 0.965


def test_long_text_truncates_at_256_like_the_reference(minilm: OnnxEmbedder,
                                                       reference: dict) -> None:
    long_texts = [t for t in reference["texts"] if minilm.count_tokens(t) > 256]
    assert len(long_texts) == 2  # the fixture exercises truncation
    # A text cut at a different length would drift well below 0.99 (0.81 at 128 tokens).
    idx = [reference["texts"].index(t) for t in long_texts]
    ours = minilm.embed(long_texts)
    ref = np.asarray([reference["vectors"][i] for i in idx], dtype=np.float32)
    assert ((ours * ref).sum(axis=1) >= 0.999).all()


def test_same_vector_alone_or_in_a_batch(either: OnnxEmbedder, reference: dict) -> None:
    """The index must equal a rebuild: a chunk embedded alone (after an edit) gets the vector
    it got among others (the full index). The int8 model holds this by running one text per
    call; batched, its per-batch activation scales moved vectors down to cosine 0.97."""
    texts = reference["texts"][:12]
    batched = either.embed(texts)
    alone = np.vstack([either.embed([t]) for t in texts])
    assert np.allclose(batched, alone, atol=1e-5)
    assert np.allclose(np.linalg.norm(batched, axis=1), 1.0, atol=1e-5)


def test_related_texts_score_higher_than_unrelated(either: OnnxEmbedder) -> None:
    q = either.embed(["how do I undo a bad deploy"], kind="query")[0]
    docs = either.embed(["Roll back a release with fly releases rollback",
                         "Ramen place near the office is good for lunch"])
    assert float(docs[0] @ q) > float(docs[1] @ q) + 0.2


def test_damaged_model_file_is_refused(tmp_path: Path) -> None:
    profile = builtin_profiles(tmp_path)[SHIPPED_MODEL]
    fake = tmp_path / "model.onnx"
    fake.write_bytes(b"not a model")
    from dataclasses import replace

    embedder = OnnxEmbedder(replace(profile, onnx=str(fake)))
    with pytest.raises(ModelError, match="sha256"):
        embedder.load()


def test_index_and_search_with_the_real_model(tmp_path: Path) -> None:
    root = tmp_path / "vault"
    init_vault(root)
    (root / "procedural" / "rollback.md").write_text(
        "---\ntitle: Roll back a release\n---\n# Roll back a release\n\n"
        "1. Find the previous release with `fly releases`.\n"
        "2. Run `fly releases rollback v41`.\n", encoding="utf-8")
    (root / "semantic" / "lunch.md").write_text(
        "# Lunch\n\nThe ramen place on 5th street closes at 3pm.\n", encoding="utf-8")
    (root / "episodic" / "2026-11-20.md").write_text(
        "# 2026-11-20\n\n## 10:00 — pool\nPostgres connection pool exhausted under load.\n",
        encoding="utf-8")
    env = {"VAULTD_CACHE_DIR": str(tmp_path / "cache")}
    with open_vault(root, env=env) as vault:
        report = vault.index()
        assert report.chunks_embedded >= 3 and not report.skipped
        hits = vault.search("undo a bad deployment", k=3, mode="vector")
        assert hits[0].path == "procedural/rollback.md"
        hits = vault.search("database connections running out", k=1)
        assert hits[0].path == "episodic/2026-11-20.md"
        assert hits[0].lines == (4, 4)  # the entry body; its heading is in hit.heading
        assert vault.index().chunks_embedded == 0


def test_an_index_of_the_old_default_is_rebuilt_for_the_int8_default(tmp_path: Path) -> None:
    """Until the int8 copy became the default, `all-MiniLM-L6-v2` named the shipped file. The
    id stays, the file differs: the index's recorded identity no longer matches, so the next
    index (`vaultd index`, or the daemon at start) empties and re-embeds it; until then search
    still answers."""
    from dataclasses import replace

    root = tmp_path / "vault"
    init_vault(root)
    (root / "semantic" / "lunch.md").write_text("# Lunch\n\nThe ramen place closes at 3pm.\n",
                                               encoding="utf-8")
    previous = replace(builtin_profiles(tmp_path / "c0")[SHIPPED_MODEL], id=DEFAULT_MODEL)
    with open_vault(root, env={}, embedder=OnnxEmbedder(previous)) as vault:
        vault.index()
        old = vault.store.model_identity()
    assert old == {"id": DEFAULT_MODEL, "dims": 384, "file": previous.sha256}
    with open_vault(root, env={"VAULTD_CACHE_DIR": str(tmp_path / "cache")},
                    daemon="never") as vault:
        assert vault.profile.id == DEFAULT_MODEL and vault.profile.build_from
        assert vault.search("noodle lunch", k=1)[0].path == "semantic/lunch.md"
        report = vault.index()
        assert report.rebuilt and report.chunks_embedded >= 1 and report.chunks_reused == 0
        new = vault.store.model_identity()
        assert new == vault.embedder.identity() and new["file"] != old["file"]
        assert vault.search("noodle lunch", k=1)[0].path == "semantic/lunch.md"
        assert vault.index().chunks_embedded == 0


def test_int8_texts_run_side_by_side_give_the_same_bits(minilm_int8: OnnxEmbedder,
                                                        reference: dict) -> None:
    """One text per call, two calls side by side (two threads, one session): every text's
    vector is bit for bit what it gets embedded alone, so an index still equals its rebuild."""
    texts = reference["texts"][:16]
    assert minilm_int8.threads == 2 and minilm_int8.batch_size == 1  # the parallel path
    together = minilm_int8.embed(texts)
    alone = np.vstack([minilm_int8.embed([t]) for t in texts])
    assert np.array_equal(together, alone)


def test_a_short_text_without_arena_shrinkage_gets_the_same_bits(
        either: OnnxEmbedder, monkeypatch: pytest.MonkeyPatch) -> None:
    """One short text (a query) runs without giving the memory arena back afterwards: a run
    option, so the vector is bit for bit the one the shrinking run gives."""
    from vaultd import embedder as embedder_module

    texts = ["how do I roll back a deploy", "postgres pool exhausted"]
    fast = np.vstack([either.embed([t], kind="query") for t in texts])
    monkeypatch.setattr(embedder_module, "SHORT_TOKENS", 0)  # every run shrinks, as before
    shrunk = np.vstack([either.embed([t], kind="query") for t in texts])
    assert np.array_equal(fast, shrunk)


def test_the_default_is_built_from_fused_operators(minilm_int8: OnnxEmbedder) -> None:
    """The int8 default is the encoder rebuilt from onnxruntime's fused operators, then
    quantised (vaultd.encoder_graph): one QAttention per layer instead of ~45 small nodes."""
    import onnx

    from vaultd.model_build import manifest_path

    path = minilm_int8.model_file()
    assert json.loads(manifest_path(path).read_text())["graph"] == "fused"
    ops = [node.op_type for node in onnx.load(str(path)).graph.node]
    assert ops.count("QAttention") == 6 and "Softmax" not in ops and len(ops) < 150
    # the word table stays 8-bit, as in the exported graph's quantised copy
    assert ops.count("DequantizeLinear") == 3


@pytest.mark.slow
def test_the_fused_encoder_computes_what_the_exported_one_does(tmp_path: Path,
                                                               minilm: OnnxEmbedder) -> None:
    """The rebuilt fp32 graph against the shipped one, on real text: the same network. And
    the check that guards the rebuild refuses a wrong one (6 heads of 64 instead of 12 of 32:
    the weights fit, the output does not)."""
    import onnx
    import onnxruntime as ort

    from vaultd import encoder_graph

    folded = tmp_path / "folded.onnx"
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(folded)
    ort.InferenceSession(str(minilm.model_file()), options, providers=["CPUExecutionProvider"])
    fused = tmp_path / "fused.onnx"
    assert encoder_graph.fuse(folded, fused)
    tokenizer = minilm._tokenizer
    for text in ["TODO", "The ramen place near the office closes at 3pm on weekdays."]:
        enc = tokenizer.encode(text)
        ids = np.array([enc.ids], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids),
                 "token_type_ids": np.zeros_like(ids)}
        want, got = (ort.InferenceSession(str(p), providers=["CPUExecutionProvider"])
                     .run(None, feeds)[0] for p in (folded, fused))
        assert np.abs(want - got).max() < 1e-4
    original = onnx.load(str(folded))
    weights = encoder_graph._Weights(original)
    names = ["input_ids", "attention_mask", "token_type_ids"]
    feeds = encoder_graph.probe_feeds(names)
    want = encoder_graph.outputs_for(original, feeds)
    assert want is not None
    wrong = encoder_graph._build(weights, 6, "last_hidden_state", names, original)
    assert not encoder_graph.same_output(want, encoder_graph.outputs_for(wrong, feeds), feeds)
    right = encoder_graph._build(weights, 12, "last_hidden_state", names, original)
    assert encoder_graph.same_output(want, encoder_graph.outputs_for(right, feeds), feeds)


@pytest.mark.slow
def test_a_warm_daemon_model_does_not_spin_between_queries(tmp_path: Path) -> None:
    """The daemon's embedder (`warm_up`) keeps onnxruntime's threads from spinning: right
    after a query the process is idle. (Spinning after each run, the default for a batch job,
    burned ~0.05 s of CPU in the half second after a query on this machine.) Measured in a
    process of its own: in the test run's, other tests' threads may be busy."""
    import subprocess
    import sys

    script = """if True:
        import sys, time
        from pathlib import Path
        from vaultd.embedder import DEFAULT_MODEL, OnnxEmbedder, builtin_profiles
        embedder = OnnxEmbedder(builtin_profiles(Path(sys.argv[1]))[DEFAULT_MODEL], threads=2)
        embedder.warm_up()
        for _ in range(5):
            embedder.embed(["how do I roll back a deploy"], kind="query")
        before = time.process_time()
        time.sleep(0.5)
        print(time.process_time() - before)
    """
    out = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True,
                         text=True, check=True)
    assert float(out.stdout) < 0.01
