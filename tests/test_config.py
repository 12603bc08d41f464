"""Configuration: defaults, YAML presets, dotted overrides and did-you-mean errors."""

from pathlib import Path

import pytest

from selfsup import config as C
from selfsup.errors import ConfigError

CONFIGS = sorted((Path(__file__).parent.parent / "configs").glob("*.yaml"))


def test_defaults_are_the_main_job():
    cfg = C.resolve()
    assert (cfg.method.name, cfg.data.dataset, cfg.model.backbone) == ("vicreg", "mnist1d", "conv1d")


def test_overrides_parse_types():
    cfg = C.resolve(
        None,
        [
            "optim.lr=1e-3",
            "train.epochs=7",
            "train.deterministic=true",
            "model.backbone_args={width: 16}",
            "optim.clip_grad=null",
        ],
    )
    assert cfg.optim.lr == pytest.approx(1e-3) and cfg.train.epochs == 7 and cfg.train.deterministic
    assert cfg.model.backbone_args == {"width": 16} and cfg.optim.clip_grad is None


def test_unknown_key_has_did_you_mean():
    with pytest.raises(ConfigError, match=r"unknown config key 'optim.lrr'.*Did you mean 'optim.lr'"):
        C.resolve(None, ["optim.lrr=0.1"])


def test_bad_values_and_forms():
    with pytest.raises(ConfigError, match="train.epochs"):
        C.resolve(None, ["train.epochs=0"])
    with pytest.raises(ConfigError, match="key=value"):
        C.resolve(None, ["epochs"])
    with pytest.raises(ConfigError, match="dotted"):
        C.resolve(None, ["epochs=3"])
    with pytest.raises(ConfigError, match="does not exist"):
        C.resolve("no/such/file.yaml")


def test_save_and_reload_round_trip(tmp_path):
    cfg = C.resolve(None, ["optim.lr=0.02", "method.name=simclr", "method.params={temperature: 0.2}"])
    C.save(cfg, tmp_path / "config.yaml")
    assert C.resolve(tmp_path) == cfg


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_preset_validates(path):
    cfg = C.resolve(path)
    from selfsup.methods import get_method

    get_method(cfg.method.name)  # the method named by the preset exists
    assert cfg.train.epochs >= 1


def test_main_job_defaults_equal_the_vicreg_preset():
    preset = Path(__file__).parent.parent / "configs" / "vicreg-mnist1d.yaml"
    assert C.resolve() == C.resolve(preset)
