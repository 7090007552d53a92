"""experiments/profile_tests.py reads the logs tests/conftest.py writes and sums them right."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "experiments" / "profile_tests.py"


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=60)


def _rows(out: str, header: str) -> dict[str, list[str]]:
    """The rows of the table under `## header`, by first cell."""
    lines = out.split(f"## {header}\n\n", 1)[1].split("\n\n", 1)[0].splitlines()[2:]
    return {r.strip("|").split(" | ")[0].strip(): [c.strip() for c in r.strip("|").split(" | ")[1:]] for r in lines}


def test_sums_by_file_phase_and_program(tmp_path):
    cpu = tmp_path / "cpu"
    cpu.write_text("tests/test_a.py::t1\t1.5\ntests/test_a.py::t2[x]\t2.25\ntests/test_b.py::t\t10\n\n")
    comp = tmp_path / "compile"
    lines = [
        # t1 compiles f for one shape, then for the same shapes again (another static argument).
        ("tests/test_a.py::t1", "shapes", "jit(f)", "0", "(float32[3],)"),
        ("tests/test_a.py::t1", "tracing", "jit(f)", "0.5"),
        ("tests/test_a.py::t1", "XLA compilation of", "jit(f)", "1.0"),
        ("tests/test_a.py::t1", "shapes", "jit(f)", "0", "(float32[3],)"),
        ("tests/test_a.py::t1", "XLA compilation of", "jit(f)", "2.0"),
        # the other file: the same program for other shapes, and a name a table must not break on
        ("tests/test_b.py::t", "shapes", "jit(f)", "0", "(float32[4],)"),
        ("tests/test_b.py::t", "XLA compilation of", "jit(f)", "4.0"),
        ("tests/test_b.py::t", "jaxpr to MLIR module conversion", "jit(a|b)", "0.25"),
        ("tests/test_b.py::t", "XLA compilation of", "jit(a|b)", "0.5"),
        # g read from the persistent cache, then compiled for the same shapes (another static argument)
        ("tests/test_b.py::t", "shapes", "jit(g)", "0", "(int32[],)"),
        ("tests/test_b.py::t", "cache hit", "jit(g)", "0.125"),
        ("tests/test_b.py::t", "shapes", "jit(g)", "0", "(int32[],)"),
        ("tests/test_b.py::t", "XLA compilation of", "jit(g)", "1.0"),
    ]
    comp.write_text("".join("\t".join(line) + "\n" for line in lines))
    warm = tmp_path / "warm"
    warm.write_text("tests/test_a.py::t1\t1\ntests/test_b.py::t\t4\n")
    p = _run("--cpu-log", str(cpu), "--compile-log", str(comp), "--warm-cpu-log", str(warm), "--workers", "2")
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("3 tests, 14 CPU seconds")
    assert "5 XLA compilations 8 s; 1 programs were read from the compilation cache in 0 s" in p.stdout
    assert "5 CPU seconds, so at least 2 s of wall time on 2 workers with every XLA" in p.stdout  # 2.5: to even
    files = _rows(p.stdout, "CPU seconds by test file")
    assert list(files) == ["tests/test_b.py", "tests/test_a.py"]  # most CPU first
    assert files["tests/test_b.py"] == ["10.0", "5.5"] and files["tests/test_a.py"] == ["3.8", "3.0"]
    phases = _rows(p.stdout, "Compilation by phase")
    assert phases["tracing"] == ["1", "0.5"] and phases["XLA compilation of"] == ["5", "8.5"]
    assert phases["cache hit"] == ["1", "0.1"]
    programs = _rows(p.stdout, "Programs by XLA compilation time")
    assert programs["`jit(f)`"] == ["3", "1", "7.0"]  # one of its 3 compilations was for shapes seen before
    assert programs["`jit(a\\|b)`"] == ["1", "0", "0.5"]
    assert programs["`jit(g)`"] == ["1", "1", "1.0"]  # its shapes were read from the cache before


def test_a_bad_log_is_one_line_exit_2(tmp_path):
    cases = {
        "three fields\tx\ty\n": "expected 2 tab-separated fields",
        "t\tnan\n": "not a number of seconds",
        "t\t-1\n": "not a number of seconds",
        "t\t1e999\n": "not a number of seconds",
        "": "no test in the log",
    }
    for text, message in cases.items():
        log = tmp_path / "cpu"
        log.write_text(text)
        p = _run("--cpu-log", str(log))
        assert p.returncode == 2 and p.stdout == "", (text, p.stdout)
        assert p.stderr.count("\n") == 1 and message in p.stderr, (text, p.stderr)
    comp = tmp_path / "compile"
    comp.write_text("t\tlinking\tjit(f)\t1\n")
    (tmp_path / "cpu").write_text("t\t1\n")
    p = _run("--cpu-log", str(tmp_path / "cpu"), "--compile-log", str(comp))
    assert p.returncode == 2 and "unknown phase linking" in p.stderr and p.stderr.count("\n") == 1
    p = _run("--cpu-log", str(tmp_path / "missing"))
    assert p.returncode == 2 and p.stderr.startswith("profile_tests.py: error:") and p.stderr.count("\n") == 1


@pytest.mark.slow  # two pytest runs in subprocesses
def test_reads_the_logs_conftest_writes(tmp_path):
    """Real pytest runs with both logs on: the first with an empty compilation cache compiles, the
    second reads every program from the cache (conftest caches every program). Every test run is
    in the CPU log, and the compile log's programs were compiled (or read) for that test."""
    node = "tests/test_geometry.py::test_quat_matrix_round_trip"

    def run(name: str) -> dict[str, list[str]]:
        env = dict(os.environ)
        env.update(
            PNPJAX_TEST_CPU_LOG=str(tmp_path / f"{name}.cpu"),
            PNPJAX_TEST_COMPILE_LOG=str(tmp_path / f"{name}.compile"),
            JAX_COMPILATION_CACHE_DIR=str(tmp_path / "cache"),
        )
        r = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", node],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
        p = _run("--cpu-log", str(tmp_path / f"{name}.cpu"), "--compile-log", str(tmp_path / f"{name}.compile"))
        assert p.returncode == 0, p.stderr
        assert p.stdout.startswith("1 tests, ")
        assert list(_rows(p.stdout, "CPU seconds by test file")) == ["tests/test_geometry.py"]
        logged = {line.split("\t")[0] for line in (tmp_path / f"{name}.compile").read_text().splitlines()}
        assert logged == {node}
        return {k: int(v[0].replace(",", "")) for k, v in _rows(p.stdout, "Compilation by phase").items()}

    cold = run("cold")
    assert cold["XLA compilation of"] > 0 and cold["cache hit"] == 0
    warm = run("warm")
    assert warm["XLA compilation of"] == 0 and warm["cache hit"] == cold["XLA compilation of"]
