"""The CLI's compiled-program cache: where it is, when it is off, that an unsafe directory is
refused, that a second run reuses the first one's program with the same output, and that a
corrupt entry costs a recompile and one line, not the run."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pnpjax import cli

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINT = ROOT / "checkpoints" / "blazeface6"


def test_where_the_cache_is(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    home = tmp_path / "home" / ".cache" / "pnpjax" / "jax"
    assert cli.compile_cache_dir({}) == home
    assert cli.compile_cache_dir({"XDG_CACHE_HOME": "/x/c"}) == Path("/x/c/pnpjax/jax")
    assert cli.compile_cache_dir({"XDG_CACHE_HOME": "relative/c"}) == home  # the XDG spec ignores it
    assert cli.compile_cache_dir({"PNPJAX_CACHE_DIR": "/p", "XDG_CACHE_HOME": "/x"}) == Path("/p")
    assert cli.compile_cache_dir({"PNPJAX_CACHE_DIR": "~/c"}) == tmp_path / "home" / "c"
    assert cli.compile_cache_dir({"PNPJAX_CACHE_DIR": ""}) is None  # off
    assert cli.compile_cache_dir({"JAX_COMPILATION_CACHE_DIR": "/j", "PNPJAX_CACHE_DIR": "/p"}) is None  # JAX's own
    assert cli.compile_cache_dir({"JAX_COMPILATION_CACHE_DIR": ""}) is None  # JAX's caching turned off by its user
    assert cli.compile_cache_dir({"PNPJAX_CACHE_DIR": "~no-such-user-pnpjax/c"}) is None  # no such home: no crash


def test_an_unsafe_directory_is_refused_in_one_line(tmp_path, capsys):
    import jax

    before = jax.config.jax_compilation_cache_dir
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    a_file = tmp_path / "file"
    a_file.write_text("x")
    open_parent = tmp_path / "open"
    open_parent.mkdir()
    open_parent.chmod(0o777)  # anyone could swap the cache directory inside it for theirs
    sticky = tmp_path / "sticky"
    sticky.mkdir()
    sticky.chmod(0o1777)  # like /tmp: only the owner can rename or delete what is in it
    cases = {
        shared: "writable by other users",
        a_file: "not a directory",
        a_file / "sub": "cannot create it",
        open_parent / "cache": "above it is writable by other users",
    }
    if hasattr(os, "getuid") and os.getuid() == 0:  # root can make a directory another user's
        other = tmp_path / "other"
        other.mkdir(mode=0o700)
        os.chown(other, 65534, -1)
        cases[other] = "owned by another user"
    for d, why in cases.items():
        assert cli.enable_compile_cache({"PNPJAX_CACHE_DIR": str(d)}) is None
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("pnpjax: not caching compiled programs in ") and why in err, err
    assert jax.config.jax_compilation_cache_dir == before  # nothing was turned on
    assert cli._unsafe_cache_dir(sticky / "cache") is None  # a sticky parent is safe
    assert (sticky / "cache").stat().st_mode & 0o777 == 0o700
    # A name with a line break stays on one line.
    assert cli.enable_compile_cache({"PNPJAX_CACHE_DIR": str(a_file / "a\nb")}) is None
    assert capsys.readouterr().err.count("\n") == 1


def test_cache_command_lists_and_clears_only_jax_cache_files(tmp_path, monkeypatch, capsys):
    """`pnpjax cache` prints the directory, its programs and bytes; --clear deletes JAX's cache files
    (name-key-cache, name-key-atime) and nothing else, even where PNPJAX_CACHE_DIR points at a
    directory holding other files."""
    d = tmp_path / "c"
    d.mkdir(mode=0o700)
    key = "0123456789abcdef" * 4
    (d / f"jit__pose_chunk-{key}-cache").write_bytes(b"x" * 100)
    (d / f"jit__pose_chunk-{key}-atime").write_bytes(b"t" * 8)
    (d / f"jit_f-{key[::-1]}-cache").write_bytes(b"y" * 50)
    keep = {"notes.txt": b"mine", f"jit_f-{key[:-1]}-cache": b"short key", ".lockfile": b""}
    for name, data in keep.items():
        (d / name).write_bytes(data)
    (d / f"sub-{key}-cache").mkdir()  # a directory by that name is not a cache file
    monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)
    monkeypatch.setenv("PNPJAX_CACHE_DIR", str(d))
    assert cli.main(["cache"]) == 0
    assert capsys.readouterr().out == f"pnpjax cache: {d}: 2 compiled programs, 158 B (limit 268,435,456 B)\n"
    assert cli.main(["cache", "--clear"]) == 0
    assert capsys.readouterr().out == f"pnpjax cache: removed 2 compiled programs (158 B) from {d}\n"
    assert sorted(p.name for p in d.iterdir()) == sorted([*keep, f"sub-{key}-cache"])
    assert all((d / name).read_bytes() == data for name, data in keep.items())
    assert cli.main(["cache"]) == 0 and ": 0 compiled programs, 0 B" in capsys.readouterr().out
    monkeypatch.setenv("PNPJAX_CACHE_DIR", str(tmp_path / "missing"))
    assert cli.main(["cache", "--clear"]) == 0 and "removed 0 compiled programs" in capsys.readouterr().out
    assert not (tmp_path / "missing").exists()  # looking does not create it
    monkeypatch.setenv("PNPJAX_CACHE_DIR", "")
    assert cli.main(["cache"]) == 0 and "caching is off" in capsys.readouterr().out
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(tmp_path / "j"))
    assert cli.main(["cache"]) == 0 and "JAX_COMPILATION_CACHE_DIR is set" in capsys.readouterr().out


def _env(cache: Path) -> dict[str, str]:
    """This environment with the CLI's cache in `cache` (not the suite's JAX cache, no compile log)."""
    env = {k: v for k, v in os.environ.items() if k not in ("JAX_COMPILATION_CACHE_DIR", "JAX_LOG_COMPILES")}
    env["PNPJAX_CACHE_DIR"] = str(cache)
    return env


def _predict(cache: Path, out: Path, xy: Path, log_compiles: bool = False) -> subprocess.CompletedProcess:
    env = _env(cache)
    if log_compiles:
        env["JAX_LOG_COMPILES"] = "1"
    cmd = [sys.executable, "-m", "pnpjax", "predict", "--checkpoint", str(CHECKPOINT), "--input", str(xy)]
    cmd += ["--output", str(out), "--camera", "hfov=60,640x480", "--refine", "1", "--refine-cost", "ml"]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow  # four CLI runs
def test_a_second_run_reuses_the_compiled_program(tmp_path):
    xy = tmp_path / "xy.npy"
    np.save(xy, np.random.default_rng(0).uniform(250, 390, (7, 6, 2)))
    cache = tmp_path / "cache" / "jax"
    first = _predict(cache, tmp_path / "1.npy", xy, log_compiles=True)
    assert first.returncode == 0, first.stderr
    hit = "Persistent compilation cache hit for 'jit__pose_chunk'"
    assert "XLA compilation of jit(_pose_chunk)" in first.stderr and hit not in first.stderr  # compiled, written
    assert (cache.stat().st_mode & 0o777) == 0o700
    entries = list(cache.glob("jit__pose_chunk-*-cache"))
    assert len(entries) == 1
    second = _predict(cache, tmp_path / "2.npy", xy, log_compiles=True)
    assert second.returncode == 0, second.stderr
    assert hit in second.stderr  # read from the cache
    assert np.load(tmp_path / "2.npy").tobytes() == np.load(tmp_path / "1.npy").tobytes()
    # A corrupt entry: the program is compiled again, the run says so in one line and succeeds.
    for garbage in (entries[0].read_bytes()[:1000], os.urandom(3000)):
        entries[0].write_bytes(garbage)
        third = _predict(cache, tmp_path / "3.npy", xy)
        assert third.returncode == 0, third.stderr
        assert third.stderr.count("\n") == 1, third.stderr
        assert third.stderr.startswith("pnpjax: error reading an entry of the compiled-program cache ")
        assert "`pnpjax cache --clear` empties it, PNPJAX_CACHE_DIR= turns it off" in third.stderr
        assert np.load(tmp_path / "3.npy").tobytes() == np.load(tmp_path / "1.npy").tobytes()
    # What the line says clears it: the next run compiles, writes and then reads a good entry.
    clear = subprocess.run(
        [sys.executable, "-m", "pnpjax", "cache", "--clear"], env=_env(cache), capture_output=True, text=True
    )
    assert clear.returncode == 0 and re.search(r"removed [1-9][\d,]* compiled program", clear.stdout), clear.stdout
    assert not list(cache.glob("jit__pose_chunk-*"))
    for run in (_predict(cache, tmp_path / "4.npy", xy), _predict(cache, tmp_path / "5.npy", xy, log_compiles=True)):
        assert run.returncode == 0 and "error reading" not in run.stderr, run.stderr
    assert hit in run.stderr
