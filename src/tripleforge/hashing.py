"""Stable identifiers. hashlib only: `pl.Expr.hash` changes across Polars versions."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

_WS = re.compile(r"\s+")


def normalize_text(text: str) -> str:
    """Whitespace-insensitive form used for dedup: runs of whitespace collapse to one space."""
    return _WS.sub(" ", text).strip()


def sha256_hex(data: str | bytes) -> str:
    if isinstance(data, str):
        data = data.encode("utf-8")
    return hashlib.sha256(data).hexdigest()


def text_id(text: str, length: int = 16) -> str:
    """Id of a text after normalization (the `doc_id` convention): first `length` hex chars of sha256."""
    return sha256_hex(normalize_text(text))[:length]


def stable_json(obj: Any) -> str:
    """Canonical JSON (sorted keys, no whitespace) so equal objects hash equally."""
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)


def key_of(*parts: Any) -> str:
    """Content-address of any JSON-able parts (cache keys)."""
    return sha256_hex(stable_json(list(parts)))
