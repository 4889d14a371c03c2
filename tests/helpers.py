"""Helpers shared by tests: a real temp git+DVC repo holding this project's pipeline."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

PROJECT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def run(cmd: list[str], cwd: Path, check: bool = True, env: dict[str, str] | None = None,
        timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """Run a command with the venv's bin first on PATH; raise with its output on failure."""
    full_env = dict(os.environ)
    full_env["PATH"] = f"{BIN}{os.pathsep}{full_env.get('PATH', '')}"
    full_env.update(env or {})
    proc = subprocess.run(cmd, cwd=cwd, env=full_env, text=True, capture_output=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} exited {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
        )
    return proc


def git(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run(["git", "-c", "user.name=test", "-c", "user.email=test@example.com", *args], repo, check)


def dvc(repo: Path, *args: str, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return run([str(BIN / "dvc"), *args], repo, check, timeout=timeout)


def deep_update(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            deep_update(base[k], v)
        else:
            base[k] = v
    return base


def make_project_repo(root: Path, params: dict[str, Any] | None = None,
                      stages: list[str] | None = None) -> Path:
    """A git repo with DVC initialised, this project's stages, dvc.yaml and params.yaml
    (deep-updated with `params`), a local-directory remote, and one commit.

    `stages` keeps only the named stages of dvc.yaml (the rest are removed)."""
    repo = root / "repo"
    repo.mkdir()
    shutil.copytree(PROJECT / "stages", repo / "stages", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(PROJECT / "src", repo / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    pipeline = yaml.safe_load((PROJECT / "dvc.yaml").read_text())
    if stages is not None:
        pipeline["stages"] = {k: v for k, v in pipeline["stages"].items() if k in stages}
        pipeline.pop("plots", None)  # top-level plots may name outputs of dropped stages
    (repo / "dvc.yaml").write_text(yaml.safe_dump(pipeline, sort_keys=False))
    base_params = yaml.safe_load((PROJECT / "params.yaml").read_text())
    (repo / "params.yaml").write_text(yaml.safe_dump(deep_update(base_params, params or {}), sort_keys=False))
    shutil.copy(PROJECT / ".gitignore", repo / ".gitignore")
    (repo / "data" / "external").mkdir(parents=True)  # a declared dependency of three stages
    shutil.copy(PROJECT / "data" / "external" / "README.md", repo / "data" / "external" / "README.md")
    git(repo, "init", "-q", "-b", "main")
    dvc(repo, "init", "-q")
    dvc(repo, "config", "core.autostage", "true")
    remote = root / "remote"
    remote.mkdir()
    dvc(repo, "remote", "add", "-d", "local", str(remote))
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "init")
    return repo
