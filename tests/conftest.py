"""Shared pytest configuration and fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from experiments.lib import paths

REPO = Path(__file__).resolve().parents[1]

# Compilation dominates the suite's time on a 2-core CPU: share compiled programs between
# tests, runs and the subprocesses they start (inherited through the environment). Every program
# is cached, however quick to compile: the many small ones of eager JAX code (one per primitive
# and shape) cost a test run more than loading them (PNPJAX_TEST_CPU_LOG below: a second `make
# test-fast` takes about a sixth of the first one's CPU).
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(REPO / ".cache" / "jax"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")


# CLI subprocesses import the pnpjax of this checkout (not whichever one is pip-installed).
os.environ["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])

SHARED = paths.shared_dir()  # ../shared beside the repo, or $PNPJAX_SHARED; tests needing it skip when absent
SEED_MD = SHARED / "SEED.md"
SEED_MODELS = SHARED / "seed-models"


def pytest_configure(config: pytest.Config) -> None:
    """Register project markers."""
    config.addinivalue_line("markers", "node: needs Node.js and web/node_modules (run `cd web && npm ci`)")


# `make test-fast` runs `-m "not slow and not node and not chromium"`: the unit tests. A test is
# slow when it trains, runs a script or a subprocess end to end, or sits in a module that does.
SLOW_FIXTURES = {"smoke_workdir", "smoke_checkpoint", "error_runs", "cli_outputs"}
SLOW_MODULES = {
    "test_experiments",
    "test_bench",
    "test_faces",
    "test_web",
    "test_train",
    "test_multi",
    "test_readme",
    "test_tutorial",
    "test_docs",
    "test_distributed",
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        module = item.module.__name__.rsplit(".", 1)[-1] if getattr(item, "module", None) else ""
        if module in SLOW_MODULES or SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def x64():
    """Run a test in float64 (jax_enable_x64), restoring the previous setting afterwards."""
    import jax

    previous = bool(jax.config.jax_enable_x64)
    jax.config.update("jax_enable_x64", True)
    try:
        yield
    finally:
        jax.config.update("jax_enable_x64", previous)


@pytest.fixture(scope="session")
def seed_model_dir() -> Path:
    """The original published blazeface6 TF.js model directory (skip if the shared folder is absent)."""
    d = SEED_MODELS / "blazeface6"
    if not (d / "model.json").is_file():
        pytest.skip(f"original model not found at {d}")
    return d


@pytest.fixture(scope="session")
def smoke_workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A training workdir of the `smoke` config, trained once per session (its solver is in model/)."""
    from pnpjax import config, train

    workdir = tmp_path_factory.mktemp("smoke") / "run"
    train.train_and_evaluate(config.get_config("smoke"), workdir, progress=False, print_fn=lambda *_: None)
    assert (workdir / "model" / "pnpjax.json").is_file()
    return workdir


# PNPJAX_TEST_CPU_LOG=FILE: append each test's CPU seconds (this process and the subprocesses it
# waited for) as "nodeid<TAB>seconds" lines; where the suite's time goes on a loaded machine.
_CPU_LOG = os.environ.get("PNPJAX_TEST_CPU_LOG")
if _CPU_LOG:
    import resource
    import time

    def _cpu_seconds() -> float:
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        return time.process_time() + kids.ru_utime + kids.ru_stime

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(item, nextitem):
        start = _cpu_seconds()
        yield
        with open(_CPU_LOG, "a") as f:
            f.write(f"{item.nodeid}\t{_cpu_seconds() - start:.2f}\n")


# PNPJAX_TEST_COMPILE_LOG=FILE: append each compilation in this process (JAX's own log_compiles
# timings: tracing, lowering to MLIR, XLA compilation) as "nodeid<TAB>phase<TAB>name<TAB>seconds"
# lines, each program's argument shapes before them as "nodeid<TAB>shapes<TAB>name<TAB>0<TAB>avals".
# A program read from the persistent cache (JAX logs "XLA compilation" for it too, timing the read)
# is logged as phase "cache hit" instead. With an empty JAX_COMPILATION_CACHE_DIR: which programs
# a cold run pays for. Subprocesses are not logged (experiments/profile_tests.py sums the logs).
_COMPILE_LOG = os.environ.get("PNPJAX_TEST_COMPILE_LOG")
if _COMPILE_LOG:
    import logging
    import re

    import jax

    _PHASE = re.compile(
        r"Finished (tracing|jaxpr to MLIR module conversion|XLA compilation of) (.+?) (?:for jit )?in ([0-9.e+-]+) sec"
    )
    _current = ["(collection)"]
    _hit = [False]  # the next "XLA compilation of" line is a persistent-cache read

    class _CompileHandler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            message = record.getMessage()
            if message.startswith("Persistent compilation cache hit for "):
                _hit[0] = True
                return
            m = _PHASE.search(message)
            if m:
                phase = m.group(1)
                if phase == "XLA compilation of" and _hit[0]:
                    phase, _hit[0] = "cache hit", False
                line = f"{phase}\t{m.group(2)}\t{m.group(3)}"
            elif message.startswith("Compiling "):  # the program's argument shapes, before its timings
                name, _, shapes = message[len("Compiling ") :].partition(" with global shapes and types ")
                line = f"shapes\t{name}\t0\t{shapes.split('. Argument mapping')[0]}"
            else:
                return
            with open(_COMPILE_LOG, "a") as f:
                f.write(f"{_current[0]}\t{line}\n")

    jax.config.update("jax_log_compiles", True)
    _handler = _CompileHandler(logging.DEBUG)
    for _name in ("jax._src.dispatch", "jax._src.interpreters.pxla", "jax._src.compiler", "jax._src.pjit"):
        logging.getLogger(_name).addHandler(_handler)

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logstart(nodeid, location):
        _current[0] = nodeid
