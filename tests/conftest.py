"""Session-wide test environment: offline models, private caches, quiet DVC."""

from __future__ import annotations

import os

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["DVC_NO_ANALYTICS"] = "1"
os.environ["GIT_CONFIG_NOSYSTEM"] = "1"
os.environ["TRIPLEFORGE_NO_PROGRESS"] = os.environ.get("TRIPLEFORGE_NO_PROGRESS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """LLM and embedding caches live in a per-session temp dir, never in the user's home."""
    cache = tmp_path_factory.mktemp("tf-cache")
    os.environ["TRIPLEFORGE_CACHE_DIR"] = str(cache)
    os.environ["DVC_SITE_CACHE_DIR"] = str(tmp_path_factory.mktemp("dvc-site"))
