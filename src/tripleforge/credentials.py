"""Credentials in code: a unit that holds one is never sampled. Documents go to the LLM (which
can be a hosted API) and into training data, so a key in a string literal would leave the machine
and be learned. Comments are removed before this check (cleaning), so what is left is in code.

The patterns are the well-known token formats plus a long literal assigned to a name that says
it is a secret; they are deliberately specific, so ordinary code is not dropped."""

from __future__ import annotations

import re

CREDENTIAL = re.compile(
    "|".join([
        r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b",  # AWS access key id
        r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----",  # PEM private key
        r"\bsk-(?:proj-|ant-)?[A-Za-z0-9_-]{20,}",  # OpenAI / Anthropic style
        r"\bgh[pousr]_[A-Za-z0-9]{36,}|\bgithub_pat_[A-Za-z0-9_]{50,}",  # GitHub tokens
        r"\bxox[abprs]-[A-Za-z0-9-]{10,}",  # Slack tokens
        r"\bAIza[0-9A-Za-z_-]{35}",  # Google API key
        r"\bhf_[A-Za-z0-9]{30,}",  # Hugging Face token
        # a 16+ character literal assigned to a name that says it is a secret
        r"(?i:\b\w*(?:secret|passw(?:or)?d|passwd|api_?key|access_?key|auth_?token)\w*\s*[:=]\s*"
        r"[rbu]?[\"'][^\"'\s]{16,}[\"'])",
    ])
)


def holds_credential(text: str) -> bool:
    """Whether `text` holds something that looks like a real credential."""
    return CREDENTIAL.search(text) is not None
