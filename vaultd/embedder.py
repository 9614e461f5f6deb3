"""Embedders: the contract, the ONNX implementation, remote providers and a fake for tests.

The contract is one method, `embed(texts, kind) -> float32 array [n, dims]` with unit-length rows.
Prefixes, length-sorted batching and bookkeeping live in the shared base class; an implementation
only turns one batch of (already prefixed) texts into vectors. What an embedder runs is a model
profile (`vaultd.model_profiles`, plain data, re-exported here); a derived model file (the int8
default) is built by `vaultd.model_build` when first needed.
"""

from __future__ import annotations

import hashlib
import re
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from vaultd import DISTRIBUTION
from vaultd.errors import ModelError
from vaultd.model_build import Built, ensure_quantized
from vaultd.model_build import file_sha256 as file_sha256
from vaultd.model_build import quantize as quantize
from vaultd.model_profiles import DATA_DIR as DATA_DIR
from vaultd.model_profiles import DEFAULT_MODEL as DEFAULT_MODEL
from vaultd.model_profiles import PROVIDERS as PROVIDERS
from vaultd.model_profiles import QUANTIZED_SUFFIX as QUANTIZED_SUFFIX
from vaultd.model_profiles import SHIPPED_MODEL as SHIPPED_MODEL
from vaultd.model_profiles import ModelProfile as ModelProfile
from vaultd.model_profiles import builtin_profiles as builtin_profiles
from vaultd.model_profiles import profile_from_table as profile_from_table
from vaultd.model_profiles import resolve_profile as resolve_profile

if TYPE_CHECKING:
    import numpy as np

Kind = Literal["query", "document"]


class Embedder(ABC):
    """Shared behaviour: prefixes, length-sorted batches, call accounting."""

    def __init__(self, profile: ModelProfile, batch_size: int = 8) -> None:
        self.profile = profile
        self.batch_size = max(1, min(batch_size, profile.max_batch or batch_size))
        self.calls = 0  # batches run
        self.texts_embedded = 0
        self._decoder: Any = None

    @property
    def model_id(self) -> str:
        return self.profile.id

    @property
    def dims(self) -> int:
        return self.profile.dims

    @property
    def max_tokens(self) -> int:
        return self.profile.max_tokens

    def identity(self) -> dict[str, Any]:
        """What the index records; a change means every vector must be rebuilt."""
        return {"id": self.profile.id, "dims": self.profile.dims, "file": self.file_hash()}

    def file_hash(self) -> str:
        return self.profile.sha256 or self.profile.kind

    def warm_up(self) -> None:  # noqa: B027 - an optional hook, not abstract
        """Get ready to serve a long-lived process (the daemon calls it once, at start), so the
        first request does not pay for loading the model. Nothing to do by default."""

    def embed(self, texts: list[str], kind: Kind = "document") -> np.ndarray:
        import numpy as np

        if kind not in ("query", "document"):
            raise ValueError(f"kind must be 'query' or 'document', not {kind!r}")
        prefix = self.profile.query_prefix if kind == "query" else self.profile.document_prefix
        prefixed = [prefix + t for t in texts]
        out = np.zeros((len(texts), self.dims), dtype=np.float32)
        if not texts:
            return out
        order = sorted(range(len(prefixed)), key=lambda i: len(prefixed[i]))
        groups = [order[start:start + self.batch_size]
                  for start in range(0, len(order), self.batch_size)]
        results = self._embed_batches([[prefixed[i] for i in idx] for idx in groups])
        for idx, vectors in zip(groups, results):
            if vectors.shape != (len(idx), self.dims):
                raise ModelError(f"model '{self.model_id}' returned shape {vectors.shape}, "
                                 f"expected ({len(idx)}, {self.dims}); check 'dims' in its profile")
            finite = np.isfinite(vectors).all(axis=1)
            if not finite.all():  # stored, it would drop out of every search without a word
                text = prefixed[idx[int(np.argmin(finite))]]
                raise ModelError(f"model '{self.model_id}' returned a vector with NaN or "
                                 f"infinite values for {text[:80]!r}; nothing was stored. "
                                 "Check the model file or the provider")
            out[idx] = vectors
            self.calls += 1
            self.texts_embedded += len(idx)
        return out

    def decode(self, ids: list[int]) -> str:
        """The text that token ids stand for in this model's own tokenizer (special tokens
        dropped): OpenAI clients may send token-id arrays instead of text. A ModelError when the
        model has no tokenizer file; a ValueError naming the first id outside its vocabulary,
        or when the ids are not the tokenizer's own encoding of the text they decode to, as it
        encodes (another tokenizer's ids, tiktoken's: most fall inside a 30k vocabulary too)."""
        if not self.profile.tokenizer:
            raise ModelError(f"model '{self.model_id}' has no tokenizer to decode token ids")
        if self._decoder is None:
            from tokenizers import Tokenizer

            try:
                decoder = Tokenizer.from_file(str(self.profile.tokenizer))
            except Exception as exc:  # tokenizers raises a bare Exception on bad files
                raise ModelError(f"cannot read tokenizer {self.profile.tokenizer}: {exc}") \
                    from exc
            decoder.no_truncation()  # it re-encodes what it decodes: all of it, as it is
            decoder.no_padding()
            self._decoder = decoder
        size = self._decoder.get_vocab_size(with_added_tokens=True)
        for token_id in ids:
            if not 0 <= token_id < size:
                raise ValueError(f"token id {token_id} is outside model '{self.model_id}''s "
                                 f"vocabulary (0..{size - 1})")
        text = str(self._decoder.decode(ids, skip_special_tokens=True))
        # the tokenizer's whole encoding, its special tokens ([CLS] … [SEP]) included: short
        # runs of another tokenizer's ids can re-encode to themselves, never with that frame
        if self._decoder.encode(text).ids != list(ids):
            raise ValueError(f"token ids are not model '{self.model_id}''s encoding of any "
                             "text, special tokens included (they decode to text that "
                             "encodes to other ids): another tokenizer made them")
        return text

    @abstractmethod
    def count_tokens(self, text: str) -> int:
        """Tokens the model would see for `text` (special tokens included, no truncation)."""

    @abstractmethod
    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        """Unit-length float32 vectors for one batch of already-prefixed texts."""

    def _embed_batches(self, batches: list[list[str]]) -> Iterator[np.ndarray]:
        """`_embed_batch` of each batch, in order (one after the other by default)."""
        return (self._embed_batch(batch) for batch in batches)


class OnnxEmbedder(Embedder):
    """A local ONNX encoder run with onnxruntime and a Hugging Face `tokenizer.json`."""

    def __init__(self, profile: ModelProfile, threads: int = 2, batch_size: int = 8) -> None:
        super().__init__(profile, batch_size)
        self.threads = threads
        self._session: Any = None
        self._run_options: Any = None
        self._short_run_options: Any = None
        self._input_names: set[str] = set()
        self._tokenizer: Any = None
        self._counter: Any = None
        self._file_hash = ""
        self._built: Built | None = None  # for a derived model
        # onnxruntime's threads spin after each run, waiting for the next: good for a batch
        # job, bad in a daemon whose HTTP and SQLite threads need those cores (see Daemon.run)
        self.spinning = True

    def file_hash(self) -> str:
        if not self._file_hash:
            if self.profile.build_from:
                self.model_file()  # built (or verified) now: the identity names the result
                return self._file_hash
            path = Path(self.profile.onnx)
            self._file_hash = self.profile.sha256 or (
                file_sha256(path) if path.is_file() else "missing")
        return self._file_hash

    def model_file(self) -> Path:
        """The ONNX file to load; a derived model is built here when missing or stale."""
        if not self.profile.build_from:
            return Path(self.profile.onnx)
        if self._built is None:
            self._built = ensure_quantized(self.profile.build_from,
                                           self.profile.build_from_sha256, self.profile.onnx)
            self._file_hash = self._built.identity
        return self._built.path

    # -- tokenizer
    def _load_tokenizers(self) -> None:
        if self._tokenizer is not None:
            return
        from tokenizers import Tokenizer

        path = Path(self.profile.tokenizer)
        if not path.is_file():
            raise ModelError(f"tokenizer file not found: {path} (model '{self.model_id}'); "
                             "fix 'tokenizer' in its [models.*] profile")
        try:
            tok = Tokenizer.from_file(str(path))
        except Exception as exc:  # tokenizers raises a bare Exception on bad files
            raise ModelError(f"cannot read tokenizer {path}: {exc}") from exc
        tok.enable_truncation(self.profile.max_tokens)
        pad_id, pad_token = _pad_token(tok)
        tok.enable_padding(direction=self.profile.padding_side, pad_id=pad_id, pad_token=pad_token)
        self._tokenizer = tok

    def count_tokens(self, text: str) -> int:
        if self._counter is None:  # loaded apart, when first needed: a query never needs it
            from tokenizers import Tokenizer

            self._load_tokenizers()
            counter = Tokenizer.from_file(str(self.profile.tokenizer))
            counter.no_truncation()
            counter.no_padding()
            self._counter = counter
        return len(self._counter.encode(text).ids)

    # -- session
    def warm_up(self) -> None:
        """Load now, with threads that do not spin: the daemon's HTTP and SQLite threads need
        those cores between runs."""
        self.spinning = False
        self.load()

    def load(self) -> None:
        """Load tokenizer and ONNX session now (otherwise on first use)."""
        self._load_tokenizers()
        if self._session is not None:
            return
        path = self.model_file()
        if not path.is_file():
            raise ModelError(f"model file not found: {path} (model '{self.model_id}'); "
                             f"reinstall vaultd (`pip install --force-reinstall {DISTRIBUTION}`) "
                             "or fix 'onnx' in its [models.*] profile")
        if self.profile.sha256:
            actual = file_sha256(path)
            if actual != self.profile.sha256:
                raise ModelError(f"model file {path} has sha256 {actual}, expected "
                                 f"{self.profile.sha256}: the file is damaged or not this model; "
                                 "reinstall the package that ships it")
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        if not self.spinning:
            # (spinning only while a run is on, `session.force_spinning_stop`, helped a little
            # at 10k chunks but hurt more at 100k, where the BM25 thread beside the query's
            # embedding needs the core: bench/RESULTS.md, 2026-12-03)
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self._session = ort.InferenceSession(str(path), options,
                                                 providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise ModelError(f"onnxruntime cannot load {path}: {exc}") from exc
        self._input_names = {i.name for i in self._session.get_inputs()}
        # Give the memory arena back after each batch: a long-lived daemon otherwise keeps the
        # high-water mark of its longest batch for good; giving it back costs a little time
        # per batch, which indexing can spare.
        self._run_options = ort.RunOptions()
        self._run_options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
        # ...but not after one short text (a query): its high-water mark is small, and giving
        # it back each time was a visible share of a query's embedding (bench/RESULTS.md,
        # bench/speed/query_embed_ab.py)
        self._short_run_options = ort.RunOptions()
        missing = {"input_ids", "attention_mask"} - self._input_names
        if missing:
            raise ModelError(f"{path}: model lacks input(s) {sorted(missing)}; "
                             "vaultd needs a text encoder taking input_ids and attention_mask")
        unfeedable = self._input_names - _FEEDABLE_INPUTS
        if unfeedable:
            raise ModelError(f"{path}: model needs input(s) {sorted(unfeedable)} that vaultd "
                             f"cannot provide (it feeds {', '.join(sorted(_FEEDABLE_INPUTS))}); "
                             "export the encoder without them")

    def _embed_batches(self, batches: list[list[str]]) -> Iterator[np.ndarray]:
        """One text per call (an int8 profile) leaves a second thread little to do inside one
        small model run: run `threads` calls side by side instead (onnxruntime sessions are
        thread-safe and release the GIL). Each text is still run alone, so its vector is the
        same bit for bit. The gain on 2 cores: bench/RESULTS.md, issue 15 point 2."""
        if self.batch_size > 1 or self.threads < 2 or len(batches) < 2:
            return super()._embed_batches(batches)
        from concurrent.futures import ThreadPoolExecutor

        self.load()  # once, before the threads

        def run() -> Iterator[np.ndarray]:
            with ThreadPoolExecutor(self.threads, thread_name_prefix="vaultd-embed") as pool:
                yield from pool.map(self._embed_batch, batches)

        return run()

    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        import numpy as np

        self.load()
        encodings = self._tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._input_names:
            feeds["token_type_ids"] = np.zeros_like(ids)
        if "position_ids" in self._input_names:
            feeds["position_ids"] = np.clip(np.cumsum(mask, axis=1) - 1, 0, None)
        outputs = [self.profile.output] if self.profile.output else None
        short = len(texts) == 1 and ids.shape[1] <= SHORT_TOKENS
        try:
            hidden = self._session.run(outputs, feeds, self._short_run_options if short
                                       else self._run_options)[0]
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise ModelError(f"model '{self.model_id}' ({self.profile.onnx}) failed to run: "
                             f"{exc}") from exc
        return _pool(np.asarray(hidden, dtype=np.float32), mask, self.profile.pooling)


_FEEDABLE_INPUTS = {"input_ids", "attention_mask", "token_type_ids", "position_ids"}
SHORT_TOKENS = 64  # one text of at most this many tokens runs without arena shrinkage


def _pad_token(tok: Any) -> tuple[int, str]:
    """The pad id and token: the tokenizer file's own padding setting, else a well-known name.
    (Token id 0 is a valid pad id: test for None, not for truth.)"""
    configured = tok.padding
    if configured and configured.get("pad_token") is not None:
        return int(configured["pad_id"]), str(configured["pad_token"])
    for name in ("[PAD]", "<pad>", "<|endoftext|>"):
        token_id = tok.token_to_id(name)
        if token_id is not None:
            return token_id, name
    return 0, tok.id_to_token(0) or "[PAD]"


def _pool(hidden: np.ndarray, mask: np.ndarray, pooling: str) -> np.ndarray:
    import numpy as np

    if hidden.ndim == 2:  # the graph pools itself
        pooled = hidden
    elif pooling == "cls":
        # the first position whose mask is 1: position 0 with right padding, not a pad with left
        pooled = hidden[np.arange(hidden.shape[0]), np.argmax(mask, axis=1)]
    elif pooling == "last_token":
        # the last position whose mask is 1: works for left and right padding alike
        positions = mask.shape[1] - 1 - np.argmax(mask[:, ::-1], axis=1)
        pooled = hidden[np.arange(hidden.shape[0]), positions]
    else:
        weights = mask[..., None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
    norms = np.linalg.norm(pooled, axis=1, keepdims=True)
    return (pooled / np.clip(norms, 1e-12, None)).astype(np.float32)


_WORD_RE = re.compile(r"\w+", re.UNICODE)


class HashEmbedder(Embedder):
    """A deterministic fake for tests and dry runs: hashed bag of words, no model, no numpy BLAS.

    Texts sharing words get similar vectors, so search tests stay meaningful; similarity is
    lexical, not semantic.
    """

    def count_tokens(self, text: str) -> int:
        return len(_WORD_RE.findall(text)) + 2

    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        import numpy as np

        out = np.zeros((len(texts), self.dims), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in _WORD_RE.findall(text.lower()):
                digest = hashlib.blake2b(word.encode(), digest_size=8).digest()
                bucket = int.from_bytes(digest[:4], "little") % self.dims
                out[row, bucket] += 1.0 if digest[4] & 1 else -1.0
            norm = float(np.linalg.norm(out[row]))
            if norm == 0:
                out[row, 0] = 1.0
            else:
                out[row] /= norm
        return out


class HttpEmbedder(Embedder):
    """An embedding provider the user configured: Ollama (`/api/embed`) or any
    OpenAI-compatible endpoint (`/embeddings`). The only code in vaultd that calls the network,
    and only to the URL in the profile."""

    def __init__(self, profile: ModelProfile, batch_size: int = 32, timeout: float = 60.0
                 ) -> None:
        super().__init__(profile, batch_size)
        self.timeout = timeout
        self._counter: Any = None

    def file_hash(self) -> str:
        return f"{self.profile.kind}:{self.profile.url}:{self.profile.remote_model}"

    def count_tokens(self, text: str) -> int:
        if self.profile.tokenizer:
            if self._counter is None:
                from tokenizers import Tokenizer

                self._counter = Tokenizer.from_file(self.profile.tokenizer)
                self._counter.no_truncation()
                self._counter.no_padding()
            return len(self._counter.encode(text).ids)
        # No tokenizer given: a conservative estimate (about 3 characters per token).
        return len(text) // 3 + 2

    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        import numpy as np

        base = self.profile.url.rstrip("/")
        if self.profile.kind == "ollama":
            url, body = f"{base}/api/embed", {"model": self.profile.remote_model, "input": texts}
        else:
            url, body = f"{base}/embeddings", {"model": self.profile.remote_model, "input": texts}
        from vaultd.remote import post_json

        data = post_json(url, body, api_key_env=self.profile.api_key_env,
                         what=f"the embedding provider of model '{self.model_id}'",
                         timeout=self.timeout)
        try:
            if self.profile.kind == "ollama":
                rows = data["embeddings"]
            else:
                rows = [item["embedding"] for item in sorted(data["data"],
                                                             key=lambda d: d["index"])]
            vectors = np.asarray(rows, dtype=np.float32)
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"{url}: unexpected answer shape ({exc})") from exc
        if vectors.ndim != 2 or vectors.shape[0] != len(texts):
            raise ModelError(f"{url}: expected {len(texts)} vectors, got shape {vectors.shape}")
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.clip(norms, 1e-12, None)


def make_embedder(profile: ModelProfile, threads: int = 2, batch_size: int = 8) -> Embedder:
    if profile.kind == "hash":
        return HashEmbedder(profile, batch_size=batch_size)
    if profile.kind in ("ollama", "openai"):
        return HttpEmbedder(profile, batch_size=max(batch_size, 32))
    return OnnxEmbedder(profile, threads=threads, batch_size=batch_size)

