"""Checkpoint integrity: sha256 of every parameter file, and a sanity check of params and stats.

* A model directory's ``pnpjax.json`` holds ``params_sha256``: ``{relative path: sha256 hex}`` of
  every file under ``params/``. ``checkpoint.load`` verifies it before orbax reads a byte, so a
  single flipped bit anywhere in ``params/`` is refused (orbax itself would restore most such
  flips silently, as NaN or as wrong finite weights).
* A training workdir keeps ``ckpt_sha256.json``: ``{step: {path: sha256}}`` of each orbax step
  under ``ckpt/``, written right after the step is committed. Loading or resuming verifies the
  newest step that has a record; a step without one (the run was killed between orbax's commit
  and the record) is skipped as unverified, so a resume starts from the step before it.
* ``check_stats`` / ``check_params``: the standardisation statistics have the model's shapes, are
  finite, and the stds are > 0; every parameter is finite and of plausible size (|w| <= 1e6).
  Save, load and export all refuse a solver that fails them.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from pathlib import Path
from typing import Any

import numpy as np

from pnpjax import fsio
from pnpjax.errors import CheckpointError

HASH_KEY = "params_sha256"
STEP_HASH_FILE = "ckpt_sha256.json"
MAX_PARAM_FILES = 10_000
MAX_PARAM_ABS = 1e6
_HEX64 = re.compile(r"[0-9a-f]{64}")
_CHUNK = 1 << 20


def _file_sha256(path: Path) -> str:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise CheckpointError(f"{path} is not a regular file")
        h = hashlib.sha256()
        while chunk := os.read(fd, _CHUNK):
            h.update(chunk)
        return h.hexdigest()
    finally:
        os.close(fd)


def _tree_files(root: Path) -> list[str]:
    """Relative paths of the regular files under root; anything else (FIFO, socket, link out) is an error."""
    out: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in dirnames:
            p = Path(dirpath) / name
            if p.is_symlink():
                raise CheckpointError(f"{p} is a symbolic link; checkpoints hold plain files")
        for name in filenames:
            p = Path(dirpath) / name
            st = os.lstat(p)
            if not stat.S_ISREG(st.st_mode):
                raise CheckpointError(f"{p} is not a regular file")
            out.append(p.relative_to(root).as_posix())
            if len(out) > MAX_PARAM_FILES:
                raise CheckpointError(f"{root} holds more than {MAX_PARAM_FILES} files")
    return sorted(out)


def hash_tree(root: str | os.PathLike) -> dict[str, str]:
    """{relative path: sha256 hex} of every regular file under root, sorted by path."""
    root = Path(root)
    try:
        return {rel: _file_sha256(root / rel) for rel in _tree_files(root)}
    except OSError as e:
        if isinstance(e, CheckpointError):
            raise
        raise CheckpointError(f"cannot read {root}: {e.strerror or e}") from None


def check_manifest(manifest: Any, where: str) -> dict[str, str]:
    """A hash manifest must be {relative path: 64 lowercase hex}, with paths that stay inside."""
    if not isinstance(manifest, dict) or not manifest or len(manifest) > MAX_PARAM_FILES:
        raise CheckpointError(f"{where}: '{HASH_KEY}' must be an object of file hashes")
    for rel, h in manifest.items():
        parts = rel.split("/") if isinstance(rel, str) else []
        if not parts or any(p in ("", ".", "..") for p in parts) or rel.startswith("/") or "\\" in rel or "\0" in rel:
            raise CheckpointError(f"{where}: '{HASH_KEY}' lists a bad path {str(rel)[:80]!r}")
        if not isinstance(h, str) or not _HEX64.fullmatch(h):
            raise CheckpointError(f"{where}: '{HASH_KEY}' entry {rel[:80]!r} is not a sha256 hex digest")
    return manifest


def verify_tree(root: Path, manifest: Any, where: str) -> None:
    """Raise CheckpointError unless the files under root are exactly those of manifest, with its hashes."""
    manifest = check_manifest(manifest, where)
    if not root.is_dir() or root.is_symlink():
        raise CheckpointError(f"{where}: {root.name}/ is missing or not a directory")
    files = _tree_files(root)
    missing = sorted(set(manifest) - set(files))
    extra = sorted(set(files) - set(manifest))
    if missing:
        raise CheckpointError(
            f"{where}: {root.name}/{missing[0]} is missing ({len(missing)} file(s) listed in its sha256 manifest)"
        )
    if extra:
        raise CheckpointError(f"{where}: {root.name}/{extra[0]} is not in its sha256 manifest (added or renamed)")
    for rel in files:
        if _file_sha256(root / rel) != manifest[rel]:
            raise CheckpointError(f"{where}: {root.name}/{rel} does not match its sha256 (corrupt or modified)")


# --- training checkpoints ------------------------------------------------------------------------


def _read_step_hashes(workdir: Path) -> dict[str, Any]:
    f = workdir / STEP_HASH_FILE
    if not f.exists():
        return {}
    d = fsio.read_json(f, "step hashes", 64 * fsio.MiB, CheckpointError)
    if not isinstance(d, dict):
        raise CheckpointError(f"{f} is not an object of step hashes")
    return d


def record_step(workdir: Path, step: int) -> None:
    """Hash ckpt/<step>/ into workdir/ckpt_sha256.json (atomically); drop records of deleted steps."""
    ckpt = workdir / "ckpt"
    d = {k: v for k, v in _read_step_hashes(workdir).items() if (ckpt / k).is_dir()}
    d[str(step)] = hash_tree(ckpt / str(step))
    text = json.dumps(d, indent=0, sort_keys=True)
    fsio.atomic_write(workdir / STEP_HASH_FILE, lambda tmp: Path(tmp).write_text(text), CheckpointError)


def verified_step(workdir: Path, steps: list[int]) -> int | None:
    """The newest of `steps` (orbax's committed steps) that has a hash record, verified; None if none has one."""
    records = _read_step_hashes(workdir)
    for step in sorted(steps, reverse=True):
        if str(step) in records:
            verify_tree(workdir / "ckpt" / str(step), records[str(step)], f"{workdir} step {step}")
            return step
    return None


# --- sanity of what a checkpoint holds -------------------------------------------------------------


def check_stats(
    stats: Any, num_points: int, out_dim: int, where: str, in_dim: int | None = None, roll: bool = False
) -> None:
    """Shapes (2K,) (or in_dim, see model.input_dim) for x, (D,) for y, (4,) for q_ref, (K,) for
    roll_weights (required if roll, i.e. model.roll != 'none', with a non-zero norm); finite; stds > 0."""
    get = stats.get if isinstance(stats, dict) else lambda k, default=None: getattr(stats, k, default)
    in_dim = 2 * num_points if in_dim is None else in_dim
    want = {
        "x_mean": in_dim,
        "x_std": in_dim,
        "y_mean": out_dim,
        "y_std": out_dim,
        "q_ref": 4,
        "roll_weights": num_points,
    }
    for name, n in want.items():
        v = get(name, None)
        if v is None:
            if name == "q_ref" or (name == "roll_weights" and not roll):
                continue
            raise CheckpointError(f"{where}: stats.{name} is missing")
        try:
            a = np.asarray(v, dtype=np.float64)
        except (TypeError, ValueError, OverflowError):
            raise CheckpointError(f"{where}: stats.{name} must be a list of numbers") from None
        if isinstance(v, list) and not all(isinstance(e, (int, float)) and not isinstance(e, bool) for e in v):
            raise CheckpointError(f"{where}: stats.{name} must be a list of numbers")
        if a.shape != (n,):
            raise CheckpointError(f"{where}: stats.{name} has shape {a.shape}, expected ({n},)")
        if not np.all(np.isfinite(a)) or np.any(np.abs(a) > 1e12):
            raise CheckpointError(f"{where}: stats.{name} holds non-finite (NaN, inf) or absurd values")
        if name == "roll_weights" and not np.linalg.norm(a) > 1e-6:
            raise CheckpointError(f"{where}: stats.roll_weights must not be all zero")
        if name.endswith("_std") and not np.all(a > 0):
            raise CheckpointError(
                f"{where}: stats.{name} must be > 0 everywhere (a zero standard deviation or less: {a.min():g})"
            )


def check_params(params: Any, where: str) -> None:
    import jax

    for path, leaf in jax.tree_util.tree_leaves_with_path(params):
        a = np.asarray(leaf)
        if not np.all(np.isfinite(a)):
            raise CheckpointError(f"{where}: parameter {jax.tree_util.keystr(path)} is non-finite (NaN or inf)")
        if a.size and np.abs(a).max() > MAX_PARAM_ABS:
            raise CheckpointError(
                f"{where}: parameter {jax.tree_util.keystr(path)} holds |w| = {np.abs(a).max():g}, "
                f"beyond the plausible {MAX_PARAM_ABS:g}"
            )


def check_solver(solver: Any, where: str = "checkpoint") -> None:
    """Stats and params of a pnpjax Solver (see module docstring)."""
    from pnpjax import model

    check_stats(
        solver.stats,
        solver.layout.num_points,
        solver.config.model.out_dim,
        where,
        model.input_dim(solver.config.model, solver.layout.num_points),
        roll=solver.config.model.roll != "none",
    )
    check_params(solver.params, where)
