"""Credentials in code: a unit that holds one is never sampled. Documents go to the LLM (which
can be a hosted API) and into training data, so a key in a string literal would leave the machine
and be learned. Comments are removed before this check (cleaning), so what is left is in code.

Two kinds of evidence, both kept specific so that ordinary code is not dropped (a dropped unit is
also a warning):
- a well-known token format (AWS, PEM, OpenAI/Anthropic, Stripe, GitHub, GitLab, Slack, Google,
  Hugging Face, npm, JSON Web Tokens), or a random-looking password in a connection URL
  (``scheme://user:password@host``);
- a random-looking literal (letters and digits, 16-200 characters, no path, URL, pattern or
  placeholder) assigned to a name that ends in secret, password, api_key, access_key, auth_token,
  private_key or client_secret: `password_field = "password_confirmation"`, `api_key_env = "..."`
  or `PASSWORD_HASH = "5f4d..."` name something else.
Placeholders and documentation keys (`example`, `dummy`, `test`, `your`, `xxxx`, AWS's
`AKIAIOSFODNN7EXAMPLE`, jwt.io's example token) are not credentials. Every pattern runs in linear time: names start only at
a word start, so a long word is not rescanned from each of its characters."""

from __future__ import annotations

import re

_TOKENS = re.compile(
    "|".join([
        r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b",  # AWS access key id
        # a PEM private key with its body (the header alone is a parser's marker constant)
        r"-----BEGIN [A-Z0-9 ]{0,40}PRIVATE KEY-----(?:\\[nr]|\s){0,4}[A-Za-z0-9+/]{40,}",
        r"\bsk-(?:proj-|ant-)?[A-Za-z0-9_-]{20,}",  # OpenAI / Anthropic style
        r"\b[sr]k_live_[0-9A-Za-z]{16,}",  # Stripe live keys
        r"\bgh[pousr]_[A-Za-z0-9]{36,}|\bgithub_pat_[A-Za-z0-9_]{50,}",  # GitHub tokens
        r"\bglpat-[0-9A-Za-z_-]{20,}",  # GitLab personal access token
        r"\bxox[abprs]-[A-Za-z0-9-]{10,}",  # Slack tokens
        r"\bAIza[0-9A-Za-z_-]{35}",  # Google API key
        r"\bhf_[A-Za-z0-9]{30,}",  # Hugging Face token
        r"\bnpm_[A-Za-z0-9]{36}\b",  # npm token
        # a JSON Web Token: base64url header and payload (both JSON objects, `{"` = `eyJ`) and a signature
        # (segments bounded: unbounded, every `eyJ` of a long `eyJ-eyJ-…` run rescanned the rest)
        r"\beyJ[A-Za-z0-9_-]{10,4096}\.eyJ[A-Za-z0-9_-]{10,8192}\.[A-Za-z0-9_-]{20,}",
    ])
)
# jwt.io's example token (its signature), as documentation's as AWS's EXAMPLE key
_DOCUMENTATION_TOKENS = ("SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c",)
# a password in a connection URL: scheme://user:password@host
_URL_PASSWORD = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]{1,20}://[^\s:/@\"'`]{0,64}:([^\s:/@\"'`]{8,128})@[A-Za-z0-9\[]")
# name, an optional closing quote (a dict key), `=`, `:=` or `:`, then a quoted literal
_ASSIGNED = re.compile(r"""(?<!\w)([A-Za-z_]\w{0,80})["']?\s*(?::=|=|:)\s*[rbuRBU]?["']([^"'\s]{16,200})["']""")
_SECRET_NAME = re.compile(
    r"(?:secret|passw(?:or)?d|passwd|pwd|api_?key|access_?key|auth_?token|private_?key|client_?secret)$", re.I)
_PLACEHOLDER = re.compile(r"example|dummy|test|fake|sample|placeholder|changeme|your|xxxx|0000|\*\*\*", re.I)
_NOT_RANDOM = re.compile(r"[/:{}<>%$\\\s]")


def _random_looking(value: str) -> bool:
    return (any(c.isdigit() for c in value) and any(c.isalpha() for c in value)
            and _NOT_RANDOM.search(value) is None and _PLACEHOLDER.search(value) is None)


# Literal text each rule's match must contain: a text without any is settled by substring scans
# (C speed) instead of the regexes, which try every alternative at every position (2.6 s for the
# stdlib's 6 MB of units; most texts hold none of these).
_TOKEN_MARKS = ("AKIA", "ASIA", "PRIVATE KEY", "sk-", "k_live_", "ghp_", "gho_", "ghu_", "ghs_", "ghr_",
                "github_pat_", "glpat-", "xoxa-", "xoxb-", "xoxp-", "xoxr-", "xoxs-", "AIza", "hf_", "npm_", "eyJ")
_SECRET_MARKS = ("secret", "passw", "pwd", "api_key", "apikey", "access_key", "accesskey", "auth_token",
                 "authtoken", "private_key", "privatekey")


def holds_credential(text: str) -> bool:
    """Whether `text` holds something that looks like a real credential."""
    if any(mark in text for mark in _TOKEN_MARKS) and _holds_token(text):
        return True
    if "://" in text:
        for m in _URL_PASSWORD.finditer(text):
            if _random_looking(m.group(1)):
                return True
    # as re.I matches: the long s (ſ) is an s, the dotless and dotted i (ı, İ) are i
    folded = text.casefold().replace("ı", "i").replace("i\u0307", "i")
    if any(mark in folded for mark in _SECRET_MARKS):
        for m in _ASSIGNED.finditer(text):
            if _SECRET_NAME.search(m.group(1)) and _random_looking(m.group(2)):
                return True
    return False


def _holds_token(text: str) -> bool:
    for m in _TOKENS.finditer(text):
        token = m.group(0)
        # random tokens have digits, and `sk-` keys mixed case (`sk-ecdsa-sha2-nistp256` is an SSH key type)
        digits = any(c.isdigit() for c in token)
        if (_PLACEHOLDER.search(token) is None and digits and (not token.startswith("sk-") or not token.islower())
                and not token.endswith(_DOCUMENTATION_TOKENS)):
            return True
    return False
