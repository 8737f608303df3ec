"""A real Hydra multirun of the cpu_smoke profile into a temporary folder: every cell in its own
process, rows recorded, a rerun skips them, injected failures (exception, crash, OOM) become rows
and the sweep goes on; the reproduce driver runs end to end and honours max_minutes."""
from __future__ import annotations

import pandas as pd
import pytest

from streamindex.harness import results, schema, skip_rules
from streamindex.harness.cellspec import CellSpec

from .harness_helpers import run_module


def _table(tmp_path, name="scaling"):
    return results.read_table(tmp_path / "res" / "cpu_smoke" / f"{name}.csv")


@pytest.fixture(scope="module")
def multirun(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("multirun")
    args = ["--multirun", "experiment=scaling_smoke", "hardware=cpu_smoke", "model=tiny",
            "path=materialize,stream", "S=64,128", f"results_dir={tmp}/res", f"hydra.sweep.dir={tmp}/ms"]
    first = run_module("experiments.cell", *args)
    second = run_module("experiments.cell", *args)
    return tmp, first, second


def test_multirun_records_one_row_per_cell(multirun):
    tmp, first, _ = multirun
    assert first.returncode == 0, first.stderr[-3000:]
    df = _table(tmp)
    assert len(df) == 4 and set(df["status"]) == {"ok"}
    assert set(df["path"]) == {"materialize", "stream"} and set(df["S"]) == {64, 128}
    for col in ("time_s", "tflops", "frac_peak", "tokens_per_s", "matmul_tflops"):
        assert df[col].notna().all(), col
    assert df["peak_extra_gib"].isna().all() and df["note"].str.contains("no CUDA allocator").all()
    assert df["command"].str.startswith("python -m experiments.cell experiment=scaling_smoke").all()
    assert df["torch_version"].notna().all() and df["git_commit"].notna().all()
    assert df["cell_id"].is_unique


def test_rerun_skips_recorded_cells(multirun):
    tmp, _, second = multirun
    assert second.returncode == 0, second.stderr[-3000:]
    assert second.stdout.count("already_done 1") == 4
    assert len(_table(tmp)) == 4


def test_recorded_command_reproduces_the_cell(multirun, tmp_path):
    tmp, _, _ = multirun
    cmd = _table(tmp)["command"].iloc[0].split()[3:]
    res = run_module("experiments.cell", *cmd, f"results_dir={tmp_path}/res", f"hydra.run.dir={tmp_path}/run")
    assert res.returncode == 0, res.stderr[-3000:]
    again = results.read_table(tmp_path / "res" / "cpu_smoke" / "scaling.csv")
    assert list(again["cell_id"]) == [_table(tmp)["cell_id"].iloc[0]]


def test_injected_failures_are_rows_and_the_sweep_goes_on(tmp_path):
    res = run_module("experiments.cell", "--multirun", "hardware=cpu_smoke", "model=tiny", "path=partition_merge",
                     "S=64", "fail_inject=error,crash,oom,null", f"results_dir={tmp_path}/res",
                     f"hydra.sweep.dir={tmp_path}/ms")
    assert res.returncode == 0, res.stderr[-3000:]
    df = results.read_table(tmp_path / "res" / "cpu_smoke" / "adhoc.csv").set_index("fail_inject")
    assert df.loc["error", "status"] == "error" and "injected failure" in df.loc["error", "reason"]
    assert df.loc["crash", "status"] == "error" and "died (exit 134)" in df.loc["crash", "reason"]
    assert df.loc["oom", "status"] == "oom"
    ok = df[df.index.isna()]
    assert list(ok["status"]) == ["ok"]


def test_reproduce_driver_end_to_end(tmp_path):
    args = ["hardware=cpu_smoke", "experiments=[bench,recall]", "select.paths=[partition_merge,materialize]",
            "select.S_max=256", f"results_dir={tmp_path}/res", f"hydra.run.dir={tmp_path}/run"]
    res = run_module("experiments.reproduce", *args)
    assert res.returncode == 0, res.stderr[-3000:]
    bench = results.read_table(tmp_path / "res" / "cpu_smoke" / "bench.csv")
    recall = results.read_table(tmp_path / "res" / "cpu_smoke" / "recall.csv")
    assert set(bench["status"]) == {"ok"} and len(bench) == 2
    assert recall["recall_min"].notna().all() and recall["overlap_vs_materialize"].notna().all()
    assert "stream vs partition_merge" in res.stdout           # the bench table was printed
    assert (tmp_path / "res" / "cpu_smoke" / "REPORT.md").exists()
    again = run_module("experiments.reproduce", *args, "report=false")
    assert "already_done 6" in again.stdout and len(results.read_table(tmp_path / "res" / "cpu_smoke" / "bench.csv")) == 2


def test_max_minutes_stops_cleanly_between_cells(tmp_path):
    res = run_module("experiments.reproduce", "hardware=cpu_smoke", "experiments=[scaling]", "max_minutes=0.0001",
                     "report=false", f"results_dir={tmp_path}/res", f"hydra.run.dir={tmp_path}/run")
    assert res.returncode == 0, res.stderr[-3000:]
    assert "stopped by max_minutes" in res.stdout and "not_run 18" in res.stdout


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
    rows = results.read_table(path)          # through CSV, as the runner sees them
    assert skip_rules.skip_reason(_spec(32768), rows) is None
    assert "ran out of memory at S=65536" in skip_rules.skip_reason(_spec(131072), rows)
    assert skip_rules.skip_reason(_spec(131072, path="stream"), rows) is None      # other family
    results.append_rows(path, [_row(_spec(65536, path="chunked_torch"), "ok", 20.0)])
    rows = results.read_table(path)
    reason = skip_rules.skip_reason(_spec(262144, path="chunked_torch"), rows)
    assert reason and "predicted 320 s per call" in reason


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
    assert schema.STATUS_RANK["ok"] < schema.STATUS_RANK["error"]
    pd.testing.assert_frame_equal(results.current_rows(results.read_table(path)), cur)


def test_cell_worker_proxy_warmup_and_sliced_fp8_inputs(monkeypatch):
    """In-process: the proxy warm-up and the sliced fp8 input builder used at long S on the GPU."""
    import torch

    from streamindex.harness import cell_worker

    monkeypatch.setattr(cell_worker, "FP8_SLICE_S", 64)
    spec = _spec(256, path="stream_fp8", device="cpu", hardware="cpu_smoke", model="tiny", H=4, D=16, topk=8,
                 dtype="fp32", measure_recall=True, recall_rows=32, proxy_warmup_above_S=128, proxy_warmup_S=64,
                 repeats=1, skip_predicted_call_s=None)
    q8, k8, w, qs, ks, _, _ = cell_worker.build_inputs(spec, 256, fp8=True)
    assert q8.dtype == torch.float8_e4m3fn and q8.shape == (1, 256, 4, 16) and k8.shape == (1, 64, 16)
    assert qs.shape == (1, 256, 4) and torch.isfinite(w).all() and (qs > 0).all()
    row = cell_worker.run_cell(spec, matmul=(1.0, "test"))
    assert row["status"] == "ok", row["reason"]
    assert row["warmup_S"] == 64 and row["recall_min"] == 1.0 and "proxy" in row["note"]
