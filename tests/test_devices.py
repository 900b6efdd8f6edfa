"""One device per worker process: lock files, waiting, reclaiming a dead holder's device, no-op cases."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import REPO
from evalrun import devices
from evalrun.devices import DeviceClaimError, claim_device, parse_nvidia_smi, release

# A worker: claim, check CUDA_VISIBLE_DEVICES, hold the device a while, claim again (must be the
# same device), record the interval during which it held the device, exit (releasing it).
WORKER = """
import json, os, sys, time
from evalrun.devices import claim_device
lock_dir, out, hold = sys.argv[1], sys.argv[2], float(sys.argv[3])
dev = claim_device(lock_dir=lock_dir, timeout_s=60, poll_s=0.02)
start = time.time()
assert os.environ["CUDA_VISIBLE_DEVICES"] == dev, (os.environ["CUDA_VISIBLE_DEVICES"], dev)
print("claimed", dev, flush=True)
time.sleep(hold)
assert claim_device(lock_dir=lock_dir, timeout_s=0) == dev
end = time.time()
with open(out, "a") as fh:
    fh.write(json.dumps({"pid": os.getpid(), "device": dev, "start": start, "end": end}) + "\\n")
"""


def _env(fake: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    return {**env, "PYTHONPATH": str(REPO), devices.FAKE_ENV: fake}


def _worker(lock_dir, out, hold: float, fake: str = "0,1") -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", WORKER, str(lock_dir), str(out), str(hold)], env=_env(fake),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture
def clean_claim(monkeypatch):
    """In-process claims start from nothing and are given back (CUDA_VISIBLE_DEVICES restored)."""
    release()
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.delenv(devices.FAKE_ENV, raising=False)
    yield
    release()


def test_four_processes_on_two_devices_never_share_one(tmp_path):
    out = tmp_path / "claims.jsonl"
    procs = [_worker(tmp_path / "locks", out, hold=0.6) for _ in range(4)]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    claims = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(claims) == 4 and {c["device"] for c in claims} == {"0", "1"}
    for device in ("0", "1"):
        intervals = sorted((c["start"], c["end"]) for c in claims if c["device"] == device)
        for (_, end), (start, _) in zip(intervals, intervals[1:]):
            assert start >= end, f"device {device} held by two processes at once: {intervals}"


def test_a_killed_holders_device_is_reclaimed(tmp_path, clean_claim):
    holder = _worker(tmp_path / "locks", tmp_path / "out.jsonl", hold=300, fake="0")
    try:
        assert holder.stdout.readline().split() == ["claimed", "0"]
        with pytest.raises(DeviceClaimError, match=rf"no free device after 0.2 s: all of 0 \(pid {holder.pid}\)"):
            claim_device(["0"], lock_dir=tmp_path / "locks", timeout_s=0.2, poll_s=0.05)
        holder.send_signal(signal.SIGKILL)  # no cleanup runs: the kernel drops the flock
        holder.wait(timeout=30)
        assert (tmp_path / "locks" / "device-0.lock").exists()  # the stale file stays, unlocked
        assert claim_device(["0"], lock_dir=tmp_path / "locks", timeout_s=5, poll_s=0.05) == "0"
        assert os.environ["CUDA_VISIBLE_DEVICES"] == "0"
    finally:
        holder.kill()
        holder.wait()


def test_a_waiting_process_gets_the_device_when_it_frees_up(tmp_path, clean_claim):
    holder = _worker(tmp_path / "locks", tmp_path / "out.jsonl", hold=1.0, fake="0")
    assert holder.stdout.readline().split() == ["claimed", "0"]
    t0 = time.monotonic()
    assert claim_device(["0"], lock_dir=tmp_path / "locks", timeout_s=30, poll_s=0.05) == "0"
    assert holder.wait(timeout=30) == 0
    assert time.monotonic() - t0 > 0.5  # it waited for the holder


def test_a_process_claims_once_and_keeps_its_device(tmp_path, clean_claim, monkeypatch):
    monkeypatch.setenv(devices.FAKE_ENV, "0,1")
    first = claim_device(lock_dir=tmp_path / "locks", timeout_s=0)
    assert first == "0" and os.environ["CUDA_VISIBLE_DEVICES"] == "0"
    # Later jobs in the same (reused) worker get the same device, not the other one.
    assert claim_device(lock_dir=tmp_path / "locks", timeout_s=0) == "0"
    assert devices.current_claim().device == "0"
    # ... which stays free for another process.
    other = _worker(tmp_path / "locks", tmp_path / "out.jsonl", hold=0)
    _, err = other.communicate(timeout=60)
    assert other.returncode == 0, err
    assert json.loads((tmp_path / "out.jsonl").read_text())["device"] == "1"
    release()
    assert "CUDA_VISIBLE_DEVICES" not in os.environ  # restored to unset


def test_cuda_visible_devices_is_the_list_to_choose_from(tmp_path, clean_claim, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    assert devices.visible_devices() == ["2", "3"]
    assert claim_device(lock_dir=tmp_path, timeout_s=0) == "2"
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "2"
    release()
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "2,3"


def test_nothing_to_claim_is_a_no_op(tmp_path, clean_claim, monkeypatch):
    assert claim_device([], lock_dir=tmp_path) is None
    # One device and jobs run one after another in this process (basic launcher): no lock.
    assert claim_device(["0"], parallel=False, lock_dir=tmp_path) is None
    assert "CUDA_VISIBLE_DEVICES" not in os.environ and not list(tmp_path.iterdir())
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "-1")  # CUDA's "no device"
    assert devices.visible_devices() == []
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert devices.visible_devices() == []
    assert devices.claim_for_job("cpu", None) is None


def test_nvidia_smi_listing_gives_uuids_and_mig_instances():
    text = ("GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-aaaa-1111)\n"
            "GPU 1: NVIDIA A100-SXM4-40GB (UUID: GPU-bbbb-2222)\n"
            "  MIG 3g.20gb     Device  0: (UUID: MIG-cccc-3333)\n"
            "  MIG 3g.20gb     Device  1: (UUID: MIG-dddd-4444)\n"
            "GPU 2: NVIDIA L4 (UUID: GPU-eeee-5555)\n")
    assert parse_nvidia_smi(text) == ["GPU-aaaa-1111", "MIG-cccc-3333", "MIG-dddd-4444", "GPU-eeee-5555"]
    assert parse_nvidia_smi("No devices were found\n") == []


def test_launcher_kind_decides_whether_one_device_is_claimed():
    from omegaconf import OmegaConf

    basic = OmegaConf.create({"launcher": {"_target_": "hydra._internal.core_plugins.basic_launcher.BasicLauncher"}})
    joblib = OmegaConf.create({"launcher": {"_target_": "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"}})
    assert not devices.launcher_is_parallel(basic) and devices.launcher_is_parallel(joblib)
