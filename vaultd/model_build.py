"""Building the model files vaultd makes itself: an int8 copy of a shipped ONNX model, made once
when first needed, offline, cached, verified by hash at every load and rebuilt when onnxruntime
changes.

The recipe (`RECIPE`): onnxruntime's basic graph optimisations first (the shipped MiniLM stores
int8 weights that a Cast+Mul turns into floats at run time, so its MatMuls have no constant
weight to quantise until constant folding makes them fp32 initializers); then the encoder
rebuilt from onnxruntime's fused operators (`vaultd.encoder_graph`: one Attention per layer
instead of ~45 small nodes; checked to compute the same, else the folded graph is kept); then
`quantize_dynamic(weight_type=QInt8, per_channel=True, reduce_range=True)`. The manifest's
`graph` says which ("fused" or "as exported").

Why `reduce_range` (7-bit weights): on x86 CPUs without VNNI (AVX2, or AVX-512 without VNNI),
onnxruntime's u8 x s8 MatMulInteger kernel (VPMADDUBSW) adds two products in int16 and
saturates. With 8-bit weights a pair reaches 255 x 127 x 2 = 64,770 > 32,767, and per-channel
scales put a ±127 in every column, so it happens often: a random 8 x 8 MatMul gave cosine 0.90 to
its float result on this CPU, and an exact integer product of the same quantised values 0.99997.
With reduced-range weights (within ±64) a pair stays within 255 x 64 x 2 = 32,640: no
saturation, and the same vectors on every CPU.

Next to the model a JSON manifest records the recipe, the source's and the result's sha256, the
onnxruntime version and a probe vector (the model's output for fixed token ids). The file is
used only when all of them hold; after an onnxruntime upgrade it is built again, and
`identity` (what the index records) changes only if the new file or its probe output differs,
so an index is rebuilt exactly when the vectors would change.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vaultd.errors import ModelError

if TYPE_CHECKING:
    from vaultd.model_profiles import ModelProfile

# A build takes seconds in which nothing else moves: it is announced here, step by step (the
# CLI shows this logger on stderr; the daemon logs it).
log = logging.getLogger(__name__)

RECIPE = "ort-basic-fold+fuse-encoder+quantize_dynamic(QInt8,per_channel,reduce_range)/2"
PROBE_IDS = [1 + i % 8 for i in range(16)]  # ids 1-8: valid in any vocabulary
PROBE_TOLERANCE = 1e-4  # largest change of a probe value (unit vector) that is "the same output"


@dataclass(frozen=True)
class Built:
    path: Path
    sha256: str
    identity: str  # what the index records as the model file: changes when the output does
    seconds: float  # spent building in this call (0.0 when the cached file was good)


def file_sha256(path: str | Path) -> str:
    """The sha256 of a model file, read in blocks (a model is tens of megabytes)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def quantize(base: ModelProfile, target: ModelProfile) -> Path:
    """Build the int8 copy of `base` at `target.onnx` now, unless a good one is cached
    (`ensure_quantized`; a derived profile does this itself when first used)."""
    if base.build_from:  # itself derived: build from its source
        return ensure_quantized(base.build_from, base.build_from_sha256, target.onnx).path
    return ensure_quantized(base.onnx, base.sha256, target.onnx).path


def manifest_path(out: Path) -> Path:
    return out.with_name(out.name + ".json")


def ensure_quantized(source: str | Path, source_sha256: str, out: str | Path) -> Built:
    """The int8 copy of `source` at `out`: the cached file if its manifest holds, else built
    now (a few seconds for MiniLM). Safe against a concurrent build by another process."""
    out = Path(out)
    with _build_lock(out):
        manifest = _read_manifest(out)
        current = _ort_version()
        if manifest is not None and _usable(manifest, out, source_sha256, current):
            return Built(out, manifest["sha256"], manifest["identity"], 0.0)
        return _build(Path(source), source_sha256, out, previous=manifest)


def _usable(manifest: dict[str, Any], out: Path, source_sha256: str, ort_version: str) -> bool:
    return (manifest.get("recipe") == RECIPE and manifest.get("source_sha256") == source_sha256
            and manifest.get("onnxruntime") == ort_version and out.is_file()
            and file_sha256(out) == manifest.get("sha256"))


def _build(source: Path, source_sha256: str, out: Path,
           previous: dict[str, Any] | None) -> Built:
    import time

    started = time.perf_counter()
    if not source.is_file():
        raise ModelError(f"cannot build the int8 model: model file not found: {source}")
    if source_sha256 and (actual := file_sha256(source)) != source_sha256:
        raise ModelError(f"cannot build the int8 model from {source}: sha256 {actual}, "
                         f"expected {source_sha256}; reinstall the package that ships it")
    try:
        import onnx
        import onnxruntime as ort
        from onnxruntime.quantization import QuantType, quantize_dynamic

        from vaultd.encoder_graph import fuse
    except ImportError as exc:  # onnxruntime.quantization imports the `onnx` package
        raise ModelError(f"building the int8 model needs the 'onnx' package ({exc}); "
                         "pip install onnx") from exc
    log.info("building the int8 model from %s, once (usually under a minute): 1/3 "
             "optimising the graph", source.name)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.tmp{os.getpid()}.onnx")
    folded = out.with_name(f".{out.stem}.fold{os.getpid()}.onnx")
    fused = out.with_name(f".{out.stem}.fused{os.getpid()}.onnx")
    try:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        options.optimized_model_filepath = str(folded)
        options.log_severity_level = 3
        ort.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])
        # the same network in onnxruntime's fused operators, when it is a BERT-style encoder
        # (checked to compute the same); else the folded graph as it is
        graph = "fused" if fuse(folded, fused) else "as exported"
        log.info("building the int8 model: 2/3 quantising its weights")
        with _quiet_quantizer():
            if graph == "fused":  # (the contrib operators' outputs have no inferred type)
                quantize_dynamic(str(fused), str(tmp), weight_type=QuantType.QInt8,
                                 per_channel=True, reduce_range=True,
                                 op_types_to_quantize=["MatMul", "Attention", "Gather"],
                                 extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
            else:
                quantize_dynamic(str(folded), str(tmp), weight_type=QuantType.QInt8,
                                 per_channel=True, reduce_range=True)
        log.info("building the int8 model: 3/3 checking its output")
        sha = file_sha256(tmp)
        probe = probe_vector(tmp)
        identity = sha
        if previous and previous.get("sha256") == sha and _same(previous.get("probe"), probe):
            identity = previous.get("identity", sha)  # same file, same output: same vectors
        elif previous and previous.get("sha256") == sha:
            identity = f"{sha}:{_ort_version()}"  # same file, but this runtime computes otherwise
        manifest = {"recipe": RECIPE, "graph": graph, "source": str(source),
                    "source_sha256": source_sha256,
                    "onnxruntime": _ort_version(), "sha256": sha, "identity": identity,
                    "probe": [round(float(x), 7) for x in probe]}
        os.replace(tmp, out)
        _write_json(manifest_path(out), manifest)
    except ModelError:
        raise
    except Exception as exc:  # onnx / onnxruntime raise a variety of untyped errors
        raise ModelError(f"cannot build the int8 model from {source}: {exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)
        folded.unlink(missing_ok=True)
        fused.unlink(missing_ok=True)
    seconds = time.perf_counter() - started
    log.info("built the int8 model in %.1f s (%s); it is reused from now on", seconds, out)
    return Built(out, sha, identity, seconds)


def probe_vector(path: str | Path) -> list[float]:
    """The model's output for fixed token ids, mean-pooled and normalised: a fingerprint of what
    this onnxruntime computes with this file."""
    import numpy as np
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    ids = np.asarray([PROBE_IDS], dtype=np.int64)
    feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
    names = {i.name for i in session.get_inputs()}
    if "token_type_ids" in names:
        feeds["token_type_ids"] = np.zeros_like(ids)
    if "position_ids" in names:
        feeds["position_ids"] = np.arange(ids.shape[1], dtype=np.int64)[None, :]
    out = np.asarray(session.run(None, feeds)[0], dtype=np.float64)
    vector = out.reshape(-1, out.shape[-1]).mean(axis=0)
    return list(vector / max(float(np.linalg.norm(vector)), 1e-12))


def _same(old: Any, new: list[float]) -> bool:
    if not isinstance(old, list) or len(old) != len(new):
        return False
    return max(abs(float(a) - b) for a, b in zip(old, new)) <= PROBE_TOLERANCE


def _ort_version() -> str:
    import onnxruntime

    return str(onnxruntime.__version__)


def _read_manifest(out: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(manifest_path(out).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)


@contextlib.contextmanager
def _build_lock(out: Path) -> Iterator[None]:
    """One builder at a time (a daemon and a CLI may start together); where `fcntl` is missing
    (Windows) two builds may race, and both write the same bytes with `os.replace`."""
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    with open(out.with_name(f".{out.name}.lock"), "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@contextlib.contextmanager
def _quiet_quantizer() -> Iterator[None]:
    """quantize_dynamic logs a 'consider pre-processing' warning through the root logger:
    drop records from onnxruntime's quantisation code only (not the root logger's level,
    which would silence the daemon's own warnings while the model builds). And a module it
    imports on first use calls `logging.basicConfig` (a stderr handler on the root logger, for
    good): put the root logger back as it was, or every line the daemon logs afterwards is
    printed twice, once by its own handler and once by that one."""
    import logging

    def not_the_quantizer(record: logging.LogRecord) -> bool:
        return "onnxruntime" not in record.pathname or "quantization" not in record.pathname

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    root.addFilter(not_the_quantizer)
    try:
        yield
    finally:
        root.removeFilter(not_the_quantizer)
        for handler in list(root.handlers):
            if handler not in handlers:
                root.removeHandler(handler)
        root.setLevel(level)
