"""LLM backends behind one interface (`base.Backend`) and the crash-safe response cache."""
