"""Candidate fixes for query latency and index throughput, measured part by part.

    python bench/speed/speed_fixes.py [--sizes 10000 100000]

Needs the vaults built by bench/speed/scale_latency.py (bench/out/scale/v<N>). Works on a copy of
each index (bench/out/fixes/v<N>.db) to which it adds variant tables; vaultd is not changed.

- KNN (top 50): vaultd's vec0 (cosine, `archived` partition key) vs vec0 without the partition
  key, vec0 `int8[384]` and `bit[384]` columns with exact re-ranking of the top R from the
  float vectors, and a numpy float32 matrix held in memory (`X @ q`). Recall@50 against exact
  search, p50 latency.
- FTS (top 50): vaultd's query (OR of every non-stopword term, JOIN chunks for the archive rule,
  ORDER BY bm25) vs no JOIN (archive rule checked on the 50 rowids), and OR of only the m rarest
  terms (document frequency from an fts5vocab table). Overlap with the current list, p50.
- Query embedding: vaultd's OnnxEmbedder, the same without arena-shrinkage run options, one
  intra-op thread, and the opt-in int8 quantised copy (built with vaultd.embedder.quantize into
  bench/out/fixes/cache).
- Index throughput (document embedding of 256 SciFact chunk texts, length-sorted batches):
  vaultd's session on the shipped file vs batch sizes, the file with its int8→float weights
  constant-folded once (fp32), that file through onnxruntime's transformer optimizer (fused
  attention / LayerNorm / GELU), and the -q8 copy; with the cosine of each to vaultd's vectors.
- Quality on all of SciFact (a copy of the index bench/quality/eval_scifact.py built, 809 queries):
  nDCG@10 and R@10 of hybrid search assembled from each KNN/FTS variant.
Writes bench/out/speed_fixes.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: benchlib

from benchlib import DEFAULT_DATA, OUT, machine, wait_quiet, write_json  # noqa: E402

from vaultd.embedder import DEFAULT_MODEL, OnnxEmbedder, builtin_profiles, quantize  # noqa: E402
from vaultd.evaluation import evaluate_ranker, load_queries, unique_paths  # noqa: E402
from vaultd.search import _STOPWORDS, _TERM_RE, _rrf, fts_query  # noqa: E402
from vaultd.store import Filters, Store  # noqa: E402
from vaultd.vault import cache_dir  # noqa: E402

WORK = OUT / "fixes"
SCALE = OUT / "scale"
POOL = 50
Hits = list[tuple[int, float]]


def timed(fn: Callable[[Any], Any], items: list[Any]) -> tuple[list[Any], float]:
    """Results and p50 milliseconds of fn over items (after 5 warm-up calls)."""
    for item in items[:5]:
        fn(item)
    out, ms = [], []
    for item in items:
        t = time.perf_counter()
        out.append(fn(item))
        ms.append((time.perf_counter() - t) * 1000)
    return out, round(statistics.median(ms), 3)


class Variants:
    def __init__(self, db: Path) -> None:
        self.store = Store(db)
        c = self.store.conn
        self.conn = c
        self._prepare()
        rows = c.execute("SELECT c.rowid, c.archived, e.vector FROM chunks c "
                         "JOIN embeddings e ON e.hash = c.hash ORDER BY c.rowid").fetchall()
        self.rowids = np.array([r[0] for r in rows], dtype=np.int64)
        self.archived = {r[0] for r in rows if r[1]}
        self.matrix = np.stack([np.frombuffer(r[2], np.float32) for r in rows])
        self.by_rowid = {int(r): i for i, r in enumerate(self.rowids)}

    def _prepare(self) -> None:
        c = self.conn
        have = {r[0] for r in c.execute("SELECT name FROM sqlite_master")}
        fill = "SELECT c.rowid, e.vector FROM chunks c JOIN embeddings e ON e.hash = c.hash"
        with self.store.transaction():
            if "vec_plain" not in have:
                c.execute("CREATE VIRTUAL TABLE vec_plain USING vec0("
                          "embedding float[384] distance_metric=cosine)")
                c.execute(f"INSERT INTO vec_plain(rowid, embedding) {fill}")
            if "vec_int8" not in have:
                c.execute("CREATE VIRTUAL TABLE vec_int8 USING vec0(embedding int8[384])")
                c.execute("INSERT INTO vec_int8(rowid, embedding) SELECT c.rowid, "
                          "vec_quantize_int8(e.vector, 'unit') FROM chunks c "
                          "JOIN embeddings e ON e.hash = c.hash")
            if "vec_bit" not in have:
                c.execute("CREATE VIRTUAL TABLE vec_bit USING vec0(embedding bit[384])")
                c.execute("INSERT INTO vec_bit(rowid, embedding) SELECT c.rowid, "
                          "vec_quantize_binary(e.vector) FROM chunks c "
                          "JOIN embeddings e ON e.hash = c.hash")
            if "fts_vocab" not in have:
                c.execute("CREATE VIRTUAL TABLE fts_vocab USING fts5vocab(chunk_fts, 'row')")

    # -- KNN
    def knn_current(self, q: np.ndarray) -> Hits:
        return self.store.knn(q.tobytes(), POOL, Filters())

    def knn_plain(self, q: np.ndarray) -> Hits:
        rows = self.conn.execute("SELECT rowid, distance FROM vec_plain WHERE embedding MATCH ? "
                                 "AND k = ?", (q.tobytes(), POOL + 10)).fetchall()
        return [(r, 1 - d) for r, d in rows if r not in self.archived][:POOL]

    def _rerank(self, rowids: list[int], q: np.ndarray) -> Hits:
        idx = [self.by_rowid[r] for r in rowids if r not in self.archived]
        sims = self.matrix[idx] @ q
        order = np.argsort(-sims)[:POOL]
        return [(int(self.rowids[idx[i]]), float(sims[i])) for i in order]

    def knn_int8(self, q: np.ndarray, r: int = 200) -> Hits:
        rows = self.conn.execute("SELECT rowid FROM vec_int8 WHERE embedding MATCH "
                                 "vec_quantize_int8(?, 'unit') AND k = ?", (q.tobytes(), r))
        return self._rerank([x[0] for x in rows], q)

    def knn_bit(self, q: np.ndarray, r: int = 500) -> Hits:
        rows = self.conn.execute("SELECT rowid FROM vec_bit WHERE embedding MATCH "
                                 "vec_quantize_binary(?) AND k = ?", (q.tobytes(), r))
        return self._rerank([x[0] for x in rows], q)

    def knn_numpy(self, q: np.ndarray) -> Hits:
        sims = self.matrix @ q
        top = np.argpartition(-sims, POOL + 10)[:POOL + 10]
        top = top[np.argsort(-sims[top])]
        return [(int(self.rowids[i]), float(sims[i])) for i in top
                if int(self.rowids[i]) not in self.archived][:POOL]

    # -- FTS
    def fts_current(self, query: str) -> Hits:
        match = fts_query(query)
        return self.store.fts(match, POOL, Filters()) if match else []

    def _fts_nojoin(self, match: str) -> Hits:
        if not match:
            return []
        rows = self.conn.execute(
            "SELECT rowid, bm25(chunk_fts, 1.0, 1.0) AS s FROM chunk_fts WHERE chunk_fts MATCH ? "
            "ORDER BY s LIMIT ?", (match, POOL + 10)).fetchall()
        return [(r, -s) for r, s in rows if r not in self.archived][:POOL]

    def fts_nojoin(self, query: str) -> Hits:
        return self._fts_nojoin(fts_query(query))

    def _stems(self, terms: list[str]) -> list[str]:
        """Each term as the FTS index stores it (porter stem), through a temp FTS5 table with the
        same tokenizer."""
        c = self.conn
        if not getattr(self, "_qtok", False):
            c.execute("CREATE VIRTUAL TABLE temp.qtok USING fts5(x, "
                      "tokenize = 'porter unicode61 remove_diacritics 2')")
            c.execute("CREATE VIRTUAL TABLE temp.qtok_v USING fts5vocab(temp, qtok, 'instance')")
            self._qtok = True
        c.execute("DELETE FROM temp.qtok")
        c.executemany("INSERT INTO temp.qtok(rowid, x) VALUES (?, ?)",
                      list(enumerate(terms)))
        stems = dict(c.execute("SELECT doc, term FROM temp.qtok_v").fetchall())
        return [stems.get(i, t) for i, t in enumerate(terms)]

    def fts_rarest(self, query: str, m: int) -> Hits:
        terms = [t for t in dict.fromkeys(_TERM_RE.findall(query.lower()))
                 if t not in _STOPWORDS]
        if len(terms) <= m:
            return self.fts_nojoin(query)
        df = {}
        for term, stem in zip(terms, self._stems(terms)):
            row = self.conn.execute("SELECT doc FROM fts_vocab WHERE term = ?", (stem,)).fetchone()
            df[term] = row[0] if row else 0
        keep = sorted((t for t in terms if df[t]), key=lambda t: df[t])[:m]
        if not keep:
            return []
        return self._fts_nojoin(" OR ".join(f'"{t}"' for t in keep))

    def close(self) -> None:
        self.store.close()


def overlap(a: Hits, b: Hits) -> float:
    sa, sb = {r for r, _ in a}, {r for r, _ in b}
    return len(sa & sb) / max(len(sb), 1)


def embed_variants(queries: list[str]) -> dict[str, Any]:
    profile = builtin_profiles(cache_dir({}))[DEFAULT_MODEL]
    out: dict[str, Any] = {}
    for name, threads in (("vaultd (2 threads, arena shrinkage)", 2), ("1 intra-op thread", 1)):
        emb = OnnxEmbedder(profile, threads=threads)
        emb.load()
        wait_quiet()
        _, out[name] = timed(lambda q, e=emb: e.embed([q], kind="query"), queries)
        if threads == 2:
            emb._run_options = None  # session.run(..., None): no shrinkage
            wait_quiet()
            _, out["2 threads, no arena shrinkage"] = timed(
                lambda q, e=emb: e.embed([q], kind="query"), queries)
            tok = emb._tokenizer
            _, out["  of which tokenizer"] = timed(lambda q, t=tok: t.encode_batch([q]), queries)
    q8 = builtin_profiles(WORK / "cache")[DEFAULT_MODEL + "-q8"]
    try:
        quantize(profile, q8)
        emb = OnnxEmbedder(q8, threads=2)
        emb.load()
        wait_quiet()
        _, out["int8 quantised copy (-q8)"] = timed(lambda q: emb.embed([q], kind="query"),
                                                    queries)
    except Exception as exc:  # quantising needs the onnx package
        out["int8 quantised copy (-q8)"] = f"not run: {exc}"
    return out


def embed_throughput(texts: list[str]) -> dict[str, Any]:
    """chunks/s of document embedding per model file / batch size, and fidelity to vaultd's."""
    import onnxruntime as ort

    profile = builtin_profiles(cache_dir({}))[DEFAULT_MODEL]
    models = WORK / "models"
    models.mkdir(parents=True, exist_ok=True)
    folded, fused = models / "minilm-folded.onnx", models / "minilm-fused.onnx"
    if not folded.exists():
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        options.optimized_model_filepath = str(folded)
        ort.InferenceSession(profile.onnx, options, providers=["CPUExecutionProvider"])
    if not fused.exists():
        from onnxruntime.transformers.optimizer import optimize_model

        opt = optimize_model(str(folded), model_type="bert", num_heads=12, hidden_size=384,
                             opt_level=1)
        opt.save_model_to_file(str(fused))
    q8 = builtin_profiles(WORK / "cache")[DEFAULT_MODEL + "-q8"]
    quantize(profile, q8)
    from dataclasses import replace

    variants = [("shipped file (vaultd), batch 8", profile, 8),
                ("shipped file, batch 4", profile, 4),
                ("shipped file, batch 16", profile, 16),
                ("shipped file, batch 32", profile, 32),
                ("constant-folded fp32 file, batch 8", replace(profile, onnx=str(folded),
                                                               sha256=""), 8),
                ("folded + transformer fusions, batch 8", replace(profile, onnx=str(fused),
                                                                  sha256=""), 8),
                ("int8 quantised copy (-q8), batch 8", q8, 8)]
    out: dict[str, Any] = {"texts": len(texts)}
    reference = None
    for name, prof, batch in variants:
        emb = OnnxEmbedder(prof, threads=2, batch_size=batch)
        emb.load()
        emb.embed(texts[:8])
        wait_quiet()
        t = time.perf_counter()
        vecs = emb.embed(texts)
        seconds = time.perf_counter() - t
        if reference is None:
            reference = vecs
        cos = (vecs * reference).sum(axis=1)
        out[name] = {"chunks_per_s": round(len(texts) / seconds, 2),
                     "min_cos_to_vaultd": round(float(cos.min()), 5),
                     "mean_cos_to_vaultd": round(float(cos.mean()), 5)}
        print(name, out[name], file=sys.stderr, flush=True)
    return out


COLD_PROBE = r"""
import time, json, sys
t0 = time.perf_counter(); parts = {}
def mark(name):
    global t0
    t = time.perf_counter(); parts[name] = round(t - t0, 4); t0 = t
import vaultd; from vaultd.vault import open_vault; mark("import vaultd (+ config, click-free)")
import numpy; mark("import numpy")
import onnxruntime as ort; mark("import onnxruntime")
import tokenizers; mark("import tokenizers")
vault = open_vault(sys.argv[1], daemon="never"); emb = vault.embedder; mark("open_vault")
emb._load_tokenizers(); mark("load tokenizer.json (x2)")
from vaultd.embedder import file_sha256
file_sha256(emb.profile.onnx); mark("sha256 of model.onnx")
variant = sys.argv[2]
options = ort.SessionOptions(); options.intra_op_num_threads = 2; options.inter_op_num_threads = 1
options.log_severity_level = 3
path = emb.profile.onnx
if variant == "pre-optimised file":
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    path = sys.argv[3]
session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
mark("InferenceSession")
emb._session = session; emb._input_names = {i.name for i in session.get_inputs()}
emb.embed(["a first text to embed"]); mark("embed one text")
print(json.dumps(parts))
"""


def cold_breakdown(vault: Path, reps: int = 5) -> dict[str, Any]:
    """Where a fresh process's time to first vector goes (medians of `reps` processes), and the
    same with a model file saved after onnxruntime's optimisations (loaded with none)."""
    import subprocess

    import onnxruntime as ort

    profile = builtin_profiles(cache_dir({}))[DEFAULT_MODEL]
    optimised = WORK / "models" / "minilm-ort-optimised.onnx"
    optimised.parent.mkdir(parents=True, exist_ok=True)
    if not optimised.exists():
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        options.optimized_model_filepath = str(optimised)
        ort.InferenceSession(profile.onnx, options, providers=["CPUExecutionProvider"])
    out: dict[str, Any] = {}
    for variant in ("shipped file", "pre-optimised file"):
        runs = []
        for _ in range(reps):
            wait_quiet()
            t = time.perf_counter()
            proc = subprocess.run([sys.executable, "-c", COLD_PROBE, str(vault), variant,
                                   str(optimised)], capture_output=True, text=True, check=True)
            wall = time.perf_counter() - t
            runs.append({**json.loads(proc.stdout), "process wall": round(wall, 4)})
        out[variant] = {k: round(statistics.median(r[k] for r in runs), 4) for k in runs[0]}
        print("cold", variant, out[variant], file=sys.stderr, flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10000, 100000])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--skip-embed", action="store_true", help="no throughput variants")
    args = parser.parse_args(argv)
    queries = load_queries(args.data / "scifact-queries-train.jsonl")
    texts = [q.query for q in queries]
    WORK.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"machine": machine(), "sizes": {}}
    results["cold_start_s"] = cold_breakdown(OUT / "stacks" / "subset" / "vault")
    results["embed_query_p50_ms"] = embed_variants(texts[:args.queries])
    print(results["embed_query_p50_ms"], file=sys.stderr, flush=True)
    if not args.skip_embed:
        from compare_stacks import read_chunks

        _, chunk_texts, _ = read_chunks(OUT / "scifact" / "vault" / ".vaultd" / "index.db")
        results["embed_throughput"] = embed_throughput(chunk_texts[:256])
        write_json(OUT / "speed_fixes.json", results)

    qcache = WORK / "query-vectors.npy"
    if not qcache.exists():
        emb = OnnxEmbedder(builtin_profiles(cache_dir({}))[DEFAULT_MODEL])
        np.save(qcache, emb.embed(texts, kind="query"))
    qvecs = list(np.load(qcache))

    for size in args.sizes:
        db = WORK / f"v{size}.db"
        if not db.exists():
            shutil.copyfile(SCALE / f"v{size}" / ".vaultd" / "index.db", db)
        v = Variants(db)
        entry: dict[str, Any] = {"chunks": len(v.rowids), "knn": {}, "fts": {},
                                 "matrix_mb": round(v.matrix.nbytes / 2**20, 1)}
        n = args.queries
        exact_lists = [v.knn_numpy(q) for q in qvecs[:n]]
        for name, fn in knn_variants(v).items():
            wait_quiet()
            out, ms = timed(fn, qvecs[:n])
            rec = statistics.mean(overlap(a, e) for a, e in zip(out, exact_lists))
            entry["knn"][name] = {"p50_ms": ms, "recall@50": round(rec, 4)}
            print(size, name, entry["knn"][name], file=sys.stderr, flush=True)
        base = [v.fts_current(t) for t in texts[:n]]
        for name, fn in fts_variants(v).items():
            wait_quiet()
            out, ms = timed(fn, texts[:n])
            ov = statistics.mean(overlap(a, b) for a, b in zip(out, base))
            entry["fts"][name] = {"p50_ms": ms, "overlap@50 with vaultd's": round(ov, 4)}
            print(size, name, entry["fts"][name], file=sys.stderr, flush=True)
        v.close()
        results["sizes"][str(size)] = entry
        write_json(OUT / "speed_fixes.json", results)

    # quality: all of SciFact (the index compare_stacks.py evaluated), every query
    db = WORK / "scifact.db"
    if not db.exists():
        shutil.copyfile(OUT / "scifact" / "vault" / ".vaultd" / "index.db", db)
    v = Variants(db)
    knn_lists = {name: [fn(q) for q in qvecs] for name, fn in knn_variants(v).items()}
    fts_lists = {name: [fn(t) for t in texts] for name, fn in fts_variants(v).items()}
    results["quality_scifact"] = quality(v, queries, knn_lists, fts_lists)
    v.close()
    write_json(OUT / "speed_fixes.json", results)
    return 0


def knn_variants(v: Variants) -> dict[str, Callable[[np.ndarray], Hits]]:
    return {
        "vec0 float, partition key (vaultd)": v.knn_current,
        "vec0 float, no partition key": v.knn_plain,
        "vec0 int8 top 200 + exact re-rank": v.knn_int8,
        "vec0 bit top 500 + exact re-rank": v.knn_bit,
        "vec0 bit top 1000 + exact re-rank": lambda q: v.knn_bit(q, 1000),
        "numpy float32 matrix in memory": v.knn_numpy,
    }


def fts_variants(v: Variants) -> dict[str, Callable[[str], Hits]]:
    return {
        "OR all terms + JOIN chunks (vaultd)": v.fts_current,
        "OR all terms, no JOIN": v.fts_nojoin,
        "OR of 8 rarest terms, no JOIN": lambda q: v.fts_rarest(q, 8),
        "OR of 5 rarest terms, no JOIN": lambda q: v.fts_rarest(q, 5),
    }


def quality(v: Variants, queries: list[Any], knn_lists: dict[str, list[Hits]],
            fts_lists: dict[str, list[Hits]]) -> dict[str, Any]:
    """SciFact nDCG@10 / R@10 of hybrid search assembled from variant lists (RRF k = 60)."""
    paths = dict(v.conn.execute("SELECT rowid, path FROM chunks").fetchall())
    index = {q.id: i for i, q in enumerate(queries)}

    def score(knn: list[Hits] | None, fts: list[Hits] | None) -> dict[str, float]:
        def rank(q: Any) -> list[str]:
            i = index[q.id]
            lists = [(knn[i], 1.0)] if knn else []
            lists += [(fts[i], 1.0)] if fts else []
            fused = _rrf(lists, 60)
            order = sorted(fused, key=lambda r: (-fused[r], paths[r]))[:POOL]
            return unique_paths(paths[r] for r in order)

        m = evaluate_ranker(rank, queries).to_dict()
        return {"ndcg@10": m["ndcg@10"], "r@10": m["r@10"]}

    base_knn = knn_lists["vec0 float, partition key (vaultd)"]
    base_fts = fts_lists["OR all terms + JOIN chunks (vaultd)"]
    out: dict[str, Any] = {"hybrid (vaultd)": score(base_knn, base_fts)}
    for name, lists in knn_lists.items():
        out[f"hybrid, KNN = {name}"] = score(lists, base_fts)
    for name, lists in fts_lists.items():
        out[f"hybrid, FTS = {name}"] = score(base_knn, lists)
        out[f"BM25 only, {name}"] = score(None, lists)
    return out


if __name__ == "__main__":
    sys.exit(main())
