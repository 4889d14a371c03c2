"""The C modules (see each file's head); everything else is in pyproject.toml. The README's setup
already needs a C compiler (llama-cpp-python builds from source)."""

from setuptools import Extension, setup

_SHARED = ["src/tripleforge/_buffers.h"]

setup(
    ext_modules=[
        Extension("tripleforge._jsonl", ["src/tripleforge/_jsonl.c"], depends=_SHARED, extra_compile_args=["-O2"]),
        Extension("tripleforge._whitespace", ["src/tripleforge/_whitespace.c"], depends=_SHARED,
                  extra_compile_args=["-O2", "-pthread"], extra_link_args=["-pthread"]),
    ],
)
