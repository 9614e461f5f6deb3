"""The optional LLM merge for consolidation, with the checks that decide whether to trust it.

Consolidation keeps every merged entry word for word (`lifecycle.consolidate`): offline,
deterministic, and unable to invent anything. A user may configure a chat model to add a
rewritten summary to the merged note; its answer is used only if it passes the checks CML applies
to LLM merges (see the shared REFERENCE.md), and otherwise left out. So a misbehaving or
unreachable model can make a merge plainer, never wrong and never fail the run:

- the call failed (network, HTTP status, unexpected answer shape, missing API key);
- the answer is a refusal ("I can't", "I'm sorry", "as an AI", ...);
- the answer is longer than 1.5 x the entries it merges (padding, or made-up detail);
- no list item could be read from it;
- an item is shorter than 50 characters (a fragment, not a self-contained fact).

Two wire formats, chosen by `ChatConfig.provider`: any OpenAI-compatible endpoint
(`POST {url}/chat/completions`, `url` being the base ending in `/v1`) and Ollama
(`POST {url}/api/chat`). This module and `embedder.HttpEmbedder` are the only code in vaultd that
calls the network, and only to the URL the user configured. Standard library only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from vaultd.errors import ModelError
from vaultd.remote import post_json

MIN_ITEM_CHARS = 50
MAX_LENGTH_RATIO = 1.5

SYSTEM_PROMPT = (
    "You merge notes from a personal knowledge base. Rewrite the entries you are given as a "
    "list of distinct, self-contained facts: one fact per line, each line starting with \"- \". "
    "Each fact is a complete sentence that makes sense on its own, without the other lines. "
    "Keep every specific detail (names, numbers, dates, paths, decisions and their reasons); "
    "state repeated facts once; add nothing that the entries do not say. Be no longer than the "
    "entries. Answer with the list only: no preamble, no headings, no closing remarks."
)

# Phrases that mark a refusal or an assistant talking about itself rather than a merged note.
# Matched case-insensitively on word boundaries, with typographic apostrophes folded to "'".
REFUSAL_MARKERS = (
    "i can't", "i cannot", "i can not", "i'm sorry", "i am sorry", "i apologize",
    "i'm unable", "i am unable", "i'm not able", "i am not able", "i won't", "i will not",
    "as an ai", "as a language model", "as an assistant",
)
_REFUSAL_RE = re.compile(r"\b(" + "|".join(re.escape(m) for m in REFUSAL_MARKERS) + r")\b")
_ITEM_RE = re.compile(r"^\s*(?:[-*\u2022]|\d{1,3}[.)])\s+(.*\S)\s*$")
# Reasoning models served by Ollama (qwen3, deepseek-r1) may put their thinking before the answer.
_THINK_RE = re.compile(r"^\s*<think>.*?</think>", re.DOTALL | re.IGNORECASE)


@dataclass(frozen=True)
class ChatConfig:
    """Where and what to call. `url` is the base URL: `http://localhost:11434` for Ollama, the
    one ending in `/v1` for an OpenAI-compatible server. `api_key_env` names the environment
    variable holding a bearer key (the key itself never sits in config files)."""

    provider: Literal["openai", "ollama"]
    url: str
    model: str
    api_key_env: str = ""
    timeout: float = 60.0


@dataclass(frozen=True)
class MergeResult:
    """The items to write, where they came from, and why the model's answer was not used
    (None when it was), so a plan can show the reason next to the merge."""

    items: list[str]
    source: Literal["llm", "extractive"]
    rejected: str | None = None


def chat(messages: list[dict[str, str]], config: ChatConfig) -> str:
    """One non-streaming chat completion at temperature 0; returns the answer's text.

    Raises `ModelError` with a message for a person on any failure: unset key variable,
    unreachable server, HTTP error status, or an answer not in the provider's shape.
    """
    base = config.url.rstrip("/")
    if config.provider == "ollama":
        url = f"{base}/api/chat"
        body: dict[str, Any] = {"model": config.model, "messages": messages, "stream": False,
                                "options": {"temperature": 0}}
    elif config.provider == "openai":
        url = f"{base}/chat/completions"
        body = {"model": config.model, "messages": messages, "temperature": 0}
    else:
        raise ModelError(f"unknown chat provider '{config.provider}' (use 'openai' or 'ollama')")
    data = post_json(url, body, api_key_env=config.api_key_env,
                     what=f"the chat model '{config.model}'", timeout=config.timeout)
    try:
        if config.provider == "ollama":
            content = data["message"]["content"]
        else:
            content = data["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError) as exc:
        raise ModelError(f"{url}: unexpected answer shape (missing {exc})") from exc
    if not isinstance(content, str):
        raise ModelError(f"{url}: unexpected answer shape (content is "
                         f"{type(content).__name__}, not text)")
    return content


def merge_messages(texts: list[str]) -> list[dict[str, str]]:
    """The prompt: instructions as the system message, the entries, delimited, as the user's."""
    entries = "\n\n".join(f"Entry {i}:\n{text.strip()}" for i, text in enumerate(texts, 1))
    return [{"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": f"Merge these {len(texts)} entries.\n\n{entries}"}]


def parse_items(answer: str) -> list[str]:
    """List items from a model's answer: lines starting with "-", "*", "•" or "1." / "1)".

    Lines before the first item (a preamble the model was told not to write) and unindented
    lines after an item (closing remarks) are dropped; an indented line continues the item
    above it, since models wrap long facts.
    """
    items: list[str] = []
    for line in answer.splitlines():
        match = _ITEM_RE.match(line)
        if match:
            items.append(match.group(1))
        elif items and line[:1] in (" ", "\t") and line.strip():
            items[-1] = f"{items[-1]} {line.strip()}"
    return items


def refusal(answer: str, texts: list[str]) -> str | None:
    """The first refusal marker in `answer` that the entries themselves do not contain.

    A note may well say "I can't deploy on Fridays"; the model repeating it is a fact,
    not a refusal, so markers present in the input are not held against the answer.
    """
    source = " ".join(texts).replace("\u2019", "'").lower()
    for match in _REFUSAL_RE.finditer(answer.replace("\u2019", "'").lower()):
        if not re.search(r"\b" + re.escape(match.group(1)) + r"\b", source):
            return match.group(1)
    return None


def check_answer(answer: str, texts: list[str]) -> tuple[list[str], str | None]:
    """Parse `answer` and apply the rejection rules; returns (items, reason or None)."""
    answer = _THINK_RE.sub("", answer, count=1).strip()
    marker = refusal(answer, texts)
    if marker:
        return [], f"refusal ('{marker}' in the answer)"
    input_chars = sum(len(t) for t in texts)
    if len(answer) > MAX_LENGTH_RATIO * input_chars:
        return [], (f"too long ({len(answer)} chars > {MAX_LENGTH_RATIO} x "
                    f"{input_chars} input chars)")
    items = parse_items(answer)
    if not items:
        return [], "no list items in the answer"
    short = next((item for item in items if len(item) < MIN_ITEM_CHARS), None)
    if short is not None:
        return [], f"item under {MIN_ITEM_CHARS} chars ({len(short)}: {short[:40]!r})"
    return items, None


def llm_merge(texts: list[str], config: ChatConfig, extractive: list[str]) -> MergeResult:
    """Merge `texts` with the configured chat model, or keep `extractive` if the answer fails
    a check. Never raises for a model problem: consolidation must not depend on a server."""
    if not texts:
        return MergeResult(list(extractive), "extractive", "nothing to merge")
    try:
        answer = chat(merge_messages(texts), config)
    except ModelError as exc:
        return MergeResult(list(extractive), "extractive", f"call failed: {exc}")
    items, reason = check_answer(answer, texts)
    if reason is not None:
        return MergeResult(list(extractive), "extractive", reason)
    return MergeResult(items, "llm", None)


KINDS = ("episodic", "semantic", "procedural")


def llm_classify(text: str, config: ChatConfig) -> str | None:
    """episodic / semantic / procedural for one daily-log entry, or None when the model fails
    or answers anything else (the caller then keeps the embedding-based class)."""
    messages = [
        {"role": "system", "content": "Classify a note from an engineer's memory. Answer with "
         "exactly one word: episodic (something that happened), semantic (a fact or "
         "decision that stays true) or procedural (how to do something)."},
        {"role": "user", "content": text.strip()[:4000]}]
    try:
        answer = chat(messages, config)
    except ModelError:
        return None
    words = re.findall(r"[a-z]+", answer.lower())
    return words[0] if len(words) == 1 and words[0] in KINDS else None
