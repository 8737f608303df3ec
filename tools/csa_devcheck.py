"""CSA attention kernels: precompile them without a GPU, and check and time them on one in one run.

    python tools/csa_devcheck.py precompile [--cache .dev/tlcache] [--sms 132]     # any machine with nvcc
    . .dev/prelude.sh && python3 tools/csa_devcheck.py run --budget 270          # the GPU machine

``precompile`` compiles every TileLang variant (``streamindex.csa.attention_tilelang.VARIANTS``)
at the V4-Flash and V4-Pro shapes for ``sm_90a`` (a persistent grid of ``--sms`` CTAs: the H200
has 132 SMs) into a TileLang cache folder, each kernel in its own process, and prints each
kernel's registers, stack (spills), static + dynamic shared memory and local loads / stores from
its cubin (``cuobjdump`` of Triton's bundle). TileLang's cache key holds the kernel source, the
target, the pass configuration and the tilelang version, not the machine: a folder filled here
serves the GPU machine (same tilelang 0.1.15) without compiling there.

``run`` (the device check; everything under ``--budget`` seconds, logs and tables under ``$OUT``):

1. ``compile``: loads (from the carried cache) or compiles every variant at both shapes, in
   parallel child processes, with each cubin's registers, spills and shared memory;
2. ``smoke``: each variant once on a small case in a child process with a timeout -- a variant
   that hangs or is wrong is dropped from the later stages (and from ``pytest``);
3. ``check``: every variant and the Triton fallback against the dense reference -- random indices,
   all ``-1``, duplicates, selected rows inside the query's own window, S from 1 to 3,000, a long
   sequence on sampled rows -- max relative error per implementation;
4. ``time``: attention alone at V4-Flash (64 heads, topk 512 + window 128) and V4-Pro (128 heads,
   topk 1024 + window 128) with 8,192 late queries at T = 65,536 and 262,144 (median CUDA time
   through ``streamindex.harness.measure.measure_call``): ms, TFLOP/s counted as
   ``S·heads·(topk+window)·(512+512)·2``, fraction of the bf16 matmul rate measured in this run,
   gathered TB/s, relative error on sampled rows;
5. ``pytest``: ``pytest -m gpu tests/test_csa_gpu.py``;
6. ``e2e``: ``measure_csa_cell`` (indexer + attention) for the cells of ``--e2e``.

It prints a compact table and writes ``$OUT/devcheck.log``, ``$OUT/devcheck_rows.json`` and
``$OUT/speed_table.py`` -- the measured table ``attn_impl="auto"`` chooses from (copy it to
``streamindex/csa/speed_table.py``); only implementations that passed ``check`` enter it.
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

MODELS = {  # attention shapes of the CSA step
    "flash": dict(Hq=64, D=512, topk=512, window=128, ratio=4),
    "pro": dict(Hq=128, D=512, topk=1024, window=128, ratio=4),
}
DEFAULT_CACHE = ROOT / ".dev" / "tlcache"
TOL = 1e-2  # relative error of a bf16 kernel against the fp32 reference


# ------------------------------------------------------------------ precompile (no GPU needed)

def _kernel_list(sms: int) -> list[tuple]:
    from streamindex.csa.attention_tilelang import LOG2E, VARIANTS, padded_topk

    out = []
    for v, (family, opts) in VARIANTS.items():
        for m in MODELS.values():
            K = padded_topk(v, m["topk"], m["window"])
            persistent = family == "ws" and opts["persistent"]
            out.append((v, m["Hq"], m["D"], K, m["window"], float(m["D"] ** -0.5 * LOG2E), "sm_90a",
                        sms if persistent else None))
    return out


def _cuobjdump() -> str | None:
    try:
        import triton

        p = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump"
        if p.exists():
            return str(p)
    except ImportError:
        pass
    return shutil.which("cuobjdump")


def cubin_stats(cubin: Path) -> dict:
    """Registers, stack, static shared memory and local loads / stores of a cubin (``cuobjdump``)."""
    tool = _cuobjdump()
    if tool is None:
        return {"error": "no cuobjdump"}
    res = subprocess.run([tool, "-res-usage", str(cubin)], capture_output=True, text=True).stdout
    stats = {}
    for tok in res.replace(",", " ").split():
        if ":" in tok:
            k, v = tok.split(":", 1)
            if k in ("REG", "STACK", "SHARED", "LOCAL") and v.isdigit():
                stats[k.lower()] = int(v)
    sass = subprocess.run([tool, "-sass", str(cubin)], capture_output=True, text=True).stdout
    stats["ldl_stl"] = sum(1 for line in sass.splitlines() if " LDL" in line or " STL" in line)
    stats["hgmma"] = sum(1 for line in sass.splitlines() if "HGMMA" in line)
    # registers touched in each warp-specialised region: from a setmaxnreg to the region's
    # unconditional EXIT, reported as "limit:highest register used + 1"
    regions, cur, hi = [], None, -1
    for line in sass.splitlines():
        m = re.search(r"USETMAXREG\.\w+(?:\.CTAPOOL)?\s+(?:UP0,\s*)?(0x[0-9a-f]+)", line)
        if m:
            cur, hi = int(m.group(1), 16), -1
        elif cur is not None:
            hi = max([hi] + [int(r) for r in re.findall(r"\bR(\d+)\b", line)])
            if re.search(r"^\s*/\*[0-9a-f]+\*/\s+EXIT\b", line):
                regions.append(f"{cur}:{hi + 1}")
                cur = None
    stats["nreg_regions"] = " ".join(regions)
    return stats


def _dyn_smem(kern) -> int | None:
    """Dynamic shared memory a compiled TileLang kernel launches with: the largest integer constant
    its generated host code passes to the launch (the grid and block sizes are smaller)."""
    vals = [int(v) for v in re.findall(r"v_int64\) = \(\(int64_t\)(\d+)\)", kern.get_host_source())]
    return max(vals) if vals else None


def _compile_one(args_json: str) -> None:
    """Child process of ``precompile``: compile (or load from ``$TILELANG_CACHE_DIR``) one kernel,
    print JSON with its seconds, dynamic shared memory and library path."""
    from streamindex.csa.attention_tilelang import compile_kernel

    args = tuple(json.loads(args_json))
    t = time.time()
    kern = compile_kernel(*args)
    print(json.dumps({"seconds": time.time() - t, "dyn_smem": _dyn_smem(kern),
                      "lib": getattr(kern.adapter, "libpath", None)}))


def embedded_cubin(lib: Path, dest: Path) -> Path | None:
    """Write the device image a TileLang kernel library embeds (the ELF after the host ELF) to
    ``dest``; ``None`` when there is none."""
    data = lib.read_bytes()
    at = data.find(b"\x7fELF", 1)
    if at < 0:
        return None
    dest.write_bytes(data[at:])
    return dest


def _compile_job(args: tuple, cache: Path) -> dict:
    """Compile one kernel in a child process into ``cache`` and read its cubin's resources."""
    row = {"variant": args[0], "Hq": args[1], "topk": args[3], "grid": args[7] or "tiles"}
    env = dict(os.environ, TILELANG_CACHE_DIR=str(cache))
    r = subprocess.run([sys.executable, __file__, "_compile_one", json.dumps(list(args))], env=env,
                       capture_output=True, text=True, cwd=str(ROOT))
    if r.returncode:
        row["error"] = ((r.stderr or r.stdout).strip().splitlines() or ["?"])[-1][:300]
        return row
    row.update(json.loads(r.stdout.strip().splitlines()[-1]))
    with tempfile.TemporaryDirectory() as tmp:
        cubin = embedded_cubin(Path(row.pop("lib") or "/nonexistent"), Path(tmp) / "k.cubin") \
            if row.get("lib") and Path(row["lib"]).exists() else None
        row.update(cubin_stats(cubin) if cubin else {"stats": "no device image found"})
    return row


def precompile(cache: Path, sms: int, arch: str = "sm_90a", parallel: int = 2, log=print) -> list[dict]:
    """Compile every variant at both shapes into ``cache`` (``parallel`` child processes)."""
    from concurrent.futures import ThreadPoolExecutor

    cache.mkdir(parents=True, exist_ok=True)
    jobs = [a[:6] + (arch,) + a[7:] for a in _kernel_list(sms)]
    rows = []
    with ThreadPoolExecutor(max(1, parallel)) as pool:
        for row in pool.map(lambda a: _compile_job(a, cache), jobs):
            rows.append(row)
            log(_fmt_kernel(row))
    # TileLang's side cache of raw cubins (keyed by nvcc options holding install paths) is not
    # needed to load a cached kernel: drop it, the folder travels to the GPU machine
    for side in cache.glob("*/cuda-binaries"):
        shutil.rmtree(side, ignore_errors=True)
    return rows


def _fmt_kernel(r: dict) -> str:
    if "error" in r and "reg" not in r:
        return f"{r['variant']:12s} Hq={r['Hq']:3d} topk={r['topk']:4d}  ERROR {r['error']}"
    smem = r.get("dyn_smem")
    return (f"{r['variant']:12s} Hq={r['Hq']:3d} topk={r['topk']:4d} grid={str(r['grid']):5s} "
            f"built/loaded {r.get('seconds', float('nan')):5.1f}s  regs {r.get('reg')} (launch bound)  "
            f"stack {r.get('stack')} B  LDL/STL {r.get('ldl_stl')}  HGMMA {r.get('hgmma')}  "
            f"smem {r.get('shared')} B static + {smem if smem is not None else '?'} B dynamic"
            + (f"  setmaxnreg:used {r['nreg_regions']}" if r.get("nreg_regions") else ""))


# ------------------------------------------------------------------ run (the GPU machine)

class Run:
    def __init__(self, budget: float, out: Path):
        self.t0 = time.time()
        self.budget = budget
        self.out = out
        self.out.mkdir(parents=True, exist_ok=True)
        self.log_file = open(self.out / "devcheck.log", "a")
        self.rows: list[dict] = []

    def left(self) -> float:
        return self.budget - (time.time() - self.t0)

    def log(self, *a):
        msg = " ".join(str(x) for x in a)
        print(msg, flush=True)
        self.log_file.write(msg + "\n")
        self.log_file.flush()


GOOD_VARIANTS: list[str] | None = None  # set by the smoke stage: variants that ran and matched


def _impls():
    from streamindex.csa.attention_tilelang import VARIANTS

    names = list(VARIANTS) if GOOD_VARIANTS is None else GOOD_VARIANTS
    return [f"tilelang:{v}" for v in names] + ["triton"]


def _smoke(variants: list[str]) -> None:
    """Child process of the smoke stage: one small V4-Flash and V4-Pro case per variant, a JSON
    line per variant as soon as it is done (the parent learns which one hung from the last line)."""
    import torch

    from streamindex.csa import csa_attention_reference, sparse_attention
    from tests.csa_fixtures import make_case, rel_err

    for v in variants:
        print(json.dumps({"start": v}), flush=True)
        err = 0.0
        for m, S in (("flash", 96), ("pro", 48)):
            k = MODELS[m]
            q, kvc, kvw, sk, idx, off, win = make_case(seed=2, device="cuda", S=S, T=300, offset=900, Hq=k["Hq"],
                                                       D=k["D"], topk=k["topk"], window=k["window"])
            ref = csa_attention_reference(q, kvc, kvw, sk, idx, offset=off, window=win, out_dtype=torch.float32)
            out = torch.full(q.shape, float("nan"), dtype=q.dtype, device="cuda")
            sparse_attention(q, kvc, kvw, sk, idx, offset=off, window=win, attn_impl=f"tilelang:{v}", out=out)
            torch.cuda.synchronize()
            err = max(err, rel_err(out, ref) if torch.isfinite(out).all() else float("inf"))
        print(json.dumps({"variant": v, "err": err}), flush=True)


def stage_smoke(run: Run, cache_env: dict) -> None:
    """Run each TileLang variant once in a child process with a timeout, so that a kernel that
    hangs (a barrier that never completes) costs one variant, not the run; later stages use only
    the variants that finished with a correct result."""
    global GOOD_VARIANTS
    from streamindex.csa.attention_tilelang import VARIANTS

    todo, good = list(VARIANTS), []
    while todo and run.left() > 60:
        timeout = min(150.0, run.left() - 45)
        cmd = [sys.executable, __file__, "_smoke", ",".join(todo)]
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=str(ROOT), env=cache_env)
            text, timed_out = r.stdout, False
            if r.returncode:
                run.log("smoke child failed:", (r.stderr.strip().splitlines() or ["?"])[-1][:300])
        except subprocess.TimeoutExpired as e:
            text = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
            timed_out = True
        started, done = None, set()
        for line in text.splitlines():
            if not line.startswith("{"):
                continue
            rec = json.loads(line)
            if "start" in rec:
                started = rec["start"]
            else:
                done.add(rec["variant"])
                ok = rec["err"] <= TOL
                run.log(f"smoke {rec['variant']:12s} rel err {rec['err']:.1e} {'OK' if ok else 'WRONG'}")
                run.rows.append(dict(stage="smoke", variant=rec["variant"], err=rec["err"], ok=ok))
                if ok:
                    good.append(rec["variant"])
        bad = started if started is not None and started not in done else None
        if bad is not None:
            run.log(f"smoke {bad:12s} {'HUNG (killed after %.0f s)' % timeout if timed_out else 'FAILED'}")
            run.rows.append(dict(stage="smoke", variant=bad, ok=False, hung=timed_out))
        todo = [v for v in todo if v not in done and v != bad]
        if not timed_out and bad is None:
            break
    GOOD_VARIANTS = good
    run.log("smoke: variants used from here on: " + (", ".join(good) or "none"))


def stage_compile(run: Run):
    """Fill the run's TileLang cache (children in parallel: a carried cache makes this a load),
    then load every kernel in this process."""
    import torch

    from streamindex.csa.attention_tilelang import VARIANTS, compile_kernel, cuda_target, kernel_args

    dev = torch.device("cuda")
    cache = Path(os.environ.get("TILELANG_CACHE_DIR") or Path.home() / ".tilelang" / "cache")
    sms = torch.cuda.get_device_properties(dev).multi_processor_count
    for row in precompile(cache, sms, cuda_target(dev)["arch"], parallel=min(8, os.cpu_count() or 1), log=run.log):
        run.rows.append(dict(stage="kernel", **row))
    for v in VARIANTS:
        for name, m in MODELS.items():
            t = time.time()
            try:
                compile_kernel(*kernel_args(v, m["Hq"], m["D"], m["topk"], m["window"], m["D"] ** -0.5, dev))
                row = dict(stage="compile", impl=f"tilelang:{v}", model=name, seconds=time.time() - t)
            except Exception as e:  # noqa: BLE001 - a kernel that does not build is a recorded row
                row = dict(stage="compile", impl=f"tilelang:{v}", model=name, error=f"{type(e).__name__}: {e}"[:800])
            run.rows.append(row)
            run.log(json.dumps(row))


def _check_cases():
    f, p = MODELS["flash"], MODELS["pro"]
    fk = dict(Hq=f["Hq"], D=f["D"], topk=f["topk"], window=f["window"])
    pk = dict(Hq=p["Hq"], D=p["D"], topk=p["topk"], window=p["window"])
    return {
        "flash_random": dict(fk, S=512, T=4096, ratio=4, offset=16000),
        "pro_random": dict(pk, S=256, T=4096, ratio=4, offset=16000),
        "flash_all_minus_one": dict(fk, S=64, T=100, neg_frac=1.0),
        "pro_duplicates": dict(pk, S=128, T=3000, causal=False, dup_frac=0.3),
        "flash_window_overlap": dict(fk, S=300, offset=50, kv_shared=True),
        "flash_S1": dict(fk, S=1, T=1),
        "pro_S129": dict(pk, S=129, T=32, ratio=4),
        "flash_S3000": dict(fk, S=3000, T=750, ratio=4),
        "pro_batch2_offset": dict(pk, B=2, S=100, T=2000, offset=5000, ratio=4),
    }


def stage_check(run: Run) -> dict:
    """Max relative error per implementation over the check cases (``inf`` = a case failed)."""
    import torch

    from streamindex.csa import csa_attention_reference, sparse_attention
    from tests.csa_fixtures import make_case, rel_err, sampled_rel_err

    worst = {impl: 0.0 for impl in _impls()}
    for ci, (cname, case) in enumerate(_check_cases().items()):
        if run.left() < 45:
            run.log("check: budget reached, skipping", cname)
            for impl in worst:
                worst[impl] = float("inf")
            continue
        q, kvc, kvw, sk, idx, off, win = make_case(seed=100 + ci, device="cuda", **case)
        ref = csa_attention_reference(q, kvc, kvw, sk, idx, offset=off, window=win, out_dtype=torch.float32)
        errs = {}
        for impl in worst:
            try:
                out = torch.full(q.shape, float("nan"), dtype=q.dtype, device="cuda")
                sparse_attention(q, kvc, kvw, sk, idx, offset=off, window=win, attn_impl=impl, out=out)
                torch.cuda.synchronize()
                errs[impl] = rel_err(out, ref)
            except Exception as e:  # noqa: BLE001
                errs[impl] = float("inf")
                run.log(f"check {cname} {impl}: {type(e).__name__}: {str(e)[:300]}")
            worst[impl] = max(worst[impl], errs[impl])
        run.rows.append(dict(stage="check", case=cname, errs=errs))
        run.log(f"check {cname:22s} " + "  ".join(f"{k.split(':')[-1]} {v:.1e}" for k, v in errs.items()))
        del q, kvc, kvw, idx, ref
    # long sequence, sampled rows
    if run.left() > 60:
        case = dict(Hq=64, D=512, topk=512, window=128, S=32768, T=8192, ratio=4)
        q, kvc, kvw, sk, idx, off, win = make_case(seed=3, device="cuda", **case)
        errs = {}
        for impl in worst:
            try:
                out = sparse_attention(q, kvc, kvw, sk, idx, offset=off, window=win, attn_impl=impl)
                errs[impl] = sampled_rel_err(out, q, kvc, kvw, sk, idx, off, win, blocks=4, rows=16)
            except Exception as e:  # noqa: BLE001
                errs[impl] = float("inf")
                run.log(f"check long {impl}: {type(e).__name__}: {str(e)[:300]}")
            worst[impl] = max(worst[impl], errs[impl])
        run.rows.append(dict(stage="check", case="flash_S32768_sampled", errs=errs))
        run.log("check flash_S32768_sampled  " + "  ".join(f"{k.split(':')[-1]} {v:.1e}" for k, v in errs.items()))
        del q, kvc, kvw, idx
        torch.cuda.empty_cache()
    run.log("check worst: " + json.dumps(worst))
    return worst


def stage_time(run: Run, matmul: float, n_queries: int, Ts: list[int]):
    import torch

    from streamindex.csa import sparse_attention
    from streamindex.csa.checks import attention_flops_bytes
    from streamindex.harness.measure import measure_call
    from tests.csa_fixtures import make_case, sampled_rel_err

    for name, m in MODELS.items():
        for T in Ts:
            if run.left() < 40:
                run.log("time: budget reached, skipping", name, T)
                continue
            offset = T * m["ratio"] - n_queries  # late queries: every one sees topk compressed rows + a full window
            q, kvc, kvw, sk, idx, off, win = make_case(
                seed=1, device="cuda", S=n_queries, T=T, offset=offset, ratio=m["ratio"], Hq=m["Hq"], D=m["D"],
                topk=m["topk"], window=m["window"], neg_frac=0.0)
            flops, gathered, _ = attention_flops_bytes(n_queries, Hq=m["Hq"], D=m["D"], topk=m["topk"],
                                                       ratio=m["ratio"], window=m["window"], offset=offset, T=T)
            out = torch.empty_like(q)
            for impl in _impls():
                if run.left() < 25:
                    break
                fn = functools.partial(sparse_attention, q, kvc, kvw, sk, idx, offset=off, window=win,
                                       attn_impl=impl, out=out, check_indices=False)
                try:
                    meas = measure_call(fn, device="cuda", warmup=2, repeats=20, time_budget_s=5.0, fast_call_s=1.0,
                                        bench_ms=150, measure_memory=False)
                    err = sampled_rel_err(out, q, kvc, kvw, sk, idx, off, win, blocks=3, rows=8)
                    t = meas.time_s
                    row = dict(stage="time", model=name, T=T, Sq=n_queries, impl=impl, ms=t * 1e3,
                               tflops=flops / t / 1e12, frac_matmul=flops / t / 1e12 / matmul,
                               gather_tbps=gathered / t / 1e12, rel_err=err)
                except Exception as e:  # noqa: BLE001
                    row = dict(stage="time", model=name, T=T, Sq=n_queries, impl=impl,
                               error=f"{type(e).__name__}: {e}"[:600])
                run.rows.append(row)
                run.log(_fmt_time(row))
            del q, kvc, kvw, idx, out
            torch.cuda.empty_cache()


def _fmt_time(r: dict) -> str:
    if "error" in r:
        return f"time  {r['model']:5s} T={r['T']:6d} {r['impl']:22s} ERROR {r['error'][:200]}"
    return (f"time  {r['model']:5s} T={r['T']:6d} {r['impl']:22s} {r['ms']:8.3f} ms {r['tflops']:6.1f} TFLOP/s "
            f"{r['frac_matmul']:5.2f} of bf16 mm  {r['gather_tbps']:5.2f} TB/s gathered  err {r['rel_err']:.1e}")


def stage_pytest(run: Run, env: dict):
    timeout = max(30, int(run.left() - 20))
    cmd = [sys.executable, "-m", "pytest", "-q", "-m", "gpu", "tests/test_csa_gpu.py", "-p", "no:cacheprovider",
           "-o", "addopts=", "-x", "--durations=5"]
    try:
        if GOOD_VARIANTS is not None:
            env = dict(env, CSA_TEST_VARIANTS=",".join(GOOD_VARIANTS))
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=str(ROOT), env=env)
        text, rc = r.stdout + r.stderr, r.returncode
    except subprocess.TimeoutExpired as e:
        text, rc = (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (e.stdout or ""), "timeout"
    (run.out / "pytest_gpu.log").write_text(text)
    run.rows.append(dict(stage="pytest", rc=rc))
    run.log("pytest rc", rc, *["\n  " + x for x in text.strip().splitlines()[-12:]])


def stage_e2e(run: Run, cells: list[tuple], matmul: float):
    import torch

    from streamindex.harness.csa_measure import measure_csa_cell

    dims = {"flash": dict(H=64, D=128, topk=512, ratio=4, attn_heads=64, head_dim=512, window=128),
            "pro": dict(H=64, D=128, topk=1024, ratio=4, attn_heads=128, head_dim=512, window=128)}
    for name, S, impl, reps in cells:
        if run.left() < 30 + S / 2**20 * 20 * (reps + 1):
            run.log("e2e: budget reached, skipping", name, S, impl)
            continue
        try:
            row = measure_csa_cell(S=S, model=dict(dims[name]), attn_impl=impl, device="cuda", seed=0, repeats=reps,
                                   warmup=1, matmul_tflops=matmul)
            row.update(stage="e2e", model=name)
        except Exception as e:  # noqa: BLE001
            row = dict(stage="e2e", model=name, S=S, attn_impl=impl, error=f"{type(e).__name__}: {e}"[:600])
        run.rows.append(row)
        if "error" in row:
            run.log(f"e2e   {name} S={S} {impl}: ERROR {row['error'][:200]}")
        else:
            run.log(f"e2e   {name:5s} S={S:8d} {row['attn_impl_resolved']:20s} time {row['time_s']:.4f}s "
                    f"indexer {row['time_indexer_s']:.4f}s attn {row['time_attn_s']:.4f}s "
                    f"x{row['e2e_over_indexer']:.2f}  attn {row['attn_tflops']:.0f} TFLOP/s "
                    f"({row['attn_frac_peak']:.2f} of mm)  peak extra {row['peak_extra_gib']:.2f} GiB")
        torch.cuda.empty_cache()


def speed_table_text(rows: list[dict], worst: dict, gpu: str, commit: str) -> str:
    """``speed_table.py`` source from the ``time`` rows (largest T per shape) of implementations
    whose check passed and whose timed output matched the reference."""
    from streamindex.csa.attention import topk_bucket

    best_T = {}
    for r in rows:
        if r.get("stage") == "time" and "error" not in r:
            best_T[r["model"]] = max(best_T.get(r["model"], 0), r["T"])
    table = {}
    for r in rows:
        if r.get("stage") != "time" or "error" in r or r["T"] != best_T.get(r["model"]):
            continue
        if worst.get(r["impl"], float("inf")) > TOL or not r["rel_err"] <= TOL:
            continue
        m = MODELS[r["model"]]
        key = (m["Hq"], m["D"], topk_bucket(m["topk"]))
        e = table.setdefault(key, {"gpu": gpu, "commit": commit, "date": time.strftime("%Y-%m-%d"),
                                   "workload": f"{r['Sq']} late queries, T={r['T']}, random distinct indices",
                                   "ms": {}})
        e["ms"][r["impl"]] = round(r["ms"], 4)
    lines = ['"""Measured CSA attention times per shape: what ``attn_impl="auto"`` chooses from.', "",
             "Written by ``tools/csa_devcheck.py run`` (copy of its ``$OUT/speed_table.py``); edit by hand",
             "only to delete stale entries. Key: ``(Hq, D, topk bucket)`` with the bucket the smallest power of",
             "two >= topk. Value: the GPU, the commit and date measured, the workload, and milliseconds per",
             'implementation (``"tilelang:<variant>"`` or ``"triton"``). Shapes without an entry fall back',
             'to the documented default in :func:`streamindex.csa.attention.choose_impl`.', '"""', "",
             "MEASURED: dict = {"]
    for key, e in sorted(table.items()):
        lines.append(f"    {key!r}: {e!r},")
    lines.append("}")
    return "\n".join(lines) + "\n"


def run_device(args) -> int:
    out = Path(os.environ.get("OUT") or "/tmp/csa_devcheck")
    run = Run(args.budget, out)
    if args.cache and Path(args.cache).is_dir():  # a writable copy of the carried cache, before tilelang loads
        tmp = Path(tempfile.gettempdir()) / "csa_tlcache"
        shutil.copytree(args.cache, tmp, dirs_exist_ok=True)
        os.environ["TILELANG_CACHE_DIR"] = str(tmp)
    import torch

    from streamindex.harness.measure import matmul_tflops

    dev = torch.device("cuda")
    gpu = torch.cuda.get_device_name(dev)
    try:
        import tilelang
        import triton

        versions = f"tilelang {tilelang.__version__} triton {triton.__version__}"
    except Exception as e:  # noqa: BLE001
        versions = f"import problem: {e!r}"
    commit = os.environ.get("STREAMINDEX_GIT_COMMIT") or subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=str(ROOT)).stdout.strip()
    run.log(f"env: {gpu}, {torch.cuda.get_device_properties(dev).multi_processor_count} SMs, torch {torch.__version__}, "
            f"{versions}, python {sys.version.split()[0]}, commit {commit or '?'}, "
            f"TILELANG_CACHE_DIR={os.environ.get('TILELANG_CACHE_DIR', '(default)')}")
    matmul, mm_dtype = matmul_tflops("cuda", 8192)
    run.log(f"dense matmul {mm_dtype}: {matmul:.1f} TFLOP/s")
    run.rows.append(dict(stage="matmul", tflops=matmul, dtype=mm_dtype, gpu=gpu, commit=commit))
    stages = args.stages.split(",")
    worst = {}
    for st in stages:
        t = time.time()
        try:
            if st == "smoke":
                stage_smoke(run, dict(os.environ))
            elif st == "compile":
                stage_compile(run)
            elif st == "check":
                worst = stage_check(run)
            elif st == "time":
                stage_time(run, matmul, args.queries, [int(x) for x in args.T.split(",")])
            elif st == "pytest":
                stage_pytest(run, dict(os.environ))
            elif st == "e2e":
                cells = [(n, int(S), impl, int(r)) for n, S, impl, r in (c.split(":") for c in args.e2e.split(",") if c)]
                stage_e2e(run, cells, matmul)
            else:
                run.log(f"unknown stage {st!r}")
        except Exception as e:  # noqa: BLE001 - a failing stage must not lose the others
            run.log(f"stage {st} failed: {type(e).__name__}: {e}")
        run.log(f"-- stage {st}: {time.time() - t:.1f}s (total {time.time() - run.t0:.1f}s of {args.budget:.0f})")
    (out / "devcheck_rows.json").write_text(json.dumps(run.rows, indent=1, default=str))
    if "time" in stages:
        (out / "speed_table.py").write_text(speed_table_text(run.rows, worst, gpu, commit))
    run.log("\n==== summary ====")
    run.log(f"dense matmul {matmul:.1f} TFLOP/s ({gpu})")
    if worst:
        run.log("max rel err vs reference: " + "  ".join(f"{k} {v:.1e}{'' if v <= TOL else ' FAIL'}"
                                                           for k, v in worst.items()))
    for r in run.rows:
        if r["stage"] == "time":
            run.log(_fmt_time(r))
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("precompile", help="compile every variant for sm_90a into a TileLang cache folder (no GPU)")
    p.add_argument("--cache", default=str(DEFAULT_CACHE))
    p.add_argument("--sms", type=int, default=132, help="persistent grid size: the target GPU's SM count")
    p.add_argument("--parallel", type=int, default=2, help="compiles at a time")
    r = sub.add_parser("run", help="the device check (GPU)")
    r.add_argument("--budget", type=float, default=270.0, help="seconds for everything")
    r.add_argument("--cache", default=str(DEFAULT_CACHE), help="carried TileLang cache (copied to a temp dir)")
    r.add_argument("--stages", default="compile,smoke,check,time,pytest,e2e")
    r.add_argument("--queries", type=int, default=8192, help="late queries per timed call")
    r.add_argument("--T", default="65536,262144", help="compressed rows of the timed calls")
    r.add_argument("--e2e", default="flash:65536:tilelang:3,flash:65536:triton:3,pro:65536:tilelang:3,"
                                    "pro:65536:triton:3")
    c = sub.add_parser("_compile_one")
    c.add_argument("args_json")
    sm = sub.add_parser("_smoke")
    sm.add_argument("variants")
    args = ap.parse_args(argv)
    if args.cmd == "precompile":
        rows = precompile(Path(args.cache), args.sms, parallel=args.parallel)
        return 1 if any("error" in r and "reg" not in r for r in rows) else 0
    if args.cmd == "_compile_one":
        _compile_one(args.args_json)
        return 0
    if args.cmd == "_smoke":
        _smoke(args.variants.split(","))
        return 0
    return run_device(args)


if __name__ == "__main__":
    sys.exit(main())
