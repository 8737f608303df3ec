"""Config schema and validation: bad keys and values fail at composition, before any GPU work,
with a message naming the key and what is expected; every shipped config composes."""
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


def _cfg(*overrides):
    return compose(config_name="config", overrides=["hardware=cpu_smoke", *overrides])


def test_default_config_is_valid(hydra_ctx):
    cfg = _cfg()
    validate_config(cfg)
    assert cfg.model.topk == 512 and cfg.path.name == "stream"


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
    assert "path/fastest" in str(e.value) or "fastest" in str(e.value)


@pytest.mark.parametrize("override,needle", [
    ("S=-4", "S must be a positive integer"),
    ("model.topk=0", "model.topk must be a positive integer"),
    ("path.chunk_q=0", "path.chunk_q must be a positive integer or null"),
    ("path.name=fastest", "path.name must be one of"),
    ("offset=-1", "offset must be >= 0"),
    ("dtype=fp64", "dtype must be one of"),
    ("fail_inject=sometimes", "fail_inject must be null or one of"),
    ("experiments=[scaling,speed]", "unknown experiment 'speed'"),
])
def test_bad_values_fail_validation_clearly(hydra_ctx, override, needle):
    with pytest.raises(ConfigError, match=needle.replace("[", r"\[")):
        validate_config(_cfg(override))


def test_every_experiment_expands_into_valid_cells(hydra_ctx):
    from experiments._compose import experiment_cells

    sel = OmegaConf.create({"paths": None, "models": None, "blocks": None, "S_min": None, "S_max": None})
    counts = {}
    for name in ("scaling", "recall", "design_space", "bench", "e2e"):
        counts[name] = len(experiment_cells(name, "h200", sel, []))
    assert counts["scaling"] == 2 * 6 * 9 and counts["bench"] >= 18 and counts["e2e"] == 36
    smoke = [n for n in known_experiments() if n.endswith("_smoke")]
    assert len(smoke) == 5
    for name in smoke:
        cells = experiment_cells(name, "cpu_smoke", sel, [])
        assert cells and all(c.S <= 1024 and c.device == "cpu" for c in cells)
        assert all(c.command.startswith("python -m experiments.cell experiment=") for c in cells)


def test_launcher_configs_ask_one_gpu_per_job():
    slurm = OmegaConf.load(CONF_DIR / "launcher" / "submitit_slurm.yaml")
    ray = OmegaConf.load(CONF_DIR / "launcher" / "ray.yaml")
    assert slurm.hydra.launcher.gpus_per_node == 1 and slurm.hydra.launcher.tasks_per_node == 1
    assert ray.hydra.launcher.ray.remote.num_gpus == 1


def test_cli_rejects_bad_value_before_any_work():
    res = run_module("experiments.cell", "hardware=cpu_smoke", "S=-4", "hydra.run.dir=/tmp/streamindex-bad-cfg",
                     timeout=120)
    assert res.returncode != 0
    assert "S must be a positive integer" in res.stderr
