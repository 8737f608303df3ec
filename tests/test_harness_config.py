"""Config schema and validation: bad keys and values fail at composition or validation, before
any work, with a message naming the key and what is expected; every shipped experiment plans
into valid cells; the launcher configs resolve to what the hardware profile says."""
from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from streamindex.harness.config import CONF_DIR, ConfigError, known_experiments, register_configs, validate_config

from .harness_helpers import run_module

register_configs()


@pytest.fixture(scope="module")
def hydra_ctx():
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        yield


def _cfg(*overrides, hardware="cpu_smoke", **kw):
    return compose(config_name="config", overrides=[f"hardware={hardware}", *overrides], **kw)


def test_default_config_is_valid(hydra_ctx):
    cfg = _cfg()
    validate_config(cfg)
    assert cfg.model.topk == 512 and cfg.path.name == "stream" and cfg.inputs == "random" and cfg.n_gpus == 1


@pytest.mark.parametrize("model,topk,ratio,heads", [("v4_flash", 512, 4, 64), ("v4_pro", 1024, 4, 128),
                                                    ("v3_2", 2048, 1, 128)])
def test_model_dims(hydra_ctx, model, topk, ratio, heads):
    cfg = _cfg(f"model={model}", "model.H=32")
    assert (cfg.model.topk, cfg.model.ratio, cfg.model.attn_heads, cfg.model.H) == (topk, ratio, heads, 32)


@pytest.mark.parametrize("override,needle", [("model.topkk=3", "topkk"), ("SS=5", "SS"),
                                             ("hardware.repeatz=1", "repeatz")])
def test_misspelt_key_fails_at_composition(hydra_ctx, override, needle):
    with pytest.raises(ConfigCompositionException) as e:
        _cfg(override)
    assert needle in str(e.value) + str(e.value.__cause__)


def test_wrong_type_fails_at_composition(hydra_ctx):
    with pytest.raises(ConfigCompositionException) as e:
        _cfg("S=lots")
    assert "S" in str(e.value) + str(e.value.__cause__)


def test_unknown_path_option_fails(hydra_ctx):
    with pytest.raises(ConfigCompositionException) as e:
        _cfg("path=fastest")
    assert "fastest" in str(e.value)


@pytest.mark.parametrize("override,needle", [
    ("S=-4", "S must be a positive integer"),
    ("model.topk=0", "model.topk must be a positive integer"),
    ("path.chunk_q=0", "path.chunk_q must be a positive integer or null"),
    ("path.name=fastest", "path.name must be one of"),
    ("offset=-1", "offset must be an integer >= 0"),
    ("seed=-1", "seed must be an integer >= 0"),
    ("dtype=fp64", "dtype must be one of"),
    ("inputs=zipf", "inputs must be one of"),
    ("n_gpus=0", "n_gpus must be a positive integer"),
    ("n_gpus=2", "n_gpus=2 exceeds the GPUs a job of hardware profile 'cpu_smoke' has"),
    ("fail_inject=sometimes", "fail_inject must be null or one of"),
    ("hardware.time_budget_s=-1", "hardware.time_budget_s must be a number > 0"),
    ("hardware.bench_ms=0", "hardware.bench_ms must be a positive integer"),
    ("hardware.S_max=0", "hardware.S_max must be a positive integer or null"),
    ("hardware.cell_timeout_s=0", "hardware.cell_timeout_s must be a number > 0"),
    ("hardware.repeats=0", "hardware.repeats must be a positive integer"),
    ("hardware.warmup=-1", "hardware.warmup must be an integer >= 0"),
    ("hardware.skip_predicted_call_s=0", "hardware.skip_predicted_call_s must be a number > 0 or null"),
    ("measure.recall_rows=0", "measure.recall_rows must be a positive integer"),
    ("launch.start_method=vfork", "launch.start_method must be one of"),
    ("max_minutes=0", "max_minutes must be a number > 0 or null"),
    ("experiments=[scaling,speed]", "unknown experiment 'speed'"),
    ("experiments=[]", "experiments must name at least one experiment"),
    ("select.paths=[streem]", "select.paths: unknown value 'streem'"),
    ("select.models=[v5]", "select.models: unknown value 'v5'"),
    ("select.S_min=0", "select.S_min must be a positive integer or null"),
    ("select.blocks=[]", "select.blocks must be null"),
])
def test_bad_values_fail_validation_clearly(hydra_ctx, override, needle):
    with pytest.raises(ConfigError, match=needle.replace("[", r"\[").replace("(", r"\(")):
        validate_config(_cfg(override))


def test_unknown_block_is_named(hydra_ctx):
    with pytest.raises(ConfigError, match="has no block 'nope'; its blocks: \\['scaling', 'v3_2'\\]"):
        validate_config(_cfg("experiment=scaling_smoke", "block=nope"))


def test_a_block_becomes_the_sweepers_params(hydra_ctx):
    """`block=NAME` hands that block of the experiment to Hydra's basic sweeper."""
    cfg = _cfg("experiment=design_space", "block=k_time", hardware="h200", return_hydra_config=True)
    params = OmegaConf.to_container(cfg.hydra.sweeper.params, resolve=True)
    assert params == {"path": "stream,partition_merge", "model.topk": "64,128,256,512,1024,2048", "S": 262144,
                      "measure.recall": False}
    assert _cfg("experiment=design_space", hardware="h200", return_hydra_config=True).hydra.sweeper.params is None


@pytest.fixture(scope="module")
def h200_plan(hydra_ctx):
    from streamindex.harness.driver import plan

    sel = OmegaConf.create({"paths": None, "models": None, "blocks": None, "S_min": None, "S_max": None})
    names = ["scaling", "recall", "design_space", "bench", "e2e", "robustness", "scale_out"]
    return {opt: runs for opt, _, runs in plan(names, "h200x2", sel, [], waves=False)}


def test_every_experiment_plans_into_valid_cells(h200_plan):
    counts = {name: sum(len(mr.cells) for mr in runs) for name, runs in h200_plan.items()}
    assert counts == {"scaling": 2 * 6 * 9 + 6 * 8, "recall": 6 * 5 + 2 * 5 + 2 * 7, "design_space": 78,
                      "bench": 18 + 3 + 3 + 1 + 1, "e2e": 2 * 2 * 5, "robustness": 2 * 3 * (3 + 2 + 2),
                      "scale_out": 2 * 2 * 4 + 2}
    rob = [c for mr in h200_plan["robustness"] for c in mr.cells]
    assert {(c.model, c.S) for c in rob} == {("v4_flash", 65536), ("v4_flash", 131072), ("v4_flash", 262144),
                                             ("v4_pro", 65536), ("v4_pro", 131072), ("v3_2", 32768), ("v3_2", 131072)}
    assert {c.inputs for c in rob} == {"random", "ties8", "recency"} and all(c.measure_recall for c in rob)
    v32 = [c for mr in h200_plan["scaling"] if mr.block == "v3_2" for c in mr.cells]
    assert {(c.ratio, c.topk, max(c.S for c in v32)) for c in v32} == {(1, 2048, 524288)}
    so = [c for mr in h200_plan["scale_out"] for c in mr.cells]
    assert {c.n_gpus for c in so} == {1, 2} and {c.S for c in so} == {1048576, 4194304, 8388608, 16777216}
    assert {c.kind for c in so if c.path == "csa"} == {"csa"}
    cell = h200_plan["scaling"][0].cells[0]
    assert cell.command.startswith("python -m experiments.cell experiment=scaling hardware=h200x2 block=scaling ")


def test_selection_narrows_the_sweep(hydra_ctx):
    from streamindex.harness.driver import plan

    sel = OmegaConf.create({"paths": ["stream"], "models": ["v4_pro"], "blocks": None, "S_min": 65536,
                            "S_max": 262144})
    runs = plan(["scaling"], "h200", sel, [], waves=True)[0][2]
    assert [(mr.block, mr.wave, mr.overrides) for mr in runs] == [
        ("scaling", s, ["path=stream", "model=v4_pro", "S=65536,131072,262144", f"S={s}"])
        for s in ("65536", "131072", "262144")]
    assert [(c.path, c.model, c.S) for mr in runs for c in mr.cells] == [
        ("stream", "v4_pro", 65536), ("stream", "v4_pro", 131072), ("stream", "v4_pro", 262144)]


def test_every_smoke_experiment_plans_on_cpu(hydra_ctx):
    from streamindex.harness.driver import plan

    sel = OmegaConf.create({"paths": None, "models": None, "blocks": None, "S_min": None, "S_max": None})
    smoke = [n for n in known_experiments() if n.endswith("_smoke")]
    assert {s[:-len("_smoke")] for s in smoke} == {n for n in known_experiments() if not n.endswith("_smoke")}
    for option, head, runs in plan(smoke, "cpu_smoke", sel, [], waves=False):
        cells = [c for mr in runs for c in mr.cells]
        assert cells and all(c.S <= 1024 and c.device == "cpu" and c.triton_interpret for c in cells), option
        assert head.experiment.budget_minutes


@pytest.mark.parametrize("hardware,gpus", [("h200", 1), ("h200x2", 2), ("cpu_smoke", 0)])
def test_launchers_reserve_the_profiles_gpus(hydra_ctx, hardware, gpus):
    pytest.importorskip("hydra_plugins.hydra_ray_launcher")
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    ray = _cfg("launcher=ray", hardware=hardware, return_hydra_config=True)
    assert ray.hydra.launcher.ray.remote.num_gpus == gpus and ray.launch.start_method == "spawn" and ray.launch.waves
    assert ray.hydra.launcher.ray.init.object_store_memory is None     # else ray.init refuses an existing cluster
    slurm = _cfg("launcher=submitit_slurm", hardware=hardware, return_hydra_config=True)
    assert slurm.hydra.launcher.gpus_per_node == gpus and slurm.hydra.launcher.tasks_per_node == 1
    local = _cfg("launcher=submitit_local", hardware=hardware, return_hydra_config=True)
    assert local.hydra.sweeper.max_batch_size == 1 and local.hydra.launcher.gpus_per_node == gpus


def test_cli_rejects_bad_value_before_any_work(tmp_path):
    res = run_module("experiments.cell", "hardware=cpu_smoke", "S=-4", f"results_dir={tmp_path}/res",
                     f"hydra.run.dir={tmp_path}/run", timeout=120)
    assert res.returncode == 2 and "S must be a positive integer" in res.stderr
    assert not (tmp_path / "res").exists()


@pytest.mark.parametrize("args,needle", [
    (["select.paths=[streem]"], "select.paths: unknown value 'streem'"),
    (["select.S_min=100000000"], "the selection matches no cell"),
    (["select.blocks=[scalng]"], "select.blocks: unknown block 'scalng'; the blocks of ['scaling_smoke']: "
                                 "['scaling', 'v3_2']"),
    (["seed=-1"], "seed must be an integer >= 0"),
    (["max_minutes=0"], "max_minutes must be a number > 0"),
    (["launcher=slurm"], "launcher=slurm is not a launcher config"),
])
def test_driver_rejects_bad_values_and_empty_selections(tmp_path, args, needle):
    res = run_module("experiments.reproduce", "hardware=cpu_smoke", "experiments=[scaling]", *args,
                     f"results_dir={tmp_path}/res", f"hydra.run.dir={tmp_path}/run", timeout=120)
    assert res.returncode == 2, res.stdout + res.stderr
    assert needle in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "res").exists() and not (tmp_path / "run" / "events.jsonl").exists()


@pytest.mark.parametrize("overrides", [
    ["experiment=design_space", "hardware=h200", "block=k_time", "path=stream", "model.topk=64", "S=262144",
     "measure.recall=False"],
    ["experiment=e2e", "hardware=cpu_smoke", "model=tiny", "path.attn_impl=triton", "S=64"],
    ["hardware=h200", "model=v3_2", "S=4096", "inputs=ties8", "hardware.S_max=null"],
    ["hardware=h200", "+hardware.S_max=8", "S=4"],            # not a plain override: Hydra composes it all
])
def test_fast_composer_gives_hydras_config(hydra_ctx, overrides):
    from streamindex.harness.compose import CellComposer, compose_cell

    fast = CellComposer()
    assert OmegaConf.to_container(fast(overrides)) == OmegaConf.to_container(compose_cell(overrides))


@pytest.mark.parametrize("override,needle", [("S=lots", "S=lots: Value 'lots'"), ("model.topkk=3", "topkk"),
                                             ("seed=-1", "seed must be an integer >= 0")])
def test_fast_composer_rejects_what_hydra_rejects(hydra_ctx, override, needle):
    from streamindex.harness.compose import CellComposer

    with pytest.raises(ConfigError, match=needle):
        CellComposer()(["hardware=h200", override])
