"""The device's identity and dense matmul rates, measured once per sweep and host.

``frac_peak`` divides a path's throughput by the dense matmul rate *of the path's own input
dtype* (:func:`denominator`): bf16 / fp16 paths by the bf16 / fp16 rate, ``stream_fp8`` by the
fp8 e4m3 rate (``torch._scaled_mm``), measured on the same GPU in the same sweep; on CPU every
path is divided by the fp32 rate (the only one there is). The CSA step's attention
efficiency divides by the bf16 rate.

The first cell job of a sweep on a host measures the rates it needs in an isolated child
process (:mod:`isolation`; the job process never initialises CUDA) and caches them, with the
GPU name, driver and CUDA version, in ``<workdir>/calibration-<host>-<device>.json`` under a
file lock; later jobs of the sweep on that host read the cache (and measure only dtypes not yet
in it). A sweep's ``workdir`` is the reproduce driver's run folder, or Hydra's output folder of
a standalone run.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
from pathlib import Path

from .isolation import run_isolated


class CalibrationError(RuntimeError):
    """The calibration child failed: the device the profile asks for is not usable here."""


def needed_dtype(device: str, dtype: str, fp8: bool) -> str:
    """The matmul dtype whose rate is a path's denominator: ``fp8`` for the fp8 paths, the input
    dtype otherwise; always ``fp32`` on CPU."""
    if device != "cuda":
        return "fp32"
    return "fp8" if fp8 else dtype


def measure(device: str, n: int, dtypes: list[str], triton_interpret: bool) -> dict:
    """Device provenance and the matmul rates of ``dtypes`` (runs inside the isolated child)."""
    if triton_interpret:
        os.environ["TRITON_INTERPRET"] = "1"
    from .measure import matmul_tflops
    from .provenance import device_provenance

    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise SystemExit("the hardware profile wants CUDA but torch sees no GPU")
    out = device_provenance(device)
    out["rates"] = {d: list(matmul_tflops(device, n, d)) for d in dtypes}
    return out


@contextlib.contextmanager
def _locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def cache_path(workdir, device: str) -> Path:
    return Path(workdir) / f"calibration-{socket.gethostname()}-{device}.json"


def calibrate(*, device: str, n: int, dtypes, workdir, triton_interpret: bool, start_method: str = "fork",
              timeout_s: float = 600.0) -> dict:
    """``{"gpu_name", "gpu_driver", "cuda_version", "rates": {dtype: [tflops, label]}}`` for
    ``device`` with at least ``dtypes`` measured (see the module docstring). Raises
    :class:`CalibrationError` when the measuring child fails."""
    dtypes = sorted(set(dtypes))
    path = cache_path(workdir, device)
    with _locked(path):
        cal = json.loads(path.read_text()) if path.exists() else None
        missing = dtypes if cal is None else [d for d in dtypes if d not in cal["rates"]]
        if missing:
            res = run_isolated("streamindex.harness.calibration:measure",
                               dict(device=device, n=n, dtypes=missing, triton_interpret=triton_interpret),
                               start_method=start_method, timeout_s=timeout_s, scratch_dir=workdir)
            if res.result is None:
                raise CalibrationError(f"calibration on device {device!r} failed ({res.status}); is this "
                                       "the machine the hardware profile is for?")
            if cal is None:
                cal = res.result
            else:
                cal["rates"].update(res.result["rates"])
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(json.dumps(cal))
            os.replace(tmp, path)
    return cal


def denominator(cal: dict, device: str, dtype: str, fp8: bool) -> tuple[float, str]:
    """``(matmul_tflops, matmul_dtype)`` of a path with input ``dtype`` (``fp8``: an fp8 path)."""
    rate, label = cal["rates"][needed_dtype(device, dtype, fp8)]
    return float(rate), str(label)
