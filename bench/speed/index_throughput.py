"""Indexing throughput: vaultd's whole pipeline against raw onnxruntime on the same chunk texts.

    python bench/speed/index_throughput.py [--corpus til|tldr] [--no-raw] [--data DIR] [--out DIR]

1. Extract the corpus (til.tar.gz or tldr-pages-en.tar.gz) to bench/out/<corpus>, `vaultd init`
   it, drop any old index, and index from scratch with the default model: files, chunks,
   seconds, chunks/s (with a breakdown of where the time went: embedding, token counting for
   chunking, the rest). Then one line appended to one note: seconds and chunks embedded.
2. Read the embedded texts back from the index (heading line + "\\n" + text, as
   `Chunk.embed_text`) and embed them with bare tokenizers + onnxruntime (2 intra-op threads,
   batches of 8 in length-sorted order, mean pooling, L2 norm): raw chunks/s, ratio vaultd/raw.
3. Index again: an unchanged vault embeds nothing.

Prints a short report; writes bench/out/index_throughput[-<corpus>].json (til keeps the old
name).
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

import numpy as np

import vaultd
from vaultd.embedder import DATA_DIR, DEFAULT_MODEL, OnnxEmbedder, builtin_profiles
from vaultd.vault import cache_dir, open_vault

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: benchlib

from benchlib import Timer  # noqa: E402

BENCH = Path(__file__).resolve().parents[1]
DEFAULT_DATA = BENCH.parents[1] / "shared" / "data"
CORPORA = {"til": "til.tar.gz", "tldr": "tldr-pages-en.tar.gz"}
BATCH = 8
THREADS = 2


def extract(data: Path, out: Path, corpus: str) -> Path:
    """til.tar.gz holds a folder `til/`; tldr's holds `pages/`, extracted into `tldr/`."""
    vault = out / corpus
    if not (vault / ".extracted").exists():
        target = out if corpus == "til" else vault
        target.mkdir(parents=True, exist_ok=True)
        with tarfile.open(data / CORPORA[corpus]) as tar:
            tar.extractall(target, filter="data")
        (vault / ".extracted").write_text("ok\n")
    return vault


def index_vaultd(vault_dir: Path) -> dict[str, Any]:
    """Index from scratch in this process, timing the embedder's parts on the side."""
    subprocess.run([sys.executable, "-m", "vaultd.cli", "init", str(vault_dir)], check=True,
                   stdout=subprocess.DEVNULL)
    for name in ("index.db", "index.db-wal", "index.db-shm"):
        (vault_dir / ".vaultd" / name).unlink(missing_ok=True)
    with open_vault(vault_dir) as vault:
        emb = vault.embedder
        assert isinstance(emb, OnnxEmbedder)
        emb.load()  # model load (~0.3 s) is not indexing throughput
        embed, batch, count = Timer(emb.embed), Timer(emb._embed_batch), Timer(emb.count_tokens)
        emb.embed, emb._embed_batch, emb.count_tokens = embed, batch, count  # type: ignore
        report = vault.index()
        counts = vault.store.counts()
        again = vault.index()
        # one line appended to one note (the largest, so the note has several chunks)
        note = max((p for p in vault_dir.rglob("*.md") if ".vaultd" not in p.parts),
                   key=lambda p: p.stat().st_size)
        with note.open("a", encoding="utf-8") as fh:
            fh.write("\nOne more line, added by the benchmark.\n")
        edited = vault.index()
        texts = [f"{h}\n{t}" if h else t for h, t in vault.store.conn.execute(
            "SELECT c.heading, c.text FROM chunks c GROUP BY c.hash ORDER BY min(c.rowid)")]
    return {
        "files": report.files, "notes": counts["notes"], "chunks": counts["chunks"],
        "chunks_embedded": report.chunks_embedded, "chunks_reused": report.chunks_reused,
        "seconds": report.seconds, "chunks_per_s": report.chunks_embedded / report.seconds,
        "breakdown_s": {
            "embed (Embedder.embed)": embed.seconds,
            "  of which model batches (_embed_batch)": batch.seconds,
            "count_tokens (chunking)": count.seconds,
            "everything else (scan, parse, chunk, SQLite)":
                report.seconds - embed.seconds - count.seconds,
        },
        "embed_batches": batch.calls, "count_tokens_calls": count.calls,
        "reindex": {"seconds": again.seconds, "chunks_embedded": again.chunks_embedded,
                    "unchanged": again.unchanged},
        "one_line_edit": {"note": note.relative_to(vault_dir).as_posix(),
                          "seconds": edited.seconds, "chunks_embedded": edited.chunks_embedded,
                          "chunks_reused": edited.chunks_reused},
        "_texts": texts,
    }


def embed_raw(texts: list[str]) -> dict[str, Any]:
    """The same texts through bare tokenizers + onnxruntime: the ceiling for this model."""
    import onnxruntime as ort
    from tokenizers import Tokenizer

    profile = builtin_profiles(cache_dir({}))[DEFAULT_MODEL]
    tok = Tokenizer.from_file(str(DATA_DIR / "all-MiniLM-L6-v2.tokenizer.json"))
    tok.enable_truncation(256)
    tok.enable_padding()
    options = ort.SessionOptions()
    options.intra_op_num_threads = THREADS
    options.inter_op_num_threads = 1
    path = str(OnnxEmbedder(profile).model_file())  # the default is built when first needed
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    session.run(None, {"input_ids": np.ones((1, 4), np.int64),  # warm up, like emb.load()
                       "attention_mask": np.ones((1, 4), np.int64),
                       "token_type_ids": np.zeros((1, 4), np.int64)})
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out = np.zeros((len(texts), 384), dtype=np.float32)
    started = time.perf_counter()
    for start in range(0, len(order), BATCH):
        idx = order[start:start + BATCH]
        enc = tok.encode_batch([texts[i] for i in idx])
        ids = np.array([e.ids for e in enc], dtype=np.int64)
        mask = np.array([e.attention_mask for e in enc], dtype=np.int64)
        hidden = session.run(None, {"input_ids": ids, "attention_mask": mask,
                                    "token_type_ids": np.zeros_like(ids)})[0]
        w = mask[..., None].astype(np.float32)
        pooled = (hidden * w).sum(axis=1) / np.clip(w.sum(axis=1), 1e-9, None)
        out[idx] = pooled / np.linalg.norm(pooled, axis=1, keepdims=True)
    seconds = time.perf_counter() - started
    return {"chunks": len(texts), "seconds": seconds, "chunks_per_s": len(texts) / seconds,
            "_vectors": out}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", choices=sorted(CORPORA), default="til")
    parser.add_argument("--no-raw", action="store_true", help="skip the raw onnxruntime run")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder with the tarballs")
    parser.add_argument("--out", type=Path, default=BENCH / "out")
    args = parser.parse_args(argv)

    vault_dir = extract(args.data, args.out, args.corpus)
    ours = index_vaultd(vault_dir)
    texts = ours.pop("_texts")
    edit = ours["one_line_edit"]
    print(f"one-line edit of {edit['note']}: {edit['seconds']:.2f} s, "
          f"{edit['chunks_embedded']} chunk(s) embedded, {edit['chunks_reused']} reused")
    suffix = "" if args.corpus == "til" else f"-{args.corpus}"
    if args.no_raw:
        print(f"{args.corpus}: {ours['files']} files → {ours['chunks']} chunks; vaultd index "
              f"{ours['seconds']:.1f} s, {ours['chunks_per_s']:.1f} chunks/s")
        out = {"benchmark": f"{args.corpus}-index-throughput", "vaultd": vaultd.__version__,
               "python": platform.python_version(), "vaultd_index": ours}
        path = args.out / f"index_throughput{suffix}.json"
        path.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {path}")
        return 0
    raw = embed_raw(texts)
    raw_vectors = raw.pop("_vectors")
    with open_vault(vault_dir) as vault:  # same vectors? (sanity: same texts, same model)
        blobs = vault.store.conn.execute(
            "SELECT e.vector FROM chunks c JOIN embeddings e ON e.hash = c.hash "
            "GROUP BY c.hash ORDER BY min(c.rowid)").fetchall()
    stored = np.stack([np.frombuffer(b, dtype=np.float32) for (b,) in blobs])
    min_cos = float((stored * raw_vectors).sum(axis=1).min())
    ratio = ours["chunks_per_s"] / raw["chunks_per_s"]

    print(f"{args.corpus}: {ours['files']} files → {ours['chunks']} chunks "
          f"({ours['chunks_embedded']} embedded)")
    print(f"vaultd index : {ours['seconds']:7.1f} s  {ours['chunks_per_s']:6.1f} chunks/s")
    for part, seconds in ours["breakdown_s"].items():
        print(f"    {part:<48} {seconds:7.1f} s")
    print(f"    ({ours['embed_batches']} model batches, "
          f"{ours['count_tokens_calls']} count_tokens calls)")
    print(f"raw onnxruntime: {raw['seconds']:5.1f} s  {raw['chunks_per_s']:6.1f} chunks/s "
          f"(same {raw['chunks']} texts; min cosine to stored vectors {min_cos:.5f})")
    print(f"ratio vaultd/raw: {ratio:.2f}")
    again = ours["reindex"]
    print(f"re-index unchanged: {again['seconds']:.2f} s, "
          f"{again['chunks_embedded']} chunks embedded")

    out = {"benchmark": f"{args.corpus}-index-throughput", "vaultd": vaultd.__version__,
           "python": platform.python_version(), "vaultd_index": ours, "raw_onnxruntime": raw,
           "ratio_vaultd_over_raw": ratio, "min_cosine_vaultd_vs_raw": min_cos}
    path = args.out / f"index_throughput{suffix}.json"
    path.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
