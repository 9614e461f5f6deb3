"""One measurement of one retrieval stack, in a fresh process (run by compare_stacks.py and
scale_latency.py, each stack with its own Python):

    PY bench/speed/stack_workers.py STACK TASK --job JOB.json --out OUT.json

STACK: `chroma` (chromadb's default pipeline: PersistentClient + a collection with the default
embedding function, its built-in ONNX all-MiniLM-L6-v2), `chroma-warm` (the same, with
`ONNXMiniLM_L6_V2()` passed explicitly so one session serves every call), `st`
(sentence-transformers + a numpy matrix, brute force) or `vaultd` (the library, in-process, no
daemon).

TASK:
- `cold`  — import, load the model, embed one text; seconds for each step from the first line of
  this file (the caller adds interpreter start-up by timing the whole process).
- `index` — index `texts` (JSON list) from empty, then answer `queries` k=10 (latency per query),
  then, if `rank_k` is set, the top `rank_k` chunk ids for every query (for retrieval quality).
- `scale` — load precomputed vectors (`vectors` .npy, unit rows) with `texts` and `ids`, then
  answer `queries`: latency p50/p95 with the query embedded by the stack's own model.
Every task reports VmHWM (peak RSS) of this process.

Only the standard library, numpy and the stack under test are imported, so the same file runs in
the chromadb and sentence-transformers virtual environments.
"""

from __future__ import annotations

import time

T0 = time.perf_counter()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

WARMUP = 5


def mem_mb() -> dict[str, float]:
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            key, value = line.split(":")
            out[key] = round(int(value.split()[0]) / 1024, 1)
    return out


def timed_queries(answer: Any, queries: list[str], k: int) -> list[float]:
    for q in queries[:WARMUP]:
        answer(q, k)
    lat = []
    for q in queries:
        t = time.perf_counter()
        answer(q, k)
        lat.append((time.perf_counter() - t) * 1000)
    return lat


# ---------------------------------------------------------------------------- chromadb


class Chroma:
    """chromadb as its README shows it: a persistent client, a collection with the default
    embedding function, `add(documents=...)` and `query(query_texts=...)`."""

    def __init__(self, workdir: Path, warm: bool) -> None:
        os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
        import chromadb
        from chromadb.config import Settings

        self.timings = {"import": time.perf_counter() - T0}
        if workdir.exists():
            shutil.rmtree(workdir)
        self.client = chromadb.PersistentClient(
            path=str(workdir), settings=Settings(anonymized_telemetry=False))
        if warm:
            # The embedding function passed explicitly: one instance, so one ONNX session.
            from chromadb.utils.embedding_functions import ONNXMiniLM_L6_V2

            self.collection = self.client.create_collection(
                "bench", embedding_function=ONNXMiniLM_L6_V2())
        else:
            # As shipped: the default DefaultEmbeddingFunction builds a new ONNXMiniLM_L6_V2 —
            # and so a new onnxruntime session — on every call (every add and every query).
            self.collection = self.client.create_collection("bench")
        self.ef = self.collection._embedding_function
        self.warm = warm

    def load_and_embed_one(self) -> list[float]:
        t = time.perf_counter()
        if self.warm:
            self.ef._download_model_if_not_exists()
            _ = self.ef.model, self.ef.tokenizer  # session + tokenizer (lazily built)
        self.timings["load"] = time.perf_counter() - t  # default: load happens inside embed
        t = time.perf_counter()
        vec = self.ef(["a first text to embed"])[0]
        self.timings["embed_one"] = time.perf_counter() - t
        return list(vec)

    def add_texts(self, ids: list[str], texts: list[str]) -> None:
        step = min(self.client.get_max_batch_size(), 1000)
        for start in range(0, len(texts), step):
            self.collection.add(ids=ids[start:start + step], documents=texts[start:start + step])

    def add_vectors(self, ids: list[str], vectors: Any, texts: list[str]) -> None:
        step = min(self.client.get_max_batch_size(), 5000)
        for start in range(0, len(ids), step):
            self.collection.add(ids=ids[start:start + step],
                                embeddings=vectors[start:start + step],
                                documents=texts[start:start + step])

    def query(self, q: str, k: int) -> list[str]:
        return self.collection.query(query_texts=[q], n_results=k, include=[])["ids"][0]


# ---------------------------------------------------------------------------- sentence-transformers


class SentenceTransformers:
    """sentence-transformers encodes (its defaults: batch 32, length-sorted), numpy holds the
    matrix; a query is `X @ q` and an argpartition. The matrix is saved with np.save (persisted,
    like the other two)."""

    def __init__(self, workdir: Path, model_dir: str) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import numpy as np
        from sentence_transformers import SentenceTransformer

        self.np = np
        self.timings = {"import": time.perf_counter() - T0}
        self.cls = SentenceTransformer
        self.model_dir = model_dir
        self.workdir = workdir
        if workdir.exists():
            shutil.rmtree(workdir)
        workdir.mkdir(parents=True)
        self.model: Any = None
        self.matrix = np.zeros((0, 384), dtype=np.float32)
        self.ids: list[str] = []

    def load_and_embed_one(self) -> list[float]:
        t = time.perf_counter()
        self.model = self.cls(self.model_dir, device="cpu")
        self.timings["load"] = time.perf_counter() - t
        t = time.perf_counter()
        vec = self.model.encode(["a first text to embed"], normalize_embeddings=True)[0]
        self.timings["embed_one"] = time.perf_counter() - t
        return vec.tolist()

    def add_texts(self, ids: list[str], texts: list[str]) -> None:
        vecs = self.model.encode(texts, normalize_embeddings=True, convert_to_numpy=True)
        self.add_vectors(ids, vecs.astype(self.np.float32), texts)

    def add_vectors(self, ids: list[str], vectors: Any, texts: list[str]) -> None:
        np = self.np
        self.matrix = np.ascontiguousarray(np.vstack([self.matrix, vectors]), dtype=np.float32)
        self.ids.extend(ids)
        np.save(self.workdir / "vectors.npy", self.matrix)
        (self.workdir / "ids.json").write_text(json.dumps(self.ids))

    def query(self, q: str, k: int) -> list[str]:
        np = self.np
        qv = self.model.encode([q], normalize_embeddings=True, convert_to_numpy=True)[0]
        scores = self.matrix @ qv
        k = min(k, len(scores))
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top])]
        return [self.ids[i] for i in top]


# ---------------------------------------------------------------------------- vaultd (cold start)


class Vaultd:
    def __init__(self, vault: str) -> None:
        import vaultd

        self.timings = {"import": time.perf_counter() - T0}
        self.vault = vaultd.open_vault(vault, daemon="never")

    def load_and_embed_one(self) -> list[float]:
        t = time.perf_counter()
        load = getattr(self.vault.embedder, "load", None)
        if load:
            load()
        self.timings["load"] = time.perf_counter() - t
        t = time.perf_counter()
        vec = self.vault.embed(["a first text to embed"], kind="document")[0]
        self.timings["embed_one"] = time.perf_counter() - t
        return vec.tolist()


# ---------------------------------------------------------------------------- main


def make(stack: str, job: dict[str, Any]) -> Any:
    if stack in ("chroma", "chroma-warm"):
        return Chroma(Path(job["workdir"]), warm=stack == "chroma-warm")
    if stack == "st":
        return SentenceTransformers(Path(job["workdir"]), job["model_dir"])
    if stack == "vaultd":
        return Vaultd(job["vault"])
    raise SystemExit(f"unknown stack {stack}")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("stack", choices=("chroma", "chroma-warm", "st", "vaultd"))
    parser.add_argument("task", choices=("cold", "index", "scale"))
    parser.add_argument("--job", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    job = json.loads(args.job.read_text())
    stack = make(args.stack, job)
    result: dict[str, Any] = {"stack": args.stack, "task": args.task}
    vec = stack.load_and_embed_one()
    result["dims"] = len(vec)
    result["cold"] = {k: round(v, 4) for k, v in stack.timings.items()}
    result["cold"]["in_process_total"] = round(time.perf_counter() - T0, 4)
    if args.task == "cold":
        result["vector"] = [round(float(x), 6) for x in vec]
        result["memory_mb"] = mem_mb()
        args.out.write_text(json.dumps(result, indent=1))
        return 0

    texts: list[str] = json.loads(Path(job["texts"]).read_text())
    ids: list[str] = job.get("ids") or [str(i) for i in range(len(texts))]
    queries: list[str] = json.loads(Path(job["queries"]).read_text())
    if args.task == "index":
        t = time.perf_counter()
        stack.add_texts(ids, texts)
        seconds = time.perf_counter() - t
        result["index"] = {"chunks": len(texts), "seconds": round(seconds, 3),
                           "chunks_per_s": round(len(texts) / seconds, 3)}
        result["memory_after_index_mb"] = mem_mb()
    else:
        import numpy as np

        vectors = np.load(job["vectors"]).astype(np.float32)
        t = time.perf_counter()
        stack.add_vectors(ids, vectors, texts)
        result["load_vectors_seconds"] = round(time.perf_counter() - t, 3)
        result["chunks"] = len(ids)
    lat = timed_queries(stack.query, queries[:job.get("latency_queries", 200)], 10)
    result["query_ms"] = {"p50": round(pct(lat, 0.5), 3), "p95": round(pct(lat, 0.95), 3),
                          "mean": round(sum(lat) / len(lat), 3), "n": len(lat)}
    if job.get("rank_k"):
        result["ranked"] = [stack.query(q, job["rank_k"]) for q in queries]
    result["memory_mb"] = mem_mb()
    args.out.write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
