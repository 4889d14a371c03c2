"""tripleforge: versioned training data for code embedding and reranker models."""

__version__ = "0.1.0"
