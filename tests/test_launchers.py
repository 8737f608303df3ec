"""The reproduce driver through the real Hydra launcher plugins, on the cpu_smoke profile: a
two-cell sweep through submitit's local executor and through a local Ray cluster (started by the
launcher, 2 CPUs). Rows land once each and name the launcher; a rerun records nothing new. SLURM
is tested as far as a machine without SLURM allows: the launcher plugin takes our config and the
sweep reaches submitit's SLURM executor, which needs ``srun``."""
from __future__ import annotations

import shutil

import pytest

from streamindex.harness import results

from .harness_helpers import run_module

# Two cells with the same S, so that Ray (which runs one multirun per S) starts one cluster.
TWO_CELLS = ["hardware=cpu_smoke", "experiments=[scaling_smoke]", "select.blocks=[scaling]",
             "select.paths=[materialize,partition_merge]", "select.S_max=64", "report=false"]


def _sweep_twice(tmp_path, launcher, *extra):
    runs = []
    for i in range(2):
        res = run_module("experiments.reproduce", *TWO_CELLS, f"launcher={launcher}", *extra,
                         f"results_dir={tmp_path}/res", f"hydra.run.dir={tmp_path}/run{i}", timeout=420)
        runs.append(res)
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return runs


def _check(tmp_path, runs, launcher):
    df = results.read_table(tmp_path / "res" / "cpu_smoke" / "scaling.csv")
    assert len(df) == 2 and df["cell_id"].is_unique and set(df["status"]) == {"ok"}
    assert set(df["path"]) == {"materialize", "partition_merge"} and set(df["S"]) == {64}
    assert set(df["launcher"]) == {launcher}
    assert runs[0].stdout.strip().splitlines()[-1] == "sweep: ok 2 — no cell errored"
    assert runs[1].stdout.strip().splitlines()[-1] == "sweep: already_done 2 — no cell errored"


def test_submitit_local_launcher(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    runs = _sweep_twice(tmp_path, "submitit_local")
    _check(tmp_path, runs, "submitit_local")
    assert list((tmp_path / "run0" / "scaling_smoke" / "scaling" / ".submitit").iterdir())   # submitit's job folders


def test_ray_launcher_on_a_local_cluster(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_ray_launcher")
    runs = _sweep_twice(tmp_path, "ray", "hydra.launcher.ray.init.num_cpus=2")
    _check(tmp_path, runs, "ray")
    log = (tmp_path / "run0" / "scaling_smoke" / "scaling" / "multirun.log").read_text()
    assert "Started a local Ray instance" in log and "'num_cpus': 2" in log


def test_submitit_slurm_launcher_reaches_the_slurm_executor(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    if shutil.which("srun"):
        pytest.skip("a SLURM cluster is here: this test is for machines without one")
    res = run_module("experiments.cell", "--multirun", "hardware=cpu_smoke", "model=tiny", "path=materialize",
                     "S=64,128", "launcher=submitit_slurm", "hydra.launcher.partition=gpu",
                     f"results_dir={tmp_path}/res", f"hydra.sweep.dir={tmp_path}/ms", timeout=120)
    assert res.returncode != 0
    assert 'Could not detect "srun", are you indeed on a slurm cluster?' in res.stderr
    assert (tmp_path / "ms" / "multirun.yaml").exists() and not (tmp_path / "res").exists()


def test_missing_launcher_plugin_is_named_with_its_extra(monkeypatch, capsys):
    from streamindex.harness import compose

    monkeypatch.setitem(compose.LAUNCHER_PLUGINS, "ray", ("hydra_plugins.not_installed_launcher", "ray"))
    with pytest.raises(SystemExit) as e:
        compose.check_launcher("ray")
    assert e.value.code == 2
    assert 'launcher=ray needs the Hydra plugin not-installed-launcher: pip install "streamindex[ray]"' in \
        capsys.readouterr().err
    compose.check_launcher("basic")      # no plugin needed
