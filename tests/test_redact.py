"""Secrets never written (issue 24, break #11): credentials in a chat, a `remember` or an MCP
write are redacted before they reach a file; ordinary technical text is left alone;
`[privacy] redact = false` keeps everything verbatim.

The fake credentials are built at run time from a seeded generator: realistic shapes, made-up
values, none of them a literal in this file."""

from __future__ import annotations

import json
import os
import random
import string
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import make_vault

from vaultd.cli import main
from vaultd.config import load_settings
from vaultd.mcp_server import MemoryTools
from vaultd.redact import find, redact, redact_counted, redact_if

_rng = random.Random(11)
ALNUM = string.ascii_letters + string.digits


def _fake(n: int, alphabet: str = ALNUM) -> str:
    return "".join(_rng.choice(alphabet) for _ in range(n))


ANTHROPIC = "sk-" + "ant-api03-" + _fake(93, ALNUM + "-_") + "AA"
OPENAI = "sk-" + "proj-" + _fake(64, ALNUM + "-_")
GITHUB = "gh" + "p_" + _fake(36)
AWS_ID = "AK" + "IA" + _fake(16, string.ascii_uppercase + string.digits)
DB_PASSWORD = _fake(14) + "!" + _fake(4)
KEY_BODY = [_fake(64, ALNUM + "+/") for _ in range(5)]
PRIVATE_KEY = "\n".join(["-----BEGIN RSA PRIVATE KEY-----", *KEY_BODY,
                         "-----END RSA PRIVATE KEY-----"])
SLACK = "xo" + "xb-" + "4981143372" + "81-" + "92465040474" + "48-" + _fake(24)
STRIPE = "sk" + "_live_" + _fake(24)
JWT = ("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9." + "eyJzdWIiOiIxMjM0In0." + _fake(43, ALNUM + "-_"))
ENV_SECRET = _fake(20, ALNUM + "#%")

#: (line holding one credential, the credential, the placeholder's kind)
SECRETS = [
    (f"export ANTHROPIC_API_KEY={ANTHROPIC}", ANTHROPIC, "anthropic-key"),
    (f"the key I used was {OPENAI} if you need it", OPENAI, "openai-key"),
    (f"git remote set-url origin https://{GITHUB}@github.com/acme/infra.git", GITHUB,
     "github-token"),
    (f"aws_access_key_id = {AWS_ID}", AWS_ID, "aws-access-key"),
    (f"DATABASE_URL=postgres://app:{DB_PASSWORD}@db.internal:5432/app", DB_PASSWORD,
     "password"),
    (f"SLACK_BOT_TOKEN={SLACK}", SLACK, "slack-token"),
    (f'stripe.api_key = "{STRIPE}"', STRIPE, "stripe-key"),
    (f"curl -H 'Authorization: Bearer {JWT}' https://api.example.com/v1/me", JWT, "jwt"),
    (f"PASSWORD={ENV_SECRET}", ENV_SECRET, "password"),
    (f'  "client_secret": "{ENV_SECRET}",', ENV_SECRET, "secret"),
    (f'export SECRET_TOKEN="{ENV_SECRET}"', ENV_SECRET, "token"),
    (f"API_KEY: {ENV_SECRET}", ENV_SECRET, "api-key"),
    (f"The staging admin password is {DB_PASSWORD} (change it after the demo).", DB_PASSWORD,
     "secret"),
]

#: technical lines with no credential, of the kinds a note is full of
ORDINARY = [
    "commit 4c1d2e9f0a7b3c5d6e8f9a0b1c2d3e4f5a6b7c8d",
    "fix(search): keep the BM25 weight when the query has no vector hits",
    "id: 3f2b8c1e-9d4a-4f6b-8e2c-7a1d5b9c0e3f",
    f"image: postgres@sha256:{'ab12' * 16}",
    '"integrity": "sha512-3B90Alb+jWrt6kSfIQuGtT3wHPgpQwwuM+5PoE6HwjRKcoCsLUVYzQT+QAkDBLuB==",',
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK0wmN/Cr3JXqmLw7Zq3hLq0cQ3Y0S2hQ2u9hK1pQe3R dana@laptop",
    "git clone git@github.com:acme/infra.git",
    "https://user@example.com/repo.git",
    "DATABASE_URL=postgresql://app@db.internal:5432/app",
    "REDIS_URL=redis://localhost:6379/0",
    "api_key = os.environ[\"OPENAI_API_KEY\"]",
    "PASSWORD=${DB_PASSWORD}",
    "password: ${{ secrets.DB_PASSWORD }}",
    'api_key: "{{ vault_api_key }}"',
    "password_file: /run/secrets/db_password",
    "token_ttl_seconds: 3600",
    "PASSWORD_MIN_LENGTH=12",
    '"token_type": "Bearer",',
    'curl -H "Authorization: Bearer $GITHUB_TOKEN" https://api.github.com/user',
    "token = request.headers.get(\"Authorization\", \"\").removeprefix(\"Bearer \")",
    "    password: str = Field(min_length=12, repr=False)",
    "SECRET_KEY = os.environ[\"DJANGO_SECRET_KEY\"]",
    "KeyError: 'OPENAI_API_KEY'",
    "psycopg2.OperationalError: FATAL:  password authentication failed for user \"app\"",
    "The staging database password was rotated on Friday; ask Dana for access.",
    "Password managers we evaluated: 1Password, Bitwarden, KeePassXC.",
    "Bearer tokens expire after one hour; refresh tokens after 30 days.",
    "sk- keys from OpenAI are now project-scoped (sk-proj-...).",
    "Use AKIA-prefixed keys only in CI; locally use SSO.",
    "# Paste your key between -----BEGIN PRIVATE KEY----- and the END line in the form.",
    "-----BEGIN PUBLIC KEY-----",
    "ssh -p 2222 deploy@10.0.4.12",
    "mysql -u root -p",
    "numpy==1.26.4 onnxruntime 1.18.0 v0.13.2-rc.1+build.5",
    "  File \"/usr/lib/python3.11/site-packages/requests/adapters.py\", line 486, in send",
]


# -- the redactor


@pytest.mark.parametrize(("line", "secret", "kind"), SECRETS)
def test_each_credential_is_replaced_by_a_placeholder_naming_it(line: str, secret: str,
                                                                kind: str) -> None:
    out = redact(line)
    assert secret not in out
    assert f"[redacted: {kind}]" in out


def test_a_password_url_keeps_scheme_user_and_host() -> None:
    out = redact(f"psql postgres://app:{DB_PASSWORD}@db.internal:5432/app")
    assert out == "psql postgres://app:[redacted: password]@db.internal:5432/app"


def test_a_private_key_block_keeps_its_begin_and_end_lines() -> None:
    out = redact(f"here is the deploy key:\n{PRIVATE_KEY}\nthanks")
    assert out == ("here is the deploy key:\n-----BEGIN RSA PRIVATE KEY-----"
                   "[redacted: private-key]\n-----END RSA PRIVATE KEY-----\nthanks")


def test_a_private_key_folded_onto_one_line_and_cut_is_still_found() -> None:
    """What a transcript's summary line holds: whitespace folded, no END line."""
    out = redact("-----BEGIN OPENSSH PRIVATE KEY----- " + " ".join(KEY_BODY[:2]))
    assert not any(chunk[:16] in out for chunk in KEY_BODY)


@pytest.mark.parametrize("line", ORDINARY)
def test_ordinary_technical_text_is_left_alone(line: str) -> None:
    assert redact(line) == line


def test_redaction_is_idempotent() -> None:
    text = "\n".join([line for line, _, _ in SECRETS] + ORDINARY + [PRIVATE_KEY])
    once, count = redact_counted(text)
    assert count == len(SECRETS) + 1
    assert redact(once) == once and find(once) == []


def test_redact_if_off_returns_the_text_itself() -> None:
    line = SECRETS[0][0]
    assert redact_if(line, False) == line
    assert redact_if(line, True) == redact(line) != line


# -- the break: secrets from a chat, a remember and an MCP write reach no file

def _runner(tmp_path: Path) -> CliRunner:
    return CliRunner(env={"VAULTD_VAULT": None, "VAULTD_CACHE_DIR": str(tmp_path / "cache"),
                          "VAULTD_EMBEDDING_MODEL": "hash-256"})


def _leaked(root: Path, secrets: list[str]) -> list[tuple[str, str]]:
    """(file, secret) for every secret whose bytes are in any file under the vault, the
    index included."""
    found = []
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            found += [(str(path.relative_to(root)), s) for s in secrets if s.encode() in data]
    return found


def _transcript(path: Path) -> Path:
    """A Claude Code transcript in which the user pastes an API key, a password URL and a
    private key, and the assistant repeats them in a decision and after an error."""
    records = [
        {"type": "user", "message": {"role": "user", "content":
            f"Deploy with ANTHROPIC_API_KEY={ANTHROPIC} and "
            f"postgres://app:{DB_PASSWORD}@db.internal:5432/app please"}},
        {"type": "user", "message": {"role": "user", "content":
            f"and the key for the box:\n{PRIVATE_KEY}\n"}},
        {"type": "assistant", "message": {"role": "assistant", "content": [
            {"type": "text", "text": f"We decided to export the key {ANTHROPIC} in the unit. "
                                     f"We will use the deploy key {PRIVATE_KEY} as given."},
            {"type": "tool_use", "id": "t1", "name": "Bash", "input": {"command": "psql"}}]}},
        {"type": "user", "message": {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "t1", "is_error": True, "content":
                f"psycopg2.OperationalError: could not connect to "
                f"postgres://app:{DB_PASSWORD}@db.internal:5432/app"}]}},
        {"type": "assistant", "message": {"role": "assistant", "content":
            f"Fixed: the URL postgres://app:{DB_PASSWORD}@db.internal:5432/app needed sslmode."}},
    ]
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n", encoding="utf-8")
    return path


TRANSCRIPT_SECRETS = [ANTHROPIC, DB_PASSWORD, *KEY_BODY]


def test_flush_transcript_and_precompact_hook_store_no_credential(tmp_path: Path) -> None:
    """Break #11: `vaultd flush --transcript` and the PreCompact hook stored API keys,
    passwords and private keys from the chat verbatim in episodic/ and MEMORY.md."""
    root = make_vault(tmp_path)
    transcript = _transcript(tmp_path / "session.jsonl")
    runner = _runner(tmp_path)
    out = runner.invoke(main, ["--vault", str(root), "flush", "--transcript", str(transcript)])
    assert out.exit_code == 0, out.output
    # another session: the first one's turns are saved once (issue 26, point 7)
    second = _transcript(tmp_path / "session-2.jsonl")
    payload = json.dumps({"transcript_path": str(second), "hook_event_name": "PreCompact"})
    out = runner.invoke(main, ["--vault", str(root), "hook", "pre-compact"], input=payload)
    assert out.exit_code == 0, out.output
    logs = "".join(p.read_text(encoding="utf-8") for p in (root / "episodic").glob("*.md"))
    assert logs.count("— Session transcript") == 2  # both sessions saved, minus the secrets
    assert "[redacted: anthropic-key]" in logs and "[redacted: password]" in logs
    assert "postgres://app:[redacted: password]@db.internal" in logs
    assert (root / "MEMORY.md").is_file()
    assert _leaked(root, TRANSCRIPT_SECRETS) == []


def test_remember_stores_no_credential(tmp_path: Path) -> None:
    root = make_vault(tmp_path)
    out = _runner(tmp_path).invoke(
        main, ["--vault", str(root), "remember", f"deploy key is {GITHUB}, db password "
               f"postgres://app:{DB_PASSWORD}@db/app"])
    assert out.exit_code == 0, out.output
    log = "".join(p.read_text(encoding="utf-8") for p in (root / "episodic").glob("*.md"))
    assert "[redacted: github-token]" in log and "deploy key is" in log
    assert _leaked(root, [GITHUB, DB_PASSWORD]) == []


@pytest.fixture
def tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[MemoryTools]:
    """The MCP verbs, in-process, over a vault with one note to edit."""
    root = make_vault(tmp_path, {"semantic/deploy.md": "# Deploy\n\nfly deploy --remote-only\n"})
    for key in [k for k in os.environ if k.startswith("VAULTD_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("VAULTD_EMBEDDING_MODEL", "hash-256")
    monkeypatch.setenv("VAULTD_CACHE_DIR", str(tmp_path / "cache"))
    verbs = MemoryTools(root)
    yield verbs
    verbs.close()


def test_mcp_write_stores_no_credential(tools: MemoryTools) -> None:
    result = tools.write(f"rotated the Slack bot token; the new one is {SLACK}")
    text = (tools.vault.root / result["path"]).read_text(encoding="utf-8")
    assert "[redacted: slack-token]" in text
    assert _leaked(tools.vault.root, [SLACK]) == []


def test_mcp_write_note_stores_no_credential(tools: MemoryTools) -> None:
    result = tools.write_note(f"Stripe key {STRIPE}", f"Live key: `{STRIPE}`\nJWT {JWT}\n")
    text = (tools.vault.root / result["path"]).read_text(encoding="utf-8")
    assert "[redacted: stripe-key]" in text and "[redacted: jwt]" in text
    assert _leaked(tools.vault.root, [STRIPE, JWT]) == []


def test_mcp_edit_note_stores_no_credential(tools: MemoryTools) -> None:
    result = tools.edit_note("semantic/deploy.md", "append",
                             f"Set `AWS_ACCESS_KEY_ID={AWS_ID}` and `PASSWORD={ENV_SECRET}`.")
    assert result["written"]
    text = (tools.vault.root / "semantic/deploy.md").read_text(encoding="utf-8")
    assert "fly deploy --remote-only" in text and "[redacted: aws-access-key]" in text
    assert _leaked(tools.vault.root, [AWS_ID, ENV_SECRET]) == []


# -- [privacy] redact = false


PRIVACY_OFF = "[privacy]\nredact = false\n"


def test_privacy_redact_defaults_on_and_can_be_turned_off(tmp_path: Path) -> None:
    root = make_vault(tmp_path)
    assert load_settings(root, env={}).privacy.redact is True
    assert load_settings(root, env={"VAULTD_PRIVACY_REDACT": "false"}).privacy.redact is False
    template = (Path(__file__).resolve().parents[1] / "templates" / "config.toml").read_text()
    assert "[privacy]\n" in template and "# redact = true" in template


def test_redact_false_keeps_transcript_and_remember_verbatim(tmp_path: Path) -> None:
    root = make_vault(tmp_path, config=PRIVACY_OFF)
    runner = _runner(tmp_path)
    transcript = _transcript(tmp_path / "session.jsonl")
    out = runner.invoke(main, ["--vault", str(root), "flush", "--transcript", str(transcript)])
    assert out.exit_code == 0, out.output
    out = runner.invoke(main, ["--vault", str(root), "remember", f"token {GITHUB}"])
    assert out.exit_code == 0, out.output
    log = "".join(p.read_text(encoding="utf-8") for p in (root / "episodic").glob("*.md"))
    assert ANTHROPIC in log and DB_PASSWORD in log and GITHUB in log
    assert "[redacted" not in log


def test_redact_false_keeps_mcp_writes_verbatim(tools: MemoryTools,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VAULTD_PRIVACY_REDACT", "false")
    tools.close()  # reopened with the setting
    written = tools.write(f"token {SLACK}")
    note = tools.write_note("keys", f"stripe {STRIPE}")
    tools.edit_note("semantic/deploy.md", "append", f"id {AWS_ID}")
    root = tools.vault.root
    assert SLACK in (root / written["path"]).read_text(encoding="utf-8")
    assert STRIPE in (root / note["path"]).read_text(encoding="utf-8")
    assert AWS_ID in (root / "semantic/deploy.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("redact_on", [True, False])
def test_memory_md_carries_no_credential_a_note_holds(tmp_path: Path, redact_on: bool) -> None:
    """A note the user wrote by hand with a password URL: MEMORY.md (what every agent reads
    at session start, and what a sync carries) shows the fact without the password."""
    from conftest import fake_embedder

    from vaultd import blocks
    from vaultd.vault import open_vault

    note = ("---\ntype: episodic\ncreated: 2026-11-20\n---\n# Staging database\n\n"
            f"The staging database is at postgres://app:{DB_PASSWORD}@db.staging.internal/"
            "ledger and the nightly restore runs from it.\n")
    root = make_vault(tmp_path, {"episodic/staging-db.md": note},
                      config="" if redact_on else PRIVACY_OFF)
    with open_vault(root, env={}, daemon="never", embedder=fake_embedder(tmp_path)) as vault:
        vault.flush()
    block = blocks.block_of((root / "MEMORY.md").read_text(encoding="utf-8")) or ""
    assert "db.staging.internal" in block  # the fact is there
    assert (DB_PASSWORD in block) is not redact_on
