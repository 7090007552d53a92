"""Multi-process training through `jax.distributed` (one process per host, or several per host).

Call `initialize` before anything touches a JAX backend (importing most pnpjax modules is fine;
creating an array is not). Then `train.train_and_evaluate` runs one program over the devices of
every process: the batch is split over them (see `train.sample_batch` and `Config.data_shards`),
parameters are replicated, and process 0 alone writes files.
"""

from __future__ import annotations

import jax

from pnpjax.errors import ConfigError


def initialize(coordinator: str, num_processes: int | None = None, process_id: int | None = None) -> None:
    """Join a multi-process run (`jax.distributed`) before any computation.

    coordinator: "HOST:PORT" of process 0 (then num_processes and process_id are needed), or
    "auto" to let JAX read them from the cluster (SLURM, Open MPI, Kubernetes, TPU pods). CPU
    devices talk through gloo; GPUs through NCCL (JAX's default).
    """
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    if coordinator == "auto":
        jax.distributed.initialize()
        return
    if num_processes is None or process_id is None:
        raise ConfigError("--coordinator HOST:PORT needs --num-processes and --process-id")
    if not 0 <= process_id < num_processes:
        raise ConfigError(f"--process-id must be in [0, {num_processes}), got {process_id}")
    jax.distributed.initialize(
        coordinator_address=coordinator, num_processes=num_processes, process_id=process_id, initialization_timeout=120
    )
