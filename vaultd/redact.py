"""Credentials out of text before vaultd writes it: API keys, tokens, passwords, private keys.

A vault is synced, shared and read back into agents' context, so a key pasted into a chat must
not land in `episodic/` or MEMORY.md. Text that reaches a file from an agent or a chat
(transcript salvage, `remember`, MCP writes, MEMORY.md's block) passes through `redact` first;
`[privacy] redact = false` turns that off (`redact_if`; the caller passes the setting in).

Each credential is replaced where it stands by a placeholder that says what was there, e.g.
`[redacted: github-token]`, so the line still reads. What is found:

- tokens with a vendor's own shape (`sk-ant-…`, `ghp_…`, `AKIA…`, `xoxb-…`, JWTs, …), anywhere;
- the password of a URL (`postgres://app:PW@host` keeps scheme, user and host), an
  `Authorization:` header's credentials, a private key block's body (BEGIN/END lines kept);
- the value of an assignment whose name says secret (`DB_PASSWORD=…`, `"client_secret": "…"`,
  `api_key: …`, `export SECRET_TOKEN="…"`, `--password …`, `?access_token=…`), unless the value
  is a reference (`${VAR}`, `{{ x }}`, `os.environ[…]`, `<your-key>`) or code;
- a credential-looking word after "password is" / "token:" in prose.

A long random-looking string with no such context (a hash, a UUID, base64 in docs) is left
alone: those are ordinary in technical notes, and redacting them would garble the notes.

The patterns are vaultd's own rather than detect-secrets': its plugins report a token's prefix
rather than its span, its line scan flags hashes and checksums, and it is slower by two orders
(the comparison is in bench/RESULTS.md, from `bench/quality/redaction.py`). Each pattern starts
with a literal where it can, so the regex engine skips to candidates instead of trying every
position.
A placeholder never matches again: `redact(redact(t)) == redact(t)`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

PLACEHOLDER = "[redacted: {kind}]"
_REDACTED = "[redacted"
_TOKEN_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
_END = r"(?![A-Za-z0-9_\-])"  # a token's right edge; the left edge is checked in `_tokens`


@dataclass(frozen=True)
class Finding:
    """One credential: its kind (the placeholder's label) and its span in the text."""
    kind: str
    start: int
    end: int


# -- vendors' token shapes: distinctive enough to redact wherever they stand.
_TOKENS: list[tuple[str, str]] = [
    ("anthropic-key", r"sk-ant-[a-z]{2,8}\d{0,3}-[A-Za-z0-9_\-]{20,}"),
    ("openrouter-key", r"sk-or-v1-[0-9a-f]{64}"),
    ("openai-key", r"sk-(?:proj|svcacct|admin|None)-[A-Za-z0-9_\-]{20,}"),
    ("openai-key", r"sk-[A-Za-z0-9_\-]*T3BlbkFJ[A-Za-z0-9_\-]{10,}"),
    ("openai-key", r"sk-[A-Za-z0-9]{32,}"),
    ("aws-access-key", r"(?:A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)"
                       r"[A-Z0-9]{16}"),
    ("github-token", r"gh[pousr]_[A-Za-z0-9]{36,255}"),
    ("github-token", r"github_pat_[A-Za-z0-9_]{50,255}"),
    ("gitlab-token", r"gl(?:pat|dt|ft|soat|rt|cbt|imt|ptt|agent|oas)-[A-Za-z0-9_\-]{20,1024}"),
    ("gitlab-token", r"GR1348941[A-Za-z0-9_\-]{20,50}"),
    ("slack-token", r"xox[abposre]-(?:\d+-)*[A-Za-z0-9\-]{10,}"),
    ("slack-token", r"xapp-\d-[A-Z0-9]+-\d+-[a-f0-9]{32,}"),
    ("stripe-key", r"sk_(?:live|test)_[A-Za-z0-9]{16,}"),
    ("stripe-key", r"rk_(?:live|test)_[A-Za-z0-9]{16,}"),
    ("stripe-key", r"whsec_[A-Za-z0-9+/=]{24,}"),
    ("google-api-key", r"AIza[0-9A-Za-z_\-]{35}"),
    ("google-oauth-secret", r"GOCSPX-[A-Za-z0-9_\-]{20,}"),
    ("google-oauth-token", r"ya29\.[0-9A-Za-z_\-]{20,}"),
    ("npm-token", r"npm_[A-Za-z0-9]{36}"),
    ("pypi-token", r"pypi-Ag[A-Za-z0-9_\-]{50,}"),
    ("jwt", r"eyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]*"),
    ("twilio-key", r"AC[0-9a-f]{32}"),
    ("twilio-key", r"SK[0-9a-f]{32}"),
    ("sendgrid-key", r"SG\.[A-Za-z0-9_\-]{22}\.[A-Za-z0-9_\-]{43}"),
    ("huggingface-token", r"hf_[A-Za-z0-9]{30,}"),
    ("digitalocean-token", r"do[por]_v1_[a-f0-9]{64}"),
    ("shopify-token", r"shp(?:at|ca|pa|ss)_[a-fA-F0-9]{32}"),
    ("databricks-token", r"dapi[a-f0-9]{32}(?:-\d)?"),
    ("groq-key", r"gsk_[A-Za-z0-9]{48,}"),
    ("replicate-token", r"r8_[A-Za-z0-9]{37}"),
    ("xai-key", r"xai-[A-Za-z0-9]{60,}"),
    ("perplexity-key", r"pplx-[A-Za-z0-9]{40,}"),
    ("linear-key", r"lin_api_[A-Za-z0-9]{40}"),
    ("notion-token", r"secret_[A-Za-z0-9]{43}"),
    ("notion-token", r"ntn_[A-Za-z0-9]{40,}"),
    ("atlassian-token", r"ATATT3[A-Za-z0-9_\-=]{150,}"),
    ("square-token", r"sq0atp-[0-9A-Za-z_\-]{22}"),
    ("square-token", r"sq0csp-[0-9A-Za-z_\-]{43}"),
    ("age-secret-key", r"AGE-SECRET-KEY-1[0-9A-Z]{58}"),
    ("artifactory-token", r"AKC[a-zA-Z0-9]{60,}"),
    ("square-token", r"EAAA[A-Za-z0-9_\-]{60}"),
]
_TOKEN_RULES = [(kind, re.compile(pattern + _END)) for kind, pattern in _TOKENS]
# Shapes that start with a character class: found from a literal inside (the anchor), then
# matched whole from the start of the token the anchor is in.
_ANCHORED: list[tuple[str, re.Pattern[str], re.Pattern[str]]] = [
    ("mailchimp-key", re.compile(r"-us\d"), re.compile(r"[0-9a-f]{32}-us\d{1,2}" + _END)),
    ("telegram-token", re.compile(r":AA"), re.compile(r"\d{8,10}:AA[A-Za-z0-9_\-]{32,33}" + _END)),
    ("discord-token", re.compile(r"\.[A-Za-z0-9_\-]{6}\."),
     re.compile(r"[MNO][A-Za-z0-9_\-]{23,25}\.[A-Za-z0-9_\-]{6}\.[A-Za-z0-9_\-]{27,38}" + _END)),
]


@dataclass(frozen=True)
class Rule:
    """A credential found by its context. `pattern` runs on the lower-cased text when `lower`
    (so it is written in lower case); group "v" is the span replaced; `check` sees the
    original value and may veto it."""
    kind: str
    pattern: re.Pattern[str]
    check: Callable[[str], bool]
    lower: bool = False
    hint: str = ""  # run only on text holding this (for a pattern that starts with a class)


# values that are not secrets: references, placeholders, type names
_REFERENCE = re.compile(
    r"""(?ix) ^(?: \$ | %\( | \{\{ | \{% | <[^>]*>$ | \[[^\]]*\]$ | \*+$ | x{3,}$ | .*\.\.\. | .*…
    | (?:os|process|settings|config|cfg|conf|self|this|env|app|request|secrets|vault)[.\[:(]
    | (?:none|null|nil|true|false|undefined|required|optional|str|string|int|bool|bytes|
         secretstr|secret|password|token|redacted)$
    | your[_\- ] | \[redacted )""")
_IDENTIFIER = re.compile(r"[A-Za-z_]+(?:\.[A-Za-z_]\w*)*")
_WORDS = re.compile(r"[a-z]+(?:[-_ ][a-z]+)*")  # "wrong", "last_token", "not-the-token"
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_CODE = re.compile(r"[(){}\[\]]")
_PATH_START = ("/", "~/", "./", "../")


def _literal(value: str) -> bool:
    """A value that is not a reference or a placeholder."""
    return len(value) >= 4 and not _REFERENCE.match(value.strip())


def _quoted(value: str) -> bool:
    """A quoted value in code, JSON or YAML: a secret unless it is a reference, a placeholder
    or lower-case words (an enum, a test's "wrong")."""
    return _literal(value) and not _WORDS.fullmatch(value)


def _bare(value: str) -> bool:
    """An unquoted value in code, JSON or YAML: a secret unless it is also code (a call, an
    index), a variable or dotted name, a number or a path."""
    return (_literal(value) and not _CODE.search(value) and not _IDENTIFIER.fullmatch(value)
            and not _NUMBER.fullmatch(value) and not value.startswith(_PATH_START))


def _env_value(value: str) -> bool:
    """An unquoted value in a `.env` line (`NAME=value`, NAME upper case): literal even when it
    is one word, since nothing there is code."""
    return _literal(value) and not _CODE.search(value) and not value.startswith(_PATH_START)


def _credential_like(value: str) -> bool:
    """A word in prose or after `Bearer` that looks like a credential: letters mixed with digits
    or symbols, not a reference, path, URL or number."""
    value = value.rstrip(".,;:)!?")
    return (len(value) >= 6 and _bare(value) and any(c.isalpha() for c in value)
            and any(not c.isalpha() for c in value) and "://" not in value)


_RULES: list[Rule] = [
    Rule("private-key", re.compile(
        r"-----BEGIN[ A-Z0-9]{0,30} PRIVATE KEY(?: BLOCK)?-----"
        r"(?P<v>(?:[ \t]*\r?\n?[ \t]*(?:[A-Za-z][A-Za-z\-]{1,30}:[^\n]*|[A-Za-z0-9+/=]{16,}))+"
        r"(?:\s*=[A-Za-z0-9+/]{4})?)"), lambda v: True),
    Rule("password", re.compile(  # scheme://user:PASSWORD@host
        r"://[^\s:/?#@\"'`<>\[\]]*:(?P<v>[^\s/?#@\"'`<>]{1,256})@(?=[A-Za-z0-9\[._\-])"),
        _literal),
    Rule("bearer-token", re.compile(
        r"authorization[\"']?[ \t]*[:=][ \t]*[\"']?(?:bearer|token|bot|apikey|sso-key)"
        r"[ \t]+(?P<v>[a-z0-9._~+/=\-:]{8,})"), _literal, lower=True),
    Rule("basic-auth", re.compile(
        r"authorization[\"']?[ \t]*[:=][ \t]*[\"']?(?:basic|digest)[ \t]+(?P<v>[a-z0-9+/=]{8,})"),
        _literal, lower=True),
    Rule("bearer-token", re.compile(r"bearer[ \t]+(?P<v>[a-z0-9._~+/\-]{20,}=*)"),
         _credential_like, lower=True),
    Rule("azure-storage-key", re.compile(r"accountkey=(?P<v>[^;\s\"']{20,})"),
         lambda v: True, lower=True),
    Rule("azure-storage-key", re.compile(r"sharedaccess(?:key|signature)=(?P<v>[^;\s\"']{20,})"),
         lambda v: True, lower=True),
    Rule("slack-webhook", re.compile(
        r"hooks\.slack\.com/(?:services|workflows|triggers)/(?P<v>[A-Za-z0-9/_\-]{20,})"),
        lambda v: True),
    Rule("discord-webhook", re.compile(
        r"discord(?:app)?\.com/api/webhooks/\d+/(?P<v>[A-Za-z0-9_\-]{30,})"), lambda v: True),
    Rule("token", re.compile(  # ?access_token=…
        r"[?&](?:access_token|refresh_token|id_token|api_key|apikey|token|secret|password|"
        r"client_secret|private_token|auth|sig|signature)=(?P<v>[^&\s#\"'`]{6,})"),
        _literal, lower=True),
    Rule("password", re.compile(  # --password X, --token=X
        r"--(?:password|passwd|pass|token|access-token|auth-token|api-key|apikey|secret|"
        r"client-secret|private-key)(?:=|[ \t]+)(?P<v>[^\s\"'`]{4,})"), _literal, lower=True),
    Rule("password", re.compile(  # docker login -u ci -p X
        r"(?:docker|podman|nerdctl|helm|oras|buildah)[ \t]+(?:registry[ \t]+)?login\b[^\n]*?"
        r"[ \t]-p[ \t]*(?P<v>[^\s\"'`\-][^\s\"'`]{3,})"), _literal, lower=True, hint="login"),
    Rule("password", re.compile(r"mysql(?:dump|admin)?\b[^\n]*?[ \t]-p(?P<v>[^\s\"'`]{4,})"),
         _literal),
    Rule("password", re.compile(r"machine[ \t]+\S+[^\n]*?\bpassword[ \t]+(?P<v>\S+)"),
         _literal),
]

# -- assignments and prose, found from the secret word in the name (`DB_PASSWORD`, `apiKey`)
_KEYWORD = re.compile(r"pass|pwd|secret|token|credential|key")
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_.-")
_SECRET_NAME = re.compile(
    r"(?:pass(?:word|wd|phrase)?|pwd|secret|token|credentials?|apikey|"
    r"(?:api|access|secret|private|auth|account|signing|encryption|master|session|restricted|"
    r"license|service|webhook|client|app|admin|deploy)[_\-]?key)$")
# after the name: = value, : value, "…": "…", := value; group kind says which value form
_ASSIGNED = re.compile(
    r"""["']?\]?[ \t]*(?P<op>:=|=|:)[ \t]*@?
    (?: "(?P<dq>[^"\n]{1,512})" | '(?P<sq>[^'\n]{1,512})' | `(?P<bq>[^`\n]{1,512})`
      | (?P<bare>[^\s"'`,;]{1,512}) )""", re.VERBOSE)
_PROSE_NAME = re.compile(r"(?:^|[^a-z0-9_])(?:password|passphrase|passcode|token|secret|"
                         r"(?:api|secret|access|private)[ _\-]?key)$")
# "the password for the admin panel is: X": a few words may stand between the name and the verb
_PROSE_VALUE = re.compile(r"(?:(?:[ \t]+[A-Za-z0-9_\-]+){0,5}?[ \t]+(?:is|was|are)[ \t]*:?"
                          r"|[ \t]*[:=])[ \t]+[\"'`]?(?P<v>[^\s\"'`]{6,})")
# a shell's `set -x API_TOKEN value`, `aws configure set aws_secret_access_key value`
_SPACED_VALUE = re.compile(r"[ \t]+(?P<v>[^\s\"'`|<>;&]{12,})")


def _kind_of_name(name: str) -> str:
    if "pass" in name or "pwd" in name:
        return "password"
    if "token" in name:
        return "token"
    return "api-key" if "key" in name else "secret"


def _assigned(name: str, m: re.Match[str]) -> Finding | None:
    """The secret of `name = value` (already matched by `_ASSIGNED`), if the value is one."""
    group = next(g for g in ("dq", "sq", "bq", "bare") if m.group(g) is not None)
    value = m.group(group)
    env = m.group("op") == "=" and name.upper() == name  # a .env line: no code, all literal
    if group != "bare":
        ok = _literal(value) if env else _quoted(value)
    else:
        ok = _env_value(value) if env else _bare(value)
    return Finding(_kind_of_name(name.lower()), m.start(group), m.end(group)) if ok else None


def _named(text: str, lower: str) -> Iterator[Finding]:
    """Values whose name says secret: each hit of a secret word is widened to the whole name
    (letters, digits, `_ . -`); the name must end in a secret word."""
    done = 0
    for hit in _KEYWORD.finditer(lower):
        if hit.start() < done:
            continue
        start, end = hit.start(), hit.end()
        while start > 0 and lower[start - 1] in _NAME_CHARS:
            start -= 1
        while end < len(lower) and lower[end] in _NAME_CHARS:
            end += 1
        done = end
        name = lower[start:end].rstrip("._-")
        end = start + len(name)
        if _SECRET_NAME.search(name):
            m = _ASSIGNED.match(text, end)
            if m and (found := _assigned(text[start:end], m)):
                yield found
                continue
            m = _SPACED_VALUE.match(text, end)
            if (m and "_" in name and _credential_like(m.group("v"))
                    and any(c.isdigit() for c in m.group("v"))):
                yield Finding(_kind_of_name(name), m.start("v"), m.end("v"))
                continue
        if _PROSE_NAME.search(lower, max(0, start - 12), end):
            m = _PROSE_VALUE.match(text, end)
            if m and _credential_like(m.group("v")):
                value = m.group("v").rstrip(".,;:)!?")  # the sentence's punctuation stays
                yield Finding("secret", m.start("v"), m.start("v") + len(value))


def _token_start(text: str, pos: int) -> int:
    while pos > 0 and text[pos - 1] in _TOKEN_CHARS:
        pos -= 1
    return pos


def _tokens(text: str) -> Iterator[Finding]:
    for kind, pattern in _TOKEN_RULES:
        for m in pattern.finditer(text):
            if m.start() == 0 or text[m.start() - 1] not in _TOKEN_CHARS:
                yield Finding(kind, m.start(), m.end())
    for kind, anchor, whole in _ANCHORED:
        for a in anchor.finditer(text):
            found = whole.match(text, _token_start(text, a.start()))
            if found and found.end() > a.start():
                yield Finding(kind, found.start(), found.end())


def _contexts(text: str, lower: str) -> Iterator[Finding]:
    for rule in _RULES:
        if rule.hint and rule.hint not in lower:
            continue
        for m in rule.pattern.finditer(lower if rule.lower else text):
            value = text[m.start("v"):m.end("v")]
            if not value.startswith(_REDACTED) and rule.check(value):
                yield Finding(rule.kind, m.start("v"), m.end("v"))


def _lower(text: str) -> str:
    """`text` lower-cased with every offset kept (the few characters whose lower case is longer
    stay as they are)."""
    lower = text.lower()
    if len(lower) == len(text):
        return lower
    return "".join(c if len(c.lower()) != 1 else c.lower() for c in text)


def find(text: str) -> list[Finding]:
    """The credentials in `text`, in order, overlaps merged (the earliest start wins and
    covers the union)."""
    lower = _lower(text)
    found = sorted([*_tokens(text), *_contexts(text, lower), *_named(text, lower)],
                   key=lambda f: (f.start, -f.end))
    merged: list[Finding] = []
    for f in found:
        if merged and f.start < merged[-1].end:
            last = merged[-1]
            if f.end > last.end:
                merged[-1] = Finding(last.kind, last.start, f.end)
            continue
        merged.append(f)
    return merged


def redact_counted(text: str) -> tuple[str, int]:
    """`text` with every credential replaced by its placeholder, and how many were."""
    findings = find(text)
    if not findings:
        return text, 0
    parts, pos = [], 0
    for f in findings:
        parts.append(text[pos:f.start])
        parts.append(PLACEHOLDER.format(kind=f.kind))
        pos = f.end
    parts.append(text[pos:])
    return "".join(parts), len(findings)


def redact(text: str) -> str:
    """`text` with every credential replaced by a placeholder naming its kind."""
    return redact_counted(text)[0]


def redact_if(text: str, enabled: bool) -> str:
    """`redact(text)` when `[privacy] redact` is on (the default), else `text` unchanged."""
    return redact(text) if enabled else text
