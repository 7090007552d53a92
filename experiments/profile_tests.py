"""Where the test suite's time goes: a summary of the logs tests/conftest.py writes.

    PNPJAX_TEST_CPU_LOG=cold.cpu PNPJAX_TEST_COMPILE_LOG=cold.compile make test   # empty .cache/jax
    PNPJAX_TEST_CPU_LOG=warm.cpu make test                                         # again: cache full
    python experiments/profile_tests.py --cpu-log cold.cpu --compile-log cold.compile --warm-cpu-log warm.cpu

Prints, as markdown: the CPU seconds of the run (each test's process and the subprocesses it
waited for) by test file; the in-process compilations by phase (JAX's log_compiles: tracing,
lowering to MLIR, XLA compilation, or a read from the persistent cache instead) and by program,
with how many of a program's compilations had argument shapes it was already compiled or read for
in the run (other static arguments: another program; or the other worker at the same time); and, given
the CPU log of a second run with the compilation cache filled, that run's CPU seconds. The second
run's CPU seconds over the number of workers is what a run costs with every XLA compilation read
from the cache (it still traces and lowers each program, and the few tests with a cache of their
own compile): a floor that no saving in XLA compilation gets under on this machine. Phase times
are JAX's own timings, i.e. wall seconds of the test processes (their CPU seconds on a loaded
machine are fewer).
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter, defaultdict
from pathlib import Path

import _repo  # noqa: F401  (repo root on sys.path: experiments.lib)
from experiments.lib.report import md_table
from pnpjax.textsafe import one_line

PHASES = ("tracing", "jaxpr to MLIR module conversion", "XLA compilation of", "cache hit")


class LogError(ValueError):
    """A log line that is not what tests/conftest.py writes."""


def _fields(path: Path, n: tuple[int, ...]):
    """(line number, tab-separated fields) of each non-empty line, checking the field count."""
    with open(path, encoding="utf-8", errors="replace") as f:
        for i, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line:
                continue
            parts = line.split("\t")
            if len(parts) not in n:
                raise LogError(
                    f"{path}:{i}: expected {' or '.join(map(str, n))} tab-separated fields, got {len(parts)}"
                )
            yield i, parts


def _seconds(path: Path, i: int, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise LogError(f"{path}:{i}: not a number of seconds: {one_line(text)[:40]}") from None
    if not value >= 0 or value == float("inf"):
        raise LogError(f"{path}:{i}: not a number of seconds: {one_line(text)[:40]}")
    return value


def read_cpu_log(path: Path) -> dict[str, float]:
    """{test node id: CPU seconds} (a test logged twice, e.g. a rerun, is summed)."""
    out: dict[str, float] = defaultdict(float)
    for i, (nodeid, sec) in _fields(path, (2,)):
        out[nodeid] += _seconds(path, i, sec)
    return dict(out)


def read_compile_log(path: Path) -> list[dict]:
    """One dict per logged phase: test, phase, program name, seconds, and the argument shapes the
    same test last logged for that program (the "shapes" line JAX logs before compiling)."""
    shapes: dict[tuple[str, str], str] = {}
    rows = []
    for i, parts in _fields(path, (4, 5)):
        nodeid, phase, name, sec = parts[:4]
        if phase == "shapes":
            shapes[(nodeid, name)] = parts[4] if len(parts) == 5 else ""
            continue
        if phase not in PHASES:
            raise LogError(f"{path}:{i}: unknown phase {one_line(phase)[:40]}")
        rows.append(
            {
                "test": nodeid,
                "phase": phase,
                "name": name,
                "seconds": _seconds(path, i, sec),
                "shapes": shapes.get((nodeid, name), ""),
            }
        )
    return rows


def test_file(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


def summarise(cpu: dict[str, float], compiles: list[dict], warm: dict[str, float] | None, workers: int) -> dict:
    """The numbers behind the report."""
    by_file: dict[str, float] = defaultdict(float)
    for nodeid, sec in cpu.items():
        by_file[test_file(nodeid)] += sec
    phases = {p: [0, 0.0] for p in PHASES}
    programs: dict[str, dict] = {}
    xla_by_file: dict[str, float] = defaultdict(float)
    seen: Counter = Counter()
    for r in compiles:
        phases[r["phase"]][0] += 1
        phases[r["phase"]][1] += r["seconds"]
        key = (r["name"], r["shapes"])
        if r["phase"] == "cache hit":  # read, not compiled: another test compiled it first
            seen[key] += 1
        if r["phase"] != "XLA compilation of":
            continue
        xla_by_file[test_file(r["test"])] += r["seconds"]
        p = programs.setdefault(r["name"], {"compiles": 0, "seconds": 0.0, "again": 0})
        p["compiles"] += 1
        p["seconds"] += r["seconds"]
        p["again"] += bool(r["shapes"]) and seen[key] > 0
        seen[key] += 1
    total = sum(cpu.values())
    out = {
        "workers": workers,
        "cpu_seconds": total,
        "tests": len(cpu),
        "by_file": dict(sorted(by_file.items(), key=lambda kv: -kv[1])),
        "xla_by_file": dict(xla_by_file),
        "phases": {p: {"count": c, "seconds": s} for p, (c, s) in phases.items()},
        "programs": dict(sorted(programs.items(), key=lambda kv: -kv[1]["seconds"])),
    }
    if warm is not None:
        out["warm_cpu_seconds"] = sum(warm.values())
        out["warm_floor_wall_seconds"] = out["warm_cpu_seconds"] / workers
    return out


def report(s: dict, top: int) -> str:
    lines = []
    compiled = sum(v["seconds"] for k, v in s["phases"].items() if k != "cache hit")
    xla, hits = s["phases"]["XLA compilation of"], s["phases"]["cache hit"]
    lines.append(
        f"{s['tests']} tests, {s['cpu_seconds']:,.0f} CPU seconds (subprocesses included). In the test processes, "
        f"compilation took {compiled:,.0f} s of wall time (JAX's timings): {xla['count']:,} XLA compilations "
        f"{xla['seconds']:,.0f} s; {hits['count']:,} programs were read from the compilation cache in {hits['seconds']:,.0f} s."
    )
    if "warm_cpu_seconds" in s:
        lines.append(
            f"The same suite with the compilation cache filled: {s['warm_cpu_seconds']:,.0f} CPU seconds, so at "
            f"least {s['warm_floor_wall_seconds']:,.0f} s of wall time on {s['workers']} workers with every XLA "
            "compilation read from the cache."
        )
    lines += ["", "## CPU seconds by test file", ""]
    rows = [[f, f"{sec:,.1f}", f"{s['xla_by_file'].get(f, 0.0):,.1f}"] for f, sec in list(s["by_file"].items())[:top]]
    lines.append(md_table(["file", "CPU s", "XLA compilation in the test process (wall s)"], rows, ["", ":", ":"]))
    lines += ["", "## Compilation by phase", ""]
    rows = [[p, f"{v['count']:,}", f"{v['seconds']:,.1f}"] for p, v in s["phases"].items()]
    lines.append(md_table(["phase", "count", "seconds"], rows, ["", ":", ":"]))
    lines += ["", "## Programs by XLA compilation time", ""]
    rows = [
        [f"`{one_line(name)[:60]}`", f"{p['compiles']:,}", f"{p['again']:,}", f"{p['seconds']:,.1f}"]
        for name, p in list(s["programs"].items())[:top]
    ]
    lines.append(
        md_table(
            ["program", "compilations", "of them for shapes already compiled", "wall s"], rows, ["", ":", ":", ":"]
        )
    )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cpu-log", required=True, type=Path, help="PNPJAX_TEST_CPU_LOG of a run")
    p.add_argument("--compile-log", type=Path, help="PNPJAX_TEST_COMPILE_LOG of the same run")
    p.add_argument("--warm-cpu-log", type=Path, help="PNPJAX_TEST_CPU_LOG of a second run, cache filled")
    p.add_argument("--workers", type=int, default=2, help="pytest-xdist workers of the runs (make test: 2)")
    p.add_argument("--top", type=int, default=15, help="rows per table")
    a = p.parse_args(argv)
    if a.workers < 1 or a.top < 1:
        p.error("--workers and --top must be at least 1")
    try:
        cpu = read_cpu_log(a.cpu_log)
        compiles = read_compile_log(a.compile_log) if a.compile_log else []
        warm = read_cpu_log(a.warm_cpu_log) if a.warm_cpu_log else None
    except (OSError, LogError) as e:
        print(f"profile_tests.py: error: {one_line(str(e))}", file=sys.stderr)
        return 2
    if not cpu:
        print(f"profile_tests.py: error: {one_line(str(a.cpu_log))}: no test in the log", file=sys.stderr)
        return 2
    print(report(summarise(cpu, compiles, warm, a.workers), a.top), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
