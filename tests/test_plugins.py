"""Plugins: the user's own loss from a file, through the config check, the CLI, the fingerprint and the real
Snakemake in tests/test_extending.py (its file is an input of exactly the jobs that use it)."""

from __future__ import annotations

import math
import re
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
import torch

SQUARED = textwrap.dedent('''
    """A squared-error loss: L+ = w (1 - p)^2, L- = p^2."""
    from typing import ClassVar

    import torch

    from lfa.losses import Loss, register_loss


    @register_loss
    class Squared(Loss):
        name = "{name}"
        display = "Squared"
        defaults: ClassVar[dict[str, float]] = {{"w": 1.0}}

        def compute_terms(self, z):
            p = torch.sigmoid(z)
            return self.hparams["w"] * (1 - p) ** 2, p ** 2
''')


def write_plugin(folder, name="sq_test", body=SQUARED, file="my_losses.py"):
    path = folder / file
    path.write_text(body.format(name=name))
    return path


@pytest.fixture
def clean_registry():
    """Plugins imported by a test are forgotten afterwards (their losses unregistered)."""
    from lfa import plugins
    from lfa.losses import loss_names, unregister_loss

    before, loaded = set(loss_names()), dict(plugins._LOADED)
    yield
    for name in set(loss_names()) - before:
        unregister_loss(name)
    plugins._LOADED.clear()
    plugins._LOADED.update(loaded)


def config_with(plugins, losses):
    from lfa.pipeline.config import validate_config

    return validate_config({"plugins": plugins, "datasets": {"d": {"source": "digits"}},
                            "experiments": {"e": {"dataset": "d", "backbones": ["small_cnn"], "losses": losses}}})


def test_a_plugin_file_registers_its_loss_once_and_says_what_it_registered(tmp_path, clean_registry):
    from lfa.losses import build_loss
    from lfa.plugins import load_plugin, plugin_digests, plugin_files

    path = write_plugin(tmp_path)
    plugin = load_plugin(str(path))
    assert plugin.registered == {"loss": ["sq_test"], "backbone": [], "source": []}
    assert load_plugin(str(path)) is plugin  # the Snakefile and a script in one process: imported once
    p = torch.tensor([math.log(3.0)])  # sigmoid: 0.75
    assert float(build_loss("sq_test", w=3.0).terms(p)[0]) == pytest.approx(3 * 0.25 ** 2)
    assert plugin_files(losses=["sq_test", "bce"]) == [str(path)]
    assert plugin_files(losses=["bce"], backbones=["small_cnn"]) == []
    import hashlib

    one_file = hashlib.sha256(hashlib.sha256(path.read_bytes()).digest()).hexdigest()  # the files' hashes, hashed
    assert plugin_digests(losses=["sq_test"]) == {str(path): one_file}


@pytest.mark.parametrize("case", ["missing", "fails", "syntax", "twice", "module"])
def test_a_plugin_that_cannot_be_used_is_refused_by_the_config_check(tmp_path, clean_registry, case):
    from lfa.errors import ConfigError

    if case == "missing":
        plugins, expected = [str(tmp_path / "nope.py")], r"plugins\[0\]: plugin file .*nope.py not found"
    elif case == "fails":
        bad = tmp_path / "bad.py"
        bad.write_text("import torch\n\nvalue = {}['missing']\n")
        plugins, expected = [str(bad)], r"failed to import: KeyError: 'missing' \(at bad.py, line 3\)"
    elif case == "syntax":
        bad = tmp_path / "typo.py"
        bad.write_text("import torch\n\n\nloss = torch.tensor((1,\n")
        plugins, expected = [str(bad)], r"failed to import: SyntaxError: .*\(at typo.py, line 4\)"
    elif case == "twice":
        first, second = write_plugin(tmp_path), write_plugin(tmp_path, file="copy.py")
        plugins = [str(first), str(second)]
        expected = rf"loss 'sq_test' is registered twice: in {re.escape(str(first))} and in {re.escape(str(second))}"
    else:
        plugins, expected = ["no_such_module_here"], r"No module named 'no_such_module_here'.*importable"
    with pytest.raises(ConfigError, match=expected):
        config_with(plugins, ["bce"])


@pytest.mark.parametrize(("terms", "expected"), [
    ("torch.log(torch.sigmoid(z)) * 0 + 1 / (z - z), -torch.log(1 - torch.sigmoid(z))",
     r"value of its positive-label term L\+ is not finite at p = 0.1"),
    ("-torch.nn.functional.logsigmoid(z), torch.zeros_like(z) + 0.5",
     r"gradient of its negative-label term L- is zero at every point of the LFA grid"),
    ("-torch.nn.functional.logsigmoid(z).sum(), z",
     r"L\+ has shape \(\), the logits \(181,\)"),
])
def test_a_loss_that_cannot_train_is_refused_before_any_job(tmp_path, clean_registry, terms, expected):
    from lfa.errors import ConfigError

    body = SQUARED.replace('return self.hparams["w"] * (1 - p) ** 2, p ** 2', f"return {terms}")
    path = write_plugin(tmp_path, body=body)
    with pytest.raises(ConfigError, match=expected) as err:
        config_with([str(path)], ["bce", "sq_test"])
    assert f"defined in {path}" in str(err.value)


def test_the_papers_losses_pass_the_check(clean_registry):
    from lfa.losses import PAPER_LOSSES

    config_with([], PAPER_LOSSES)


def test_the_fingerprint_of_a_plugin_loss_changes_with_the_file(tmp_path, clean_registry):
    """A resume state trained with an older version of the loss is never resumed."""
    from lfa import plugins
    from lfa.pipeline.plan import jobs
    from lfa.training.checkpoints import fingerprint
    from lfa.training.train import plugin_code

    path = write_plugin(tmp_path)
    config = config_with([str(path)], ["sq_test", "bce"])
    by_loss = {job.loss: job for job in jobs(config)}
    meta = {"data_hash": "abc"}
    assert plugin_code(by_loss["bce"]) == {}
    assert fingerprint(by_loss["bce"], meta, plugin_code(by_loss["bce"])) == fingerprint(by_loss["bce"], meta)
    before = fingerprint(by_loss["sq_test"], meta, plugin_code(by_loss["sq_test"]))
    path.write_text(path.read_text() + "\n# an edit\n")
    assert fingerprint(by_loss["sq_test"], meta, plugin_code(by_loss["sq_test"])) != before
    assert plugins.loaded()[-1].spec == str(path)


def run_lfa(*args, cwd):
    return subprocess.run([sys.executable, "-m", "lfa.cli", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=300)


@pytest.mark.slow
def test_lfa_curves_draws_a_plugin_loss_without_training(tmp_path):
    """``lfa curves --plugin f --loss x --loss bce --out DIR``: tables of both conventions and Figure 2 PNGs.

    For L+ = w (1 - q)^2 and L- = (1 - q)^2 (q: the own label's probability) the LFA is exact:
    LFA+/- = sigmoid(2w(1 - q) - (1 - q) - 1)."""
    write_plugin(tmp_path)
    proc = run_lfa("curves", "--plugin", "my_losses.py", "--loss", "sq_test", "--loss", "bce",
                   "--param", "sq_test.w=2", "--out", "lfa", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "lfa"
    for convention in ("trained", "figure2"):
        assert (out / f"figure2_{convention}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        for stem in ("lfa", "gradients"):
            assert pd.read_csv(out / f"{stem}_{convention}.csv").equals(
                pd.read_parquet(out / f"{stem}_{convention}.parquet"))
    curves = pd.read_parquet(out / "lfa_trained.parquet")
    assert set(curves["loss"]) == {"sq_test", "bce"} and set(curves["display"]) == {"Squared", "BCE"}
    mine = curves[(curves.loss == "sq_test") & (curves.direction == "+/-")]
    q = mine["p"].to_numpy()
    np.testing.assert_allclose(mine["lfa"], 1 / (1 + np.exp(-(4 * (1 - q) - (1 - q) - 1))), rtol=1e-9)


@pytest.mark.slow
def test_lfa_curves_names_a_missing_plugin_and_an_unknown_loss(tmp_path):
    write_plugin(tmp_path)
    proc = run_lfa("curves", "--plugin", "missing.py", "--loss", "bce", "--out", "lfa", cwd=tmp_path)
    assert proc.returncode == 2 and "--plugin[0]: plugin file missing.py not found" in proc.stderr
    proc = run_lfa("curves", "--plugin", "my_losses.py", "--loss", "sq_tset", "--out", "lfa", cwd=tmp_path)
    assert proc.returncode == 2 and "unknown loss 'sq_tset' (did you mean sq_test?)" in proc.stderr


def test_the_modules_a_plugin_imports_are_its_files_and_in_its_digest(tmp_path, clean_registry, monkeypatch):
    """A helper beside a plugin file, and every module of a plugin package, are inputs; libraries are not."""
    from lfa.plugins import load_plugin, plugin_digests, plugin_files

    monkeypatch.chdir(tmp_path)
    (tmp_path / "helper_terms.py").write_text("import torch\n\ndef pos(z):\n    return torch.exp(-z)\n")
    body = SQUARED.replace("import torch\n", "import torch\n\nimport helper_terms\n", 1).replace(
        'return self.hparams["w"] * (1 - p) ** 2, p ** 2', "return helper_terms.pos(z), torch.exp(z)")
    write_plugin(tmp_path, body=body)
    package = tmp_path / "site" / "mylosses"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("from . import terms  # noqa: F401\n")
    (package / "terms.py").write_text(SQUARED.format(name="pkg_test"))
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    load_plugin("my_losses.py")
    load_plugin("mylosses")
    assert plugin_files(losses=["sq_test"]) == ["helper_terms.py", "my_losses.py"]
    assert plugin_files(losses=["pkg_test"]) == ["site/mylosses/__init__.py", "site/mylosses/terms.py"]
    before = plugin_digests(losses=["pkg_test"])
    (package / "terms.py").write_text((package / "terms.py").read_text() + "\n# tuned\n")
    assert plugin_digests(losses=["pkg_test"]) != before


def test_the_fingerprint_does_not_depend_on_how_the_plugin_path_is_written(clean_registry):
    from lfa.pipeline.plan import jobs
    from lfa.training.checkpoints import fingerprint

    job = jobs(config_with([], ["bce"]))[0]
    meta = {"data_hash": "abc"}
    assert fingerprint(job, meta, {"./my_losses.py": "ab" * 32}) == fingerprint(job, meta, {"my_losses.py": "ab" * 32})
    assert fingerprint(job, meta, {"my_losses.py": "ab" * 32}) != fingerprint(job, meta, {"my_losses.py": "cd" * 32})


@pytest.mark.parametrize(("body", "expected"), [
    (SQUARED.replace("def compute_terms", "def compute_term"),
     r"failed to import: ValueError: Squared: a registered loss implements compute_terms.* \(at my_losses.py"),
    (SQUARED.replace('self.hparams["w"]', 'self.hparams["weight"]'),
     r"its terms fail on the LFA grid \(torch.float32\): KeyError: 'weight' \(at my_losses.py, line 18\)"),
])
def test_a_bug_in_a_plugin_loss_is_one_line_with_its_place(tmp_path, clean_registry, body, expected):
    from lfa.errors import ConfigError

    path = write_plugin(tmp_path, body=body)
    with pytest.raises(ConfigError, match=expected):
        config_with([str(path)], ["sq_test"])


def test_a_config_without_plugins_hashes_as_before_the_key_existed(clean_registry):
    from lfa.pipeline.config import config_hash

    config = config_with([], ["bce"])
    assert config["plugins"] == []
    assert config_hash(config) == config_hash({k: v for k, v in config.items() if k != "plugins"})
    assert config_hash({**config, "plugins": ["x.py"]}) != config_hash(config)
