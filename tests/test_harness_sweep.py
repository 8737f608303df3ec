"""The harness end to end on the cpu_smoke profile, through Hydra's basic launcher, into
temporary folders: every cell in its own process group, rows recorded once, a rerun skips them,
failures (exception, crash, OOM, hang) become rows and the sweep goes on but exits 1 saying how
many errored; the reproduce driver runs whole experiments, honours max_minutes, refuses an
unwritable results folder, stops on Ctrl-C with one line, and a killed driver takes its cells
with it. (The other launchers: tests/test_launchers.py.)"""
from __future__ import annotations

import glob
import json
import math
import signal
import time

import pandas as pd
import pytest

from streamindex.harness import events, results, schema, skip_rules
from streamindex.harness.cellspec import CellSpec

from .harness_helpers import alive, descendants, run_module, start_module

CHEAP = ["hardware=cpu_smoke", "model=tiny"]


def _table(root, name="scaling"):
    return results.read_table(root / "res" / "cpu_smoke" / f"{name}.csv")


@pytest.fixture(scope="module")
def multirun(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("multirun")
    args = ["--multirun", "experiment=scaling_smoke", "block=scaling", "path=materialize,partition_merge", "S=64,128",
            f"results_dir={tmp}/res", f"hydra.sweep.dir={tmp}/ms"]
    first = run_module("experiments.cell", *args)
    second = run_module("experiments.cell", *args[:-1], f"hydra.sweep.dir={tmp}/ms2")
    return tmp, first, second


def test_multirun_of_a_block_records_one_row_per_cell(multirun):
    tmp, first, _ = multirun
    assert first.returncode == 0, first.stderr[-3000:]
    df = _table(tmp)
    assert len(df) == 4 and set(df["status"]) == {"ok"} and df["cell_id"].is_unique
    assert set(df["path"]) == {"materialize", "partition_merge"} and set(df["S"]) == {64, 128}
    assert set(df["block"]) == {"scaling"} and set(df["launcher"]) == {"basic"} and set(df["model"]) == {"tiny"}
    for col in ("time_s", "time_checked_s", "tflops", "frac_peak", "tokens_per_s", "matmul_tflops"):
        assert df[col].notna().all(), col
    assert (df["frac_peak"] == df["tflops"] / df["matmul_tflops"]).all()
    assert set(df["matmul_dtype"]) == {"fp32 cpu 512^3"} and set(df["world_size"]) == {1}
    assert df["peak_extra_gib"].isna().all() and df["note"].str.contains("no CUDA allocator").all()
    assert df["command"].str.startswith("python -m experiments.cell experiment=scaling_smoke hardware=cpu_smoke "
                                        "block=scaling ").all()
    assert df["torch_version"].notna().all() and df["git_commit"].notna().all()
    assert first.stdout.count("ok: ") == 4 and "recorded in" in first.stdout
    assert first.stdout.strip().splitlines()[-1] == "sweep: ok 4 — no cell errored"


def test_rerun_skips_recorded_cells(multirun):
    tmp, _, second = multirun
    assert second.returncode == 0, second.stderr[-3000:]
    assert second.stdout.count("already recorded") == 4 and len(_table(tmp)) == 4
    assert second.stdout.strip().splitlines()[-1] == "sweep: already_done 4 — no cell errored"


def test_recorded_command_reproduces_the_cell_and_says_where_it_went(multirun, tmp_path):
    tmp, _, _ = multirun
    row = _table(tmp).iloc[0]
    res = run_module("experiments.cell", *row["command"].split()[3:], f"results_dir={tmp_path}/res",
                     f"hydra.run.dir={tmp_path}/run")
    assert res.returncode == 0, res.stderr[-3000:]
    again = _table(tmp_path)
    assert list(again["cell_id"]) == [row["cell_id"]] and list(again["launcher"]) == ["none"]
    line = res.stdout.strip().splitlines()[-1]
    assert line.startswith(f"ok: {row['path']} tiny S={row['S']}: ") and " s per call" in line
    assert line.endswith(f"recorded in {tmp_path}/res/cpu_smoke/scaling.csv")


def test_single_cell_goes_to_adhoc_and_a_skip_says_why(tmp_path):
    common = [*CHEAP, "path=materialize", f"results_dir={tmp_path}/res", f"hydra.run.dir={tmp_path}/run"]
    res = run_module("experiments.cell", *common, "S=64")
    assert res.returncode == 0 and res.stdout.strip().endswith(f"recorded in {tmp_path}/res/cpu_smoke/adhoc.csv")
    table = tmp_path / "res" / "cpu_smoke" / "adhoc.csv"
    row = dict(results.read_table(table).iloc[0])
    oom = dict(row, S=128, status="oom", reason="injected", date="2026-01-01")
    results.append_row(table, dict(oom, cell_id=schema.cell_id(oom)))
    skipped = run_module("experiments.cell", *common, "S=256")
    line = skipped.stdout.strip().splitlines()[-1]
    assert skipped.returncode == 0 and line.startswith("skipped: materialize tiny S=256: materialize ran out of "
                                                       "memory at S=128")


def test_injected_failures_are_rows_the_sweep_goes_on_and_exits_1(tmp_path):
    before = set(glob.glob("/tmp/streamindex-cell-*"))
    res = run_module("experiments.cell", "--multirun", *CHEAP, "path=partition_merge", "S=64",
                     "fail_inject=error,crash,oom,hang,null", "hardware.cell_timeout_s=4",
                     f"results_dir={tmp_path}/res", f"hydra.sweep.dir={tmp_path}/ms")
    assert res.returncode == 1, res.stderr[-3000:]
    assert res.stdout.strip().splitlines()[-1] == "sweep: ok 1, oom 1, error 3 — 3 cells errored"
    df = results.read_table(tmp_path / "res" / "cpu_smoke" / "adhoc.csv").set_index("fail_inject")
    assert df.loc["error", "status"] == "error" and "injected failure" in df.loc["error", "reason"]
    assert df.loc["crash", "status"] == "error" and "died (exit 134)" in df.loc["crash", "reason"]
    assert df.loc["hang", "status"] == "error" and df.loc["hang", "reason"] == "timeout: cell process killed after 4 s"
    assert df.loc["oom", "status"] == "oom"
    assert list(df[df.index.isna()]["status"]) == ["ok"]
    assert set(glob.glob("/tmp/streamindex-cell-*")) == before


def test_a_job_past_the_deadline_starts_no_cell(tmp_path):
    res = run_module("experiments.cell", "--multirun", *CHEAP, "path=materialize", "S=64,128", "sweep.deadline=1",
                     f"results_dir={tmp_path}/res", f"hydra.sweep.dir={tmp_path}/ms")
    assert res.returncode == 0 and res.stdout.count("not run: ") == 2
    assert not (tmp_path / "res" / "cpu_smoke" / "adhoc.csv").exists()


def test_reproduce_driver_end_to_end(tmp_path):
    args = ["hardware=cpu_smoke", "experiments=[bench,recall]", "select.paths=[partition_merge,materialize]",
            "select.S_max=128", f"results_dir={tmp_path}/res", f"hydra.run.dir={tmp_path}/run"]
    res = run_module("experiments.reproduce", *args)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    bench, recall = _table(tmp_path, "bench"), _table(tmp_path, "recall")
    assert set(bench["status"]) == {"ok"} and len(bench) == 2 and set(bench["launcher"]) == {"basic"}
    assert recall["recall_min"].notna().all()
    ref = recall[recall["path"] == "materialize"]
    assert ref["overlap_vs_materialize"].isna().all() and ref["note"].str.contains("materialize is the reference").all()
    assert (recall[recall["path"] == "partition_merge"]["overlap_vs_materialize"] == 1.0).all()
    assert "bench_smoke: 2 cells in 1 multirun (launcher basic); stated budget on this hardware: 0.5 min" in res.stdout
    assert "stream vs partition_merge" in res.stdout           # the bench table was printed
    assert (tmp_path / "res" / "cpu_smoke" / "REPORT.md").exists()
    assert res.stdout.strip().splitlines()[-1] == "sweep: ok 6 — no cell errored"
    assert (tmp_path / "run" / "bench_smoke" / "side_by_side" / "multirun.log").exists()
    again = run_module("experiments.reproduce", *args[:-1], f"hydra.run.dir={tmp_path}/run2", "report=false")
    assert again.stdout.strip().splitlines()[-1] == "sweep: already_done 6 — no cell errored"
    assert len(_table(tmp_path, "bench")) == 2


def test_an_erroring_sweep_exits_1_and_says_how_many(tmp_path):
    res = run_module("experiments.reproduce", "hardware=cpu_smoke", "experiments=[scaling]", "fail_inject=error",
                     "select.paths=[materialize]", "select.blocks=[scaling]", "select.S_max=128", "report=false",
                     f"results_dir={tmp_path}/res", f"hydra.run.dir={tmp_path}/run")
    assert res.returncode == 1
    assert res.stdout.strip().splitlines()[-1] == "sweep: error 2 — 2 cells errored"
    assert "[error] materialize tiny S=64: RuntimeError: fail_inject=error" in res.stdout


def test_max_minutes_stops_cleanly(tmp_path):
    res = run_module("experiments.reproduce", "hardware=cpu_smoke", "experiments=[scaling]", "max_minutes=0.0001",
                     "report=false", f"results_dir={tmp_path}/res", f"hydra.run.dir={tmp_path}/run")
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.strip().splitlines()[-1] == ("sweep: not_run 20 — stopped by max_minutes; rerun the same "
                                                   "command to continue — no cell errored")
    assert not (tmp_path / "res" / "cpu_smoke" / "scaling.csv").exists()


def test_unwritable_results_folder_is_refused_before_any_work(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    for module in ("experiments.reproduce", "experiments.cell"):
        res = run_module(module, *CHEAP, "experiments=[scaling]", "path=materialize", "S=64",
                         f"results_dir={tmp_path}/file/res", f"hydra.run.dir={tmp_path}/run-{module}")
        assert res.returncode == 2 and "file/res" in res.stderr and "Traceback" not in res.stderr, res.stderr
        assert not (tmp_path / f"run-{module}" / "events.jsonl").exists()


def _wait_for_start(workdir, proc, timeout=120):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if any(e["event"] == "start" for e in events.read_events(workdir)):
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.2)
    raise AssertionError("no cell started")


def _hanging_driver(tmp_path):
    proc = start_module("experiments.reproduce", "hardware=cpu_smoke", "experiments=[scaling]", "fail_inject=hang",
                        "select.paths=[materialize]", "select.blocks=[scaling]", "select.S_max=64", "report=false",
                        f"results_dir={tmp_path}/res", f"hydra.run.dir={tmp_path}/run")
    _wait_for_start(tmp_path / "run", proc)
    time.sleep(1.0)
    kids = descendants(proc.pid)
    assert len(kids) >= 2      # the multirun and the (hanging) cell
    return proc, kids


def _gone(pids, timeout=30):
    t0 = time.time()
    while alive(pids) and time.time() - t0 < timeout:
        time.sleep(0.2)
    return not alive(pids)


def test_ctrl_c_stops_with_one_line_saying_how_to_resume(tmp_path):
    before = set(glob.glob("/tmp/streamindex-cell-*"))
    proc, kids = _hanging_driver(tmp_path)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "Traceback" not in err + out and "KeyboardInterrupt" not in err + out
    lines = [ln for ln in err.splitlines() if ln.strip() and "cell/s" not in ln and "cell]" not in ln]
    assert lines == ["interrupted: 0 cells recorded in this run; rerun the same command to resume (recorded cells "
                     "are skipped)"], err
    assert _gone(kids) and set(glob.glob("/tmp/streamindex-cell-*")) == before


def test_a_killed_driver_takes_its_cells_with_it(tmp_path):
    before = set(glob.glob("/tmp/streamindex-cell-*"))
    proc, kids = _hanging_driver(tmp_path)
    proc.kill()
    proc.communicate(timeout=30)
    assert _gone(kids), alive(kids)
    assert set(glob.glob("/tmp/streamindex-cell-*")) == before


def test_ctrl_c_on_a_single_cell_is_one_line_too(tmp_path):
    proc = start_module("experiments.cell", *CHEAP, "path=materialize", "S=64", "fail_inject=hang",
                        f"results_dir={tmp_path}/res", f"hydra.run.dir={tmp_path}/run")
    _wait_for_start(tmp_path / "run", proc)
    time.sleep(1.0)
    kids = descendants(proc.pid)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err
    assert [ln for ln in err.splitlines() if ln.strip()] == [
        "interrupted: the cell that was running is not recorded; rerun the same command to resume (recorded "
        "cells are skipped)"]
    assert _gone(kids)


def test_dry_run_lists_multiruns_and_cells_and_runs_nothing(tmp_path):
    res = run_module("experiments.reproduce", "hardware=cpu_smoke", "experiments=[scaling]", "dry_run=true",
                     "select.paths=[stream]", f"results_dir={tmp_path}/res", f"hydra.run.dir={tmp_path}/run")
    assert res.returncode == 0, res.stderr[-3000:]
    lines = res.stdout.splitlines()
    multiruns = [ln for ln in lines if ln.startswith("python -m experiments.cell --multirun")]
    assert len(multiruns) == 2 and all("path=stream" in m and "launcher=basic" in m for m in multiruns)
    cells = [ln.strip() for ln in lines if ln.startswith("  python -m experiments.cell experiment=")]
    assert len(cells) == 4 and all(" path=stream " in c + " " for c in cells)
    assert not (tmp_path / "res").exists() and not (tmp_path / "run" / "events.jsonl").exists()


def _spec(S, path="materialize", **kw) -> CellSpec:
    base = dict(experiment="scaling", block="b", kind="indexer", hardware="h200", device="cuda", path=path,
                model="v4_flash", B=1, S=S, H=64, D=128, topk=512, ratio=4, offset=0, dtype="bf16", seed=0,
                chunk_q=None, chunk_t=None, workspace_bytes=None, attn_impl=None, model_dims={},
                measure_time=True, measure_memory=True, measure_recall=False, measure_overlap=False,
                recall_rows=256, tol_factor=1e-5, warmup=1, repeats=5, time_budget_s=8, fast_call_s=0.05,
                bench_ms=300, proxy_warmup_above_S=None, proxy_warmup_S=65536, cell_timeout_s=420,
                skip_predicted_call_s=100.0, triton_interpret=False, fail_inject=None, command="cmd")
    base.update(kw)
    return CellSpec(**base)


def _row(spec: CellSpec, status, time_s=float("nan")):
    r = spec.config_row()
    r.update(status=status, time_s=time_s, reason="", date="2026-01-01", cell_id=spec.cell_id)
    return r


def test_skip_rules_rest_on_recorded_rows(tmp_path):
    path = tmp_path / "scaling.csv"
    results.append_rows(path, [_row(_spec(32768), "ok", 0.3), _row(_spec(65536), "oom")])
    rows = results.read_table(path)          # through CSV, as the cell job sees them
    assert skip_rules.skip_reason(_spec(32768), rows) is None
    assert "ran out of memory at S=65536" in skip_rules.skip_reason(_spec(131072), rows)
    assert skip_rules.skip_reason(_spec(131072, path="stream"), rows) is None      # other family
    assert skip_rules.skip_reason(_spec(131072, inputs="ties8"), rows) is None     # other family
    results.append_rows(path, [_row(_spec(65536, path="chunked_torch"), "ok", 20.0)])
    rows = results.read_table(path)
    reason = skip_rules.skip_reason(_spec(262144, path="chunked_torch"), rows)
    assert reason and "predicted 320 s per call" in reason


def test_cell_ids_of_rows_recorded_before_inputs_and_n_gpus_existed_stay_valid():
    old = _spec(4096).config_row()
    del old["inputs"], old["n_gpus"]
    from streamindex.harness import schema

    assert schema.cell_id(old) == _spec(4096).cell_id
    assert _spec(4096, inputs="ties8").cell_id != _spec(4096).cell_id
    assert _spec(4096, n_gpus=2).cell_id != _spec(4096).cell_id


def test_current_rows_never_hide_a_result_behind_a_later_failure(tmp_path):
    path = tmp_path / "t.csv"
    ok = _row(_spec(4096), "ok", 0.1)
    err = dict(_row(_spec(4096), "error"), date="2026-02-01")
    results.append_rows(path, [ok])
    results.append_rows(path, [err])
    cur = results.current_rows(results.read_table(path))
    assert len(cur) == 1 and cur["status"].iloc[0] == "ok"
    other = tmp_path / "other"
    other.mkdir()
    results.append_rows(other / "t.csv", [err])
    assert results.merge_tables(other, tmp_path) == {"t.csv": (2, 2)}      # duplicate rows are not added
    again = results.read_table(path)
    again["time_s"] = again["time_s"] * (1 + 1e-15)                         # printed one digit shorter
    again.to_csv(other / "t.csv", index=False)
    assert results.merge_tables(other, tmp_path) == {"t.csv": (2, 2)}
    pd.testing.assert_frame_equal(results.current_rows(results.read_table(path)), cur)


def test_cell_worker_proxy_warmup_fp8_inputs_and_checked_time():
    """In-process: the proxy warm-up used at long S on the GPU, fp8 inputs from make_fp8_inputs,
    and the default-call time measured beside the unchecked one."""
    import torch

    from streamindex.harness import cell_worker

    spec = _spec(128, path="stream_fp8", device="cpu", hardware="cpu_smoke", model="tiny", H=4, D=16, topk=8,
                 dtype="fp32", measure_recall=True, recall_rows=32, proxy_warmup_above_S=64, proxy_warmup_S=64,
                 repeats=1, time_budget_s=1e6, skip_predicted_call_s=None)
    q8, k8, w, qs, ks, qr, kr = cell_worker.build_inputs(spec, 128, fp8=True)
    assert q8.dtype == torch.float8_e4m3fn and q8.shape == (1, 128, 4, 16) and k8.shape == (1, 32, 16)
    assert qs.shape == (1, 128, 4) and torch.isfinite(w).all() and (qs > 0).all() and qr is None
    row = cell_worker.run_cell(spec, matmul=(2.0, "test"))
    assert row["status"] == "ok", row["reason"]
    assert row["warmup_S"] == 64 and row["recall_min"] == 1.0 and "proxy" in row["note"]
    assert row["time_checked_s"] > 0 and row["time_s"] > 0 and row["world_size"] == 1
    assert row["frac_peak"] == row["tflops"] / 2.0 and row["matmul_dtype"] == "test"


def test_events_summary_line_counts_and_never_reads_a_partial_line(tmp_path):
    events.append_event(tmp_path, "end", status="ok")
    events.append_event(tmp_path, "end", status="error")
    with open(events.events_path(tmp_path), "a") as fh:
        fh.write(json.dumps({"event": "end", "status": "ok"})[:10])        # a job still writing
    evs = events.read_events(tmp_path)
    assert len(evs) == 2
    assert events.summary_line(events.outcome_counts(evs)) == "ok 1, error 1 — 1 cell errored"
    assert not math.isnan(evs[0]["t"])


@pytest.mark.gpu
def test_fp8_rate_is_measured_and_divides_the_fp8_path(tmp_path):
    """On the GPU: the fp8 e4m3 matmul rate (torch._scaled_mm) is measured beside the bf16 one,
    stream_fp8's frac_peak divides by it (<= 1), stream's by the bf16 rate."""
    from streamindex.harness.measure import matmul_tflops

    bf16, fp8 = matmul_tflops("cuda", 4096, "bf16"), matmul_tflops("cuda", 4096, "fp8")
    assert fp8[1].startswith("fp8_e4m3 4096^3") and bf16[1] == "bf16 4096^3" and fp8[0] > bf16[0] > 0
    for path in ("stream", "stream_fp8"):
        res = run_module("experiments.cell", "hardware=h200", "hardware.name=gpu_test", "hardware.require_gpu=null",
                         f"path={path}", "S=32768", f"results_dir={tmp_path}/res", f"hydra.run.dir={tmp_path}/{path}",
                         timeout=600)
        assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    df = results.read_table(tmp_path / "res" / "gpu_test" / "adhoc.csv").set_index("path")
    assert df.loc["stream_fp8", "matmul_dtype"].startswith("fp8_e4m3") and df.loc["stream", "matmul_dtype"].startswith("bf16")
    assert 0 < df.loc["stream_fp8", "frac_peak"] <= 1 and 0 < df.loc["stream", "frac_peak"] <= 1
    assert df.loc["stream", "time_checked_s"] > 0 and df.loc["stream_fp8", "matmul_tflops"] > df.loc["stream", "matmul_tflops"]
