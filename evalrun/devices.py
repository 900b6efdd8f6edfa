"""One GPU per worker process: claim a free device with a lock file, then pin ``CUDA_VISIBLE_DEVICES``.

Hydra's parallel launchers do not give a job a GPU of its own: joblib has no worker id and
dispatches jobs dynamically (``hydra.job.num % n_gpus`` can put two running jobs on one card),
submitit_local gives every job GPU 0, and every job sees every GPU unless
``CUDA_VISIBLE_DEVICES`` is set before CUDA initialises. ``claim_device()`` is called at the
start of a job, before anything touches ``torch.cuda``: the process takes the first device whose
lock file it can ``flock``, waits (polling) while all are taken, and keeps the claim for the rest
of its life. joblib's loky workers run many jobs each; the second call returns the same device.

Why ``flock`` suffices: the lock belongs to the open file, so the kernel releases it when the
process exits, however it dies (SIGKILL and OOM kills included). A lock file left on disk by a
dead process is therefore not a held lock; its recorded PID is only used to name the holder in
errors. Devices are per machine, so the default lock directory is machine-local (the system
temp dir, where ``flock`` always works); a directory on a file system without ``flock`` is
refused with a clear error instead of being trusted. Inside a SLURM job the default directory is
per job: SLURM renumbers the GPUs of every allocation from 0, so "0" names different cards in
different jobs on one node.

Device list: ``devices=`` argument, else ``$EVALRUN_FAKE_DEVICES`` (tests), else
``$CUDA_VISIBLE_DEVICES``, else the GPUs (or MIG instances) that ``nvidia-smi -L`` lists, named
by UUID (CUDA's own device order differs from nvidia-smi's unless CUDA_DEVICE_ORDER=PCI_BUS_ID;
a UUID means the same card to both). torch is never imported here.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from omegaconf import OmegaConf

from evalrun.errors import EvalrunError

log = logging.getLogger(__name__)

FAKE_ENV = "EVALRUN_FAKE_DEVICES"          # "0,1": pretend these devices are visible (tests)
LOCK_DIR_ENV = "EVALRUN_DEVICE_LOCK_DIR"   # where the per-device lock files live
TIMEOUT_ENV = "EVALRUN_DEVICE_TIMEOUT"     # seconds to wait for a free device (default 600)
DEFAULT_TIMEOUT_S = 600.0


class DeviceClaimError(EvalrunError):
    """No device became free in time, or the lock directory cannot hold locks."""


@dataclass(frozen=True)
class Claim:
    device: str        # the CUDA_VISIBLE_DEVICES entry this process now runs on
    lock_path: Path
    visible: tuple[str, ...]  # what was visible before the claim (restored by release())
    previous_env: str | None   # CUDA_VISIBLE_DEVICES before the claim (None: unset)


_claim: Claim | None = None
_lock_fd: int | None = None


# ----------------------------------------------------------------------------- device list
def parse_nvidia_smi(text: str) -> list[str]:
    """UUIDs from ``nvidia-smi -L``: a GPU's MIG instances replace the GPU itself (CUDA sees those)."""
    devices: list[str] = []
    gpu: str | None = None
    migs: list[str] = []
    for line in text.splitlines():
        uuid = re.search(r"\(UUID: ((?:GPU|MIG)-[^)\s]+)\)", line)
        if not uuid:
            continue
        if line.lstrip().startswith("MIG"):
            migs.append(uuid.group(1))
            continue
        if gpu is not None:
            devices += migs or [gpu]
        gpu, migs = uuid.group(1), []
    if gpu is not None:
        devices += migs or [gpu]
    return devices


def _split(value: str) -> list[str]:
    items = [v.strip() for v in value.split(",") if v.strip()]
    # CUDA stops at the first invalid entry; "-1" (or "" / "NoDevFiles") means no device at all.
    out = []
    for item in items:
        if item.startswith("-") or item.lower() == "nodevfiles":
            break
        out.append(item)
    return out


def visible_devices(devices: Sequence[str | int] | None = None) -> list[str]:
    """The devices a claim chooses from, without initialising CUDA (see the module docstring)."""
    if devices is not None:
        return [str(d) for d in devices]
    for env in (FAKE_ENV, "CUDA_VISIBLE_DEVICES"):
        if os.environ.get(env) is not None:
            return _split(os.environ[env])
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    try:
        out = subprocess.run([exe, "-L"], capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        log.debug("nvidia-smi -L failed (%s): no GPUs to claim", exc)
        return []
    return parse_nvidia_smi(out)


# ----------------------------------------------------------------------------- locks
def default_lock_dir() -> Path:
    """``$EVALRUN_DEVICE_LOCK_DIR``, else ``<tmp>/evalrun-devices-<uid>[/slurm-<job id>]``."""
    if os.environ.get(LOCK_DIR_ENV):
        return Path(os.environ[LOCK_DIR_ENV]).expanduser()
    base = Path(tempfile.gettempdir()) / f"evalrun-devices-{os.getuid()}"
    job = os.environ.get("SLURM_JOB_ID")
    return base / f"slurm-{job}" if job else base


def lock_path(lock_dir: Path, device: str) -> Path:
    return Path(lock_dir) / f"device-{re.sub(r'[^A-Za-z0-9_.-]', '_', device)}.lock"


def _try_lock(path: Path) -> int | None:
    """An fd holding an exclusive flock on ``path``, or None if another process holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
            raise DeviceClaimError(f"the file system of {path.parent} does not support flock ({exc.strerror}); "
                                   f"set {LOCK_DIR_ENV} to a local directory (e.g. under /tmp)") from None
        raise
    # Record the holder for error messages only; the lock itself is the flock.
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()} {os.uname().nodename}\n".encode())
    return fd


def _holder(path: Path) -> str:
    try:
        return path.read_text().split()[0]
    except (OSError, IndexError):
        return "?"


def _cuda_already_initialised() -> bool:
    """A partial guard: torch's lazy CUDA state is initialised. ``torch.cuda.is_available()``
    does not set it, yet the CUDA runtime reads CUDA_VISIBLE_DEVICES during that call (checked
    on an H100 with torch 2.11: after is_available(), setting CUDA_VISIBLE_DEVICES=-1 changes
    ``device_count()`` to 0 while tensors still go to the GPU), so callers must still claim first."""
    torch = sys.modules.get("torch")
    try:
        return bool(torch is not None and torch.cuda.is_initialized())
    except Exception:  # noqa: BLE001 - a half-imported torch: nothing initialised yet
        return False


# ----------------------------------------------------------------------------- API
def current_claim() -> Claim | None:
    """This process's claim, if it made one."""
    return _claim


def claim_device(devices: Sequence[str | int] | None = None, *, parallel: bool = True,
                 lock_dir: str | os.PathLike | None = None, timeout_s: float | None = None,
                 poll_s: float = 0.5) -> str | None:
    """Claim one free device for this process and set ``CUDA_VISIBLE_DEVICES`` to it.

    Returns the device (a ``CUDA_VISIBLE_DEVICES`` entry), or None when there is nothing to
    claim: no device is visible, or one device is visible and ``parallel`` is false (jobs run
    one after another in this process, e.g. Hydra's basic launcher). A process that already
    holds a claim gets the same device back. While every device is held by another live process
    it polls every ``poll_s`` seconds, up to ``timeout_s`` (default ``$EVALRUN_DEVICE_TIMEOUT``
    or 600 s), then raises ``DeviceClaimError`` naming the holders.

    Call it before anything initialises CUDA in the process (``torch.cuda.is_available()``
    included, and imports of libraries that call it): CUDA reads ``CUDA_VISIBLE_DEVICES`` once,
    at initialisation. A process whose torch CUDA state is already initialised is refused.
    """
    global _claim, _lock_fd
    if _claim is not None:
        return _claim.device
    visible = visible_devices(devices)
    if not visible or (len(visible) == 1 and not parallel):
        return None
    if _cuda_already_initialised():
        raise DeviceClaimError("claim_device() was called after CUDA was initialised in this process; "
                               "call it before anything uses torch.cuda")
    if timeout_s is None:
        timeout_s = float(os.environ.get(TIMEOUT_ENV) or DEFAULT_TIMEOUT_S)
    directory = Path(lock_dir) if lock_dir is not None else default_lock_dir()
    directory.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout_s
    waited = False
    while True:
        for device in visible:
            path = lock_path(directory, device)
            fd = _try_lock(path)
            if fd is None:
                continue
            _lock_fd = fd
            _claim = Claim(device, path, tuple(visible), os.environ.get("CUDA_VISIBLE_DEVICES"))
            os.environ["CUDA_VISIBLE_DEVICES"] = device
            log.info("pid %d claimed device %s (CUDA_VISIBLE_DEVICES=%s; lock %s)", os.getpid(), device, device, path)
            return device
        if time.monotonic() >= deadline:
            holders = ", ".join(f"{d} (pid {_holder(lock_path(directory, d))})" for d in visible)
            raise DeviceClaimError(f"no free device after {timeout_s:g} s: all of {holders} are held by other "
                                   f"processes (locks in {directory}); raise {TIMEOUT_ENV}, or run fewer parallel "
                                   f"jobs than devices (hydra.launcher.n_jobs)")
        if not waited:
            log.info("all %d device(s) are taken; waiting up to %g s for one to free up", len(visible), timeout_s)
            waited = True
        time.sleep(min(poll_s, max(0.0, deadline - time.monotonic())))


def release() -> None:
    """Give the claim back and restore ``CUDA_VISIBLE_DEVICES`` (process exit does this anyway)."""
    global _claim, _lock_fd
    if _claim is None:
        return
    if _lock_fd is not None:
        os.close(_lock_fd)  # closing the only fd of the open file drops the flock
    if _claim.previous_env is None:
        os.environ.pop("CUDA_VISIBLE_DEVICES", None)
    else:
        os.environ["CUDA_VISIBLE_DEVICES"] = _claim.previous_env
    _claim, _lock_fd = None, None


def n_devices(fallback: int | str = 1) -> int:
    """How many devices are visible (``fallback`` when none): the ``${evalrun_n_devices:N}``
    resolver that sizes the launcher presets (one joblib worker per GPU, ...)."""
    return len(visible_devices()) or int(fallback)


# Registered on import; the launcher presets need it in the process that composes the config
# (Hydra ships registered resolvers to its workers with the rest of its state).
OmegaConf.register_new_resolver("evalrun_n_devices", n_devices, replace=True)


def launcher_is_parallel(hydra_cfg: Any) -> bool:
    """Whether a Hydra config's launcher may run jobs side by side (anything but the basic one)."""
    target = str(getattr(getattr(hydra_cfg, "launcher", None), "_target_", "") or "")
    return "BasicLauncher" not in target


def claim_for_job(device: str, hydra_cfg: Any) -> str | None:
    """The proposed call at the start of a job: claim a GPU unless the run is pinned to the CPU
    or to an explicit device (``device=cuda:1``: the user chose)."""
    if str(device) not in ("auto", "cuda"):
        return None
    return claim_device(parallel=launcher_is_parallel(hydra_cfg))
