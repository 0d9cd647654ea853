"""Starting JAX on one process or many: explicit coordinator flags, SLURM, a TPU VM slice, or alone."""

import os

from absl import logging
import jax
import portpicker


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, num_cpu_devices: int | None = None) -> None:
  """Must run before any other JAX call. Joins the job described by the flags or the environment.

  A lone process also starts a local coordinator: Orbax's preemption handling (SIGTERM -> checkpoint)
  needs the distributed runtime even then.
  """
  if num_cpu_devices:
    jax.config.update("jax_num_cpu_devices", num_cpu_devices)
  timeouts = {"initialization_timeout": 120, "heartbeat_timeout_seconds": 60}
  if coordinator_address:
    port = coordinator_address.rsplit(":", 1)[1]
    # Bind where we were told to, not on every interface.
    bind = f"{coordinator_address.rsplit(':', 1)[0]}:{port}" if process_id == 0 else None
    jax.distributed.initialize(coordinator_address, num_processes, process_id,
                               coordinator_bind_address=bind, **timeouts)
  elif int(os.environ.get("SLURM_NTASKS", "1")) > 1 or "," in os.environ.get("TPU_WORKER_HOSTNAMES", ""):
    jax.distributed.initialize(**timeouts)  # auto-detects SLURM (srun) and TPU VM slices
  else:
    address = f"127.0.0.1:{portpicker.pick_unused_port()}"
    jax.distributed.initialize(address, 1, 0, coordinator_bind_address=address, **timeouts)
  logging.info("process %d of %d, %d local devices", jax.process_index(), jax.process_count(),
               jax.local_device_count())
