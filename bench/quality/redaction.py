"""How well `vaultd.redact` keeps credentials out of the vault, and what it costs.

    python bench/quality/redaction.py [--detector vaultd|detect-secrets] [--show]

Reads the corpus in bench/data/redaction/: `secrets.txt` holds one case a line (a private key
block, BEGIN to END, is one case) with each credential between ⟦ and ⟧ (the marks are removed
before redacting); `ordinary.txt` holds technical lines with no credential. Reports:

- secrets redacted: the share of cases none of whose credentials survives, where "survives"
  means any 8 characters of it in a row are still in the output (a half-redacted key leaks);
- ordinary lines touched: the share of ordinary lines the redactor changed at all;
- speed: microseconds per KB over the sample vault's notes (typical notes) and the corpus.

`--detector detect-secrets` runs detect-secrets' own line scan (all its plugins and default
filters, replacing each reported secret) instead, and `detect-secrets-lines` drops every line
it flags (its detection, whatever span it reports), for the comparison in bench/RESULTS.md;
both need `pip install detect-secrets`.
"""

from __future__ import annotations

import argparse
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / "data" / "redaction"
SAMPLE_VAULT = Path(__file__).resolve().parents[2] / "sample_vault"
MARKED = re.compile(r"⟦(.*?)⟧", re.DOTALL)
WINDOW = 8


def cases(path: Path) -> Iterator[str]:
    """The cases of secrets.txt: a line, or a BEGIN … END block."""
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        if lines[i].startswith("-----BEGIN"):
            j = next(k for k in range(i, len(lines)) if lines[k].startswith("-----END"))
            yield "\n".join(lines[i:j + 1])
            i = j + 1
        else:
            if lines[i].strip():
                yield lines[i]
            i += 1


def leaks(output: str, secret: str) -> bool:
    """Whether any WINDOW characters in a row of `secret` (per line) are still in `output`."""
    for part in secret.splitlines():
        width = min(WINDOW, len(part))
        if any(part[k:k + width] in output for k in range(len(part) - width + 1)):
            return True
    return False


def vaultd_detector() -> Callable[[str], str]:
    from vaultd.redact import redact

    return redact


def detect_secrets_detector(whole_lines: bool = False) -> Callable[[str], str]:
    """detect-secrets as a file scan sees text: every plugin, its default filters, line by
    line; each reported secret value is replaced where it stands (or, `whole_lines`, each
    flagged line is dropped whole: detection alone, whatever span it reports)."""
    from detect_secrets.core.scan import _process_line_based_plugins
    from detect_secrets.settings import default_settings

    def redact(text: str) -> str:
        with default_settings():
            lines = text.split("\n")
            for secret in _process_line_based_plugins(list(enumerate(lines, 1)), "note.md"):
                n = secret.line_number - 1
                if whole_lines:
                    lines[n] = "[redacted]"
                elif secret.secret_value:
                    lines[n] = lines[n].replace(secret.secret_value, "[redacted]")
            return "\n".join(lines)

    return redact


def per_kb(redact: Callable[[str], str], text: str, min_seconds: float = 1.0) -> float:
    """Microseconds per KB of `text`, repeated for at least `min_seconds`."""
    runs, start = 0, time.perf_counter()
    while True:
        redact(text)
        runs += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return elapsed / runs * 1e6 / (len(text.encode("utf-8")) / 1024)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--detector", default="vaultd",
                        choices=["vaultd", "detect-secrets", "detect-secrets-lines"])
    parser.add_argument("--show", action="store_true", help="Print every miss and every touch.")
    args = parser.parse_args()
    start = time.perf_counter()
    redact = (vaultd_detector() if args.detector == "vaultd"
              else detect_secrets_detector(whole_lines=args.detector.endswith("-lines")))
    redact("warm up")
    import_ms = (time.perf_counter() - start) * 1000

    missed, total = [], 0
    for case in cases(DATA / "secrets.txt"):
        total += 1
        text = case.replace("⟦", "").replace("⟧", "")
        output = redact(text)
        if any(leaks(output, secret) for secret in MARKED.findall(case)):
            missed.append(output)
    ordinary = [ln for ln in (DATA / "ordinary.txt").read_text(encoding="utf-8").splitlines()
                if ln.strip()]
    touched = [(ln, out) for ln in ordinary if (out := redact(ln)) != ln]

    notes = "\n".join(p.read_text(encoding="utf-8") for p in sorted(SAMPLE_VAULT.rglob("*.md")))
    corpus = (DATA / "secrets.txt").read_text(encoding="utf-8") + "\n".join(ordinary)
    print(f"detector: {args.detector} (first call, imports included: {import_ms:.0f} ms)")
    print(f"secrets redacted: {total - len(missed)}/{total} = "
          f"{100 * (total - len(missed)) / total:.1f} % (target >= 95 %)")
    print(f"ordinary lines touched: {len(touched)}/{len(ordinary)} = "
          f"{100 * len(touched) / len(ordinary):.1f} % (target <= 2 %)")
    print(f"speed: {per_kb(redact, notes):.0f} us/KB on the sample vault's notes "
          f"({len(notes.encode()) / 1024:.0f} KB), "
          f"{per_kb(redact, corpus):.0f} us/KB on the corpus")
    if args.show:
        for output in missed:
            print(f"  MISSED  {output[:160]}")
        for line, output in touched:
            print(f"  TOUCHED {line[:120]}\n       -> {output[:120]}")


if __name__ == "__main__":
    main()
