"""ClipConfig: the clip / clip_conf options, validated with one-line errors."""
import pytest
import yaml

from espnet_pcc.core.clip_config import ClipConfig, ClipConfigError, numeric_conf
from espnet_pcc.core.clipping import ClipMode


def test_defaults_add_no_noise_no_adaptive_bound_and_cut_by_position():
    config = ClipConfig.from_options("per_core", {"max_norm": 1.0})
    assert config.noise_multiplier == 0.0 and config.delta is None
    assert not config.adaptive_bound and config.core_by == "position"


def test_noise_is_accepted_for_fixed_bounds():
    assert ClipConfig.from_options("per_core", {"max_norm": 1.0, "noise_multiplier": 1.1}
                                   ).noise_multiplier == 1.1
    assert ClipConfig.from_options("per_example", {"max_norm": 1.0, "noise_multiplier": 2}
                                   ).noise_multiplier == 2.0


def test_quantile_bound_starts_at_initial_bound():
    config = ClipConfig.from_options("per_core", {"target_quantile": 0.5, "initial_bound": 3.0,
                                                  "bound_lr": 0.1})
    assert config.adaptive_bound and config.max_norm == 3.0
    assert config.target_quantile == 0.5 and config.bound_lr == 0.1


def test_speaker_cores_are_accepted_for_per_core_and_apcc():
    for clip, conf in (("per_core", {"max_norm": 1.0}), ("adaptive_per_core", {})):
        config = ClipConfig.from_options(clip, {**conf, "core_by": "speaker",
                                                "utt2spk": "data/train/utt2spk"})
        assert config.core_by == "speaker" and config.utt2spk == "data/train/utt2spk"


@pytest.mark.parametrize("clip,conf,words", [
    ("per_core", {"max_norm": 1.0, "noise_multiplier": -0.5}, "noise_multiplier must be >= 0, got -0.5"),
    ("per_core", {"max_norm": 1.0, "noise_multiplier": "a"}, "noise_multiplier must be a number"),
    ("adaptive_per_core", {"noise_multiplier": 1.0}, "not allowed with clip: adaptive_per_core"),
    ("global", {"noise_multiplier": 1.0}, "not allowed with clip: global"),
    ("global_of_cores", {"max_norm": 1.0, "noise_multiplier": 1.0},
     "not allowed with clip: global_of_cores (it has no per-core bound)"),
    ("global_of_cores", {"max_norm": 1.0, "core_by": "speaker"},
     "core_by=speaker is not allowed with clip: global_of_cores"),
    ("global", {"num_cores": 4},
     "num_cores=4 has no effect with clip: global; use clip: none, global_of_cores, per_core, "
     "adaptive_per_core"),
    ("per_core", {"target_quantile": 1.5, "initial_bound": 1.0}, "target_quantile must be in [0, 1], got 1.5"),
    ("per_core", {"target_quantile": -0.1, "initial_bound": 1.0}, "got -0.1"),
    ("per_core", {"target_quantile": 0.5}, "needs clip_conf.initial_bound"),
    ("per_core", {"target_quantile": 0.5, "initial_bound": 1.0, "max_norm": 1.0}, "remove max_norm"),
    ("per_core", {"target_quantile": 0.5, "initial_bound": 0}, "initial_bound must be > 0"),
    ("per_core", {"target_quantile": 0.5, "initial_bound": 1.0, "bound_lr": -1}, "bound_lr must be > 0"),
    ("per_core", {"max_norm": 1.0, "initial_bound": 1.0}, "needs clip_conf.target_quantile"),
    ("adaptive_per_core", {"target_quantile": 0.5, "initial_bound": 1.0}, "not allowed with clip: adaptive_per_core"),
    ("per_core", {"target_quantile": 0.5, "initial_bound": 1.0, "noise_multiplier": 1.0}, "not private"),
    ("per_core", {"max_norm": 1.0, "delta": 1.5}, "delta must be in (0, 1)"),
    ("per_core", {"max_norm": 1.0, "core_by": "gender"}, "core_by must be one of position, speaker, got 'gender'"),
    ("per_example", {"max_norm": 1.0, "core_by": "speaker"}, "core_by=speaker is not allowed with clip: per_example"),
    ("per_core", {"max_norm": 1.0, "utt2spk": "x"}, "only read with core_by: speaker"),
])
def test_bad_privacy_options_fail_with_one_line(clip, conf, words):
    with pytest.raises(ClipConfigError) as e:
        ClipConfig.from_options(clip, conf)
    assert words in str(e.value)
    assert "\n" not in str(e.value)


def test_numbers_yaml_reads_as_strings_are_numbers():
    # YAML 1.1 (PyYAML) reads an exponent without a sign, or a float without a dot, as a string.
    conf = yaml.safe_load("max_norm: 1.0e9\nnoise_multiplier: 5e-1\ndelta: 1e-5\n")
    assert conf == {"max_norm": "1.0e9", "noise_multiplier": "5e-1", "delta": "1e-5"}
    config = ClipConfig.from_options("per_core", conf)
    assert (config.max_norm, config.noise_multiplier, config.delta) == (1e9, 0.5, 1e-5)
    adaptive = ClipConfig.from_options("per_core", {"target_quantile": "5E-1",
                                                    "initial_bound": " 2 ", "bound_lr": "+.1"})
    assert (adaptive.target_quantile, adaptive.max_norm, adaptive.bound_lr) == (0.5, 2.0, 0.1)
    # what config.yaml records: the numbers; integer and text keys as given
    assert numeric_conf({**conf, "num_cores": 4, "core_by": "speaker"}) == \
        {"max_norm": 1e9, "noise_multiplier": 0.5, "delta": 1e-5, "num_cores": 4,
         "core_by": "speaker"}


@pytest.mark.parametrize("conf,words", [
    ({"max_norm": "ten"}, "clip_conf.max_norm must be a number, got 'ten'"),
    ({"max_norm": "1e"}, "clip_conf.max_norm must be a number, got '1e'"),
    ({"max_norm": ""}, "clip_conf.max_norm must be a number, got ''"),
    # infinity and NaN are no bound; as strings they are not decimal notation
    ({"max_norm": "inf"}, "clip_conf.max_norm must be a number, got 'inf'"),
    ({"max_norm": "nan"}, "clip_conf.max_norm must be a number, got 'nan'"),
    ({"max_norm": float("inf")}, "clip_conf.max_norm must be > 0 and finite, got inf"),
    ({"max_norm": "-1e3"}, "clip_conf.max_norm must be > 0 and finite, got -1000.0"),
    ({"max_norm": 1.0, "noise_multiplier": "1e9x"},
     "clip_conf.noise_multiplier must be a number >= 0, got '1e9x'"),
    ({"max_norm": 1.0, "num_cores": "4"}, "clip_conf.num_cores must be an integer >= 1, got '4'"),
])
def test_strings_that_are_not_real_numbers_are_refused(conf, words):
    with pytest.raises(ClipConfigError) as e:
        ClipConfig.from_options("per_core", conf)
    assert str(e.value) == words


def test_mode_is_parsed():
    assert ClipConfig.from_options("none", {}).mode is ClipMode.NONE


def test_stock_grad_clip():
    assert ClipConfig.from_options("none", {}).stock_grad_clip(5.0) == float("inf")
    assert ClipConfig.from_options("global", {}).stock_grad_clip(5.0) == 5.0
    assert ClipConfig.from_options("global", {"max_norm": 2}).stock_grad_clip(5.0) == 2.0
