from __future__ import annotations

import copy

import pytest
import yaml
from helpers import REPO, tiny_config

from lfa.errors import ConfigError
from lfa.pipeline.config import config_hash, validate_config
from lfa.pipeline.plan import experiment_datasets, jobs, prepared_datasets, split_prepared_name, train_settings


def test_default_config_is_valid_and_defaults_are_filled():
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    validate_config(config)
    assert config["n_splits"] == 5
    assert config["train"]["optimizer"] == "adam"
    assert config["train"]["amp"] is True  # a default from the schema
    # 5 losses x 3 folds on digits_lt, and 5 losses x 3 folds x 6 ratios on digits_binary
    assert len(jobs(config)) == 15 + 90


def test_expansion_of_ratio_datasets():
    config = validate_config(tiny_config())
    assert experiment_datasets(config, "tiny_ratio") == ["digits_binary_k50", "digits_binary_k1"]
    prepared = prepared_datasets(config)
    assert set(prepared) == {"digits_lt", "digits_binary_k50", "digits_binary_k1"}
    assert prepared["digits_binary_k1"]["ratio_k"] == 1
    assert split_prepared_name("digits_binary_k50") == ("digits_binary", 50)
    assert split_prepared_name("digits_lt") == ("digits_lt", None)
    paths = {j.path for j in jobs(config)}
    assert any(p.startswith("digits_binary_k1/small_cnn/fece/") and p.endswith("/s0_f2") for p in paths)
    assert len(paths) == 2 * 3 + 2 * 2 * 3


def test_experiment_train_overrides_are_merged_and_checked():
    config = tiny_config()
    config["experiments"]["tiny_lt"]["train"] = {"epochs": 7}
    validate_config(config)
    assert train_settings(config, "tiny_lt")["epochs"] == 7
    assert train_settings(config, "tiny_ratio")["epochs"] == 2
    bad = tiny_config()
    bad["experiments"]["tiny_lt"]["train"] = {"epochs": "many"}
    with pytest.raises(ConfigError, match=r"experiments\.tiny_lt\.train\.epochs"):
        validate_config(bad)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda c: c["experiments"]["tiny_lt"].update(losses=["bce", "cross_entropy"]),
         r"experiments\.tiny_lt\.losses: unknown loss 'cross_entropy'; known losses: .*bce.*fece"),
        (lambda c: c["experiments"]["tiny_lt"].update(backbones=["vgg"]),
         r"unknown backbone 'vgg'; known backbones: .*small_cnn"),
        (lambda c: c["experiments"]["tiny_lt"].update(dataset="mnist"),
         r"experiments\.tiny_lt\.dataset: unknown dataset 'mnist'; known datasets: digits_binary, digits_lt"),
        (lambda c: c["datasets"]["digits_lt"].update(source="svhn"), r"unknown dataset source 'svhn'"),
        (lambda c: c["train"].update(epochs=-1), r"-1 is less than the minimum of 1"),
        (lambda c: c["train"].update(lr="fast"), r"'fast' is not of type 'number'"),
        (lambda c: c.update(folds=[0]), r"\[0\] is too short|should be non-empty|minItems"),
        (lambda c: c["train"].update(epoch=3), r"'epoch' was unexpected"),
        (lambda c: c["experiments"]["tiny_ratio"].update(ratios=[50, 7]),
         r"experiments\.tiny_ratio\.ratios: \[7\] not among the ratios"),
        (lambda c: c.update(loss_params={"focal": {"gama": 2}}),
         r"loss_params\.focal: unknown hyper-parameter"),
        (lambda c: c.update(folds=[0, 1, 7]), r"fold 7 does not exist"),
        (lambda c: c["train"].update(init="http://host/w.pth"), r"train\.init: http://host/w\.pth: only https://"),
        (lambda c: c["train"].update(init="file:///w.pth"), r"train\.init: .*not file://"),
        (lambda c: c["experiments"]["tiny_lt"].update(train={"init": "ftp://h/w"}),
         r"experiments\.tiny_lt\.train\.init: ftp://h/w: only https://"),
        (lambda c: c["train"].update(init="https://h/w.pth#md5=1"), r"must be sha256=<64 hex digits>"),
        (lambda c: c["experiments"].update({"..": c["experiments"]["tiny_lt"]}), r"experiments\.\.\.: names may"),
        (lambda c: c["experiments"].update({"x{y}": c["experiments"]["tiny_lt"]}), r"experiments\.x\{y\}: names"),
        (lambda c: c["datasets"].update({"a/b": c["datasets"]["digits_lt"]}), r"datasets\.a/b: names may hold"),
    ],
)
def test_bad_configs_are_rejected_naming_the_key(edit, message):
    config = copy.deepcopy(tiny_config())
    edit(config)
    with pytest.raises(ConfigError, match=message):
        validate_config(config)


def test_an_output_folder_that_cannot_be_written_is_refused_before_any_job(tmp_path):
    (tmp_path / "a_file").write_text("")
    config = {**tiny_config(), "results_dir": str(tmp_path / "a_file" / "results")}
    with pytest.raises(ConfigError, match=r"results_dir: .*a_file/results is not writable \(.*a_file is not a folder"):
        validate_config(config)
    validate_config({**tiny_config(), "logs_dir": str(tmp_path / "new" / "logs")})  # creatable: fine


def test_config_hash_is_stable_and_sensitive():
    a = validate_config(tiny_config())
    b = validate_config(tiny_config())
    assert config_hash(a) == config_hash(b)
    b["train"]["epochs"] = 3
    assert config_hash(a) != config_hash(b)


@pytest.mark.parametrize("where", ["dataset", "train"])
def test_a_backbone_too_large_for_the_configured_side_stops_the_config_check(where):
    """A backbone's smallest input is checked against the configured side before any job starts."""
    from lfa.errors import ConfigError

    dataset = {"source": "folder", "root": "/nonexistent"}
    config = {"datasets": {"d": dataset}, "experiments": {"e": {"dataset": "d", "backbones": ["timm:resnet18"],
                                                               "losses": ["bce"]}}}
    if where == "dataset":
        dataset["image_size"] = 24
        expected = "the data is 24x24: set train.image_size (e.g. 224) (the side comes from datasets.d.image_size)"
    else:
        config["train"] = {"image_size": 24}
        expected = "train.image_size is 24: set it to at least 32 (the side comes from train.image_size)"
    with pytest.raises(ConfigError) as info:
        validate_config(config)
    assert str(info.value) == ("experiments.e.backbones: backbone 'timm:resnet18' needs images of at least 32x32; "
                               + expected)
    config["train"] = {"image_size": 64}
    validate_config(config)  # a side the backbone takes passes


def test_a_side_known_only_from_the_images_is_checked_before_packing(tmp_path):
    """digits keeps its native 8x8 images: the prepare stage refuses a backbone that cannot take them."""
    from lfa.errors import ConfigError
    from lfa.pipeline.stages import prepare_stage

    config = validate_config({"data_dir": str(tmp_path), "datasets": {"d": {"source": "digits",
                                                                             "subset": {"kind": "all"}}},
                              "experiments": {"e": {"dataset": "d", "backbones": ["resnet50"], "losses": ["bce"]}}})
    with pytest.raises(ConfigError, match=r"datasets.d: backbone 'resnet50' needs images of at least 32x32; the "
                                          r"data is 8x8: set train.image_size \(e.g. 256\)"):
        prepare_stage(config, "d")
    assert not (tmp_path / "prepared/d/images.npy").exists()
