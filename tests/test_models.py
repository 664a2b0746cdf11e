"""Backbones (lfa.models) and initial weights (lfa.training.checkpoints.load_init)."""

from __future__ import annotations

import hashlib
import io
import time

import pytest
import torch
import torchvision

from lfa.errors import CheckpointMismatch, UnreadableCheckpoint
from lfa.evaluation.paper import TABLES
from lfa.models import backbone_names, build_model, get_backbone, input_size
from lfa.training import checkpoints
from lfa.training.checkpoints import fetch_init, init_cache_path, load_init

PAPER_BACKBONES = {"resnet50", "densenet121", "alexnet", "botnet", "cifar_resnet", "small_cnn"}


def test_registry_has_the_papers_backbones():
    assert PAPER_BACKBONES <= set(backbone_names())
    assert "pgcon" not in backbone_names()  # PGCon is weights for resnet50 (train.init), not an architecture
    with pytest.raises(KeyError, match="known backbones: .*resnet50"):
        get_backbone("resnet-50")


@pytest.mark.parametrize("name", sorted(backbone_names()))
def test_every_backbone_ends_in_one_logit_per_class(name):
    if name == "botnet":
        pytest.importorskip("timm", reason="botnet needs the optional timm package (pip install -e '.[timm]')")
    info = get_backbone(name)
    side = info.fixed_size or max(info.min_size, 8) if name not in ("cifar_resnet", "cifar_resnet20") else 32
    for in_channels in (3, 1):
        torch.manual_seed(0)
        model = build_model(name, 4, in_channels).eval()
        with torch.no_grad():
            out = model(torch.rand(2, in_channels, side, side))
        assert out.shape == (2, 4) and out.dtype == torch.float32
        if name != "small_cnn":  # the others are only built once (they are large)
            break


def test_botnet_is_timm_botnet26t_at_256_only():
    pytest.importorskip("timm", reason="botnet needs the optional timm package (pip install -e '.[timm]')")
    model = build_model("botnet", 3, 3)
    assert type(model.body).__name__ == "ByobNet"
    assert input_size("botnet", 0, 50) == 256  # IDC patches are resized to 256 on the device
    assert input_size("botnet", 256, 50) == 256
    with pytest.raises(ValueError, match="256x256 images only"):
        input_size("botnet", 224, 50)


def test_input_size_rules():
    assert input_size("small_cnn", 0, 8) == 8
    assert input_size("resnet50", 256, 50) == 256
    assert input_size("cifar_resnet", 0, 32) == 32
    with pytest.raises(ValueError, match="at least 63x63.*train.image_size"):
        input_size("alexnet", 0, 32)


def test_cifar_resnets_keep_32x32_resolution_in_the_stem():
    r18 = build_model("cifar_resnet", 10, 3)
    r20 = build_model("cifar_resnet20", 10, 3)
    n18 = sum(p.numel() for p in r18.parameters())
    n20 = sum(p.numel() for p in r20.parameters())
    assert 11.0e6 < n18 < 11.3e6  # ResNet-18 (CIFAR form)
    assert 0.26e6 < n20 < 0.28e6  # ResNet-20 of He et al.
    stem = r18.body.stem[0]
    assert stem.kernel_size == (3, 3) and stem.stride == (1, 1)
    with pytest.raises(ValueError, match="no pretrained weights"):
        build_model("cifar_resnet", 10, 3, pretrained=True)


def test_small_cnn_stays_fast_on_a_cpu():
    torch.set_num_threads(1)
    model = build_model("small_cnn", 10, 1)
    opt = torch.optim.Adam(model.parameters())
    x = torch.rand(100, 1, 8, 8)
    for _ in range(2):
        model(x).sum().backward()
    t0 = time.perf_counter()
    for _ in range(10):
        opt.zero_grad()
        model(x).sum().backward()
        opt.step()
    per_step = (time.perf_counter() - t0) / 10
    assert per_step < 0.25, f"{per_step * 1000:.0f} ms per step of 100 8x8 digits"  # about 25 ms here


def test_paper_table_blocks_are_backbones_or_init_labels():
    for name in ("table3", "table4"):
        for block in TABLES[name]["blocks"]:
            assert block in backbone_names() or block == "pgcon"


# ------------------------------------------------------------------------------------------------ load_init
@pytest.fixture(scope="module")
def resnet50_weights(tmp_path_factory):
    """A real torchvision ResNet-50 state dict as a self-supervised framework saves it: prefixed, own head."""
    torch.manual_seed(1)
    net = torchvision.models.resnet50(weights=None)
    net.fc = torch.nn.Linear(2048, 128)  # a projection head of another size
    path = tmp_path_factory.mktemp("init") / "ssl_resnet50.pth"
    state = {f"module.encoder_q.{k}": v for k, v in net.state_dict().items()}
    state |= {"module.encoder_k.conv1.weight": torch.zeros(64, 3, 7, 7)}  # a momentum encoder: ignored
    torch.save({"epoch": 200, "state_dict": state}, path)
    return path, net


def test_load_init_maps_prefixed_keys_and_keeps_a_new_head(resnet50_weights):
    path, net = resnet50_weights
    model = build_model("resnet50", 3, 3)
    head_before = model.body.fc.weight.clone()
    summary = load_init(model, path)
    assert torch.equal(model.body.conv1.weight, net.conv1.weight)
    assert torch.equal(model.body.layer4[2].bn3.running_var, net.layer4[2].bn3.running_var)
    assert torch.equal(model.body.fc.weight, head_before)  # 3 classes: the head stays at its initialisation
    assert summary["loaded"] == len(model.state_dict()) - 2
    assert summary["skipped"] == 3  # encoder_k.conv1, fc.weight, fc.bias of the checkpoint


def test_load_init_refuses_another_architecture(tmp_path):
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), tmp_path / "r18.pth")
    model = build_model("resnet50", 3, 3)
    with pytest.raises(CheckpointMismatch, match=r"r18.pth: does not fit this backbone: \d+ of 320 tensors missing "
                       r".*\d+ with other shapes \(e.g. \['body.layer1.0.conv1.weight \(64, 64, 3, 3\) != "):
        load_init(model, tmp_path / "r18.pth")
    torch.save({"a": torch.zeros(2)}, tmp_path / "other.pth")
    with pytest.raises(CheckpointMismatch, match=r"its first tensors: \['a'\]"):
        load_init(model, tmp_path / "other.pth")


def test_load_init_names_shape_mismatches(tmp_path):
    state = build_model("resnet50", 3, 3).state_dict()
    state["body.layer1.0.conv1.weight"] = torch.zeros(1, 1, 1, 1)
    torch.save(state, tmp_path / "bad.pt")
    with pytest.raises(CheckpointMismatch, match=r"1 with other shapes.*body.layer1.0.conv1.weight \(1, 1, 1, 1\)"):
        load_init(build_model("resnet50", 3, 3), tmp_path / "bad.pt")


def test_load_init_refuses_pickled_objects(tmp_path):
    torch.save({"model": torchvision.models.resnet18(weights=None)}, tmp_path / "pickled.pt")
    with pytest.raises(Exception, match="Weights only load failed|weights_only"):
        load_init(build_model("resnet50", 3, 3), tmp_path / "pickled.pt")


def test_load_init_accepts_an_lfa_model_checkpoint(tmp_path):
    torch.manual_seed(3)
    trained = build_model("small_cnn", 5, 1)
    torch.save({"model": trained.state_dict(), "backbone": "small_cnn"}, tmp_path / "model.pt")
    fresh = build_model("small_cnn", 5, 1)
    load_init(fresh, tmp_path / "model.pt")
    assert torch.equal(fresh.body[0].weight, trained.body[0].weight)


def test_init_missing_file_says_where_to_look(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint at .*docs/training.md"):
        fetch_init(tmp_path / "nope.pth")


def test_init_url_must_be_https():
    with pytest.raises(ValueError, match="only https:// URLs"):
        fetch_init("http://example.org/w.pth")


def test_init_https_url_is_downloaded_once_and_checked(tmp_path, monkeypatch):
    monkeypatch.setenv("LFA_CACHE_DIR", str(tmp_path / "cache"))
    buf = io.BytesIO()
    torch.save(build_model("small_cnn", 2, 1).state_dict(), buf)
    blob = buf.getvalue()
    calls = []

    class Response(io.BytesIO):
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    def fake_urlopen(url, timeout):
        calls.append(url)
        return Response(blob)

    monkeypatch.setattr(checkpoints.urllib.request, "urlopen", fake_urlopen)
    digest = hashlib.sha256(blob).hexdigest()
    url = f"https://weights.example.org/pgcon/resnet50.pth#sha256={digest}"
    path = fetch_init(url)
    assert path == init_cache_path(url) and path.read_bytes() == blob
    assert calls == ["https://weights.example.org/pgcon/resnet50.pth"]  # the fragment is not sent
    assert fetch_init(url) == path and len(calls) == 1  # cached
    assert load_init(build_model("small_cnn", 2, 1), url)["sha256"] == digest  # recorded in train_info.json
    with pytest.raises(CheckpointMismatch, match="sha256"):
        fetch_init("https://weights.example.org/other.pth#sha256=" + "0" * 64)
    assert not list((tmp_path / "cache" / "init").glob("*other*"))
    # The cache is keyed by the pin, and the pin is checked on every use, not only on download.
    repinned = url.split("#")[0] + "#sha256=" + "1" * 64
    assert init_cache_path(repinned) != path
    path.write_bytes(blob[:-10] + b"0123456789")  # the cached file changed on disk
    with pytest.raises(CheckpointMismatch, match=rf"the cached {path} has sha256 .*: delete it"):
        fetch_init(url)
    path.write_bytes(blob[: len(blob) // 2])  # truncated, with a pin that no longer holds: also refused
    unpinned = url.split("#")[0]
    init_cache_path(unpinned).parent.mkdir(parents=True, exist_ok=True)
    init_cache_path(unpinned).write_bytes(blob[: len(blob) // 2])
    with pytest.raises(UnreadableCheckpoint, match=rf"train.init: {init_cache_path(unpinned)}: unreadable .*delete"):
        load_init(build_model("small_cnn", 2, 1), unpinned)


# --------------------------------------------------------------------------------- library backbones by name
LIBRARY_MODELS = ["timm:resnet18", "torchvision:resnet18", "torchvision:mobilenet_v3_small",
                  "timm:vit_tiny_patch16_224"]


@pytest.fixture
def offline(monkeypatch):
    """No network: building a model without ``pretrained`` must not fetch anything."""
    import socket

    def refuse(*args, **kwargs):
        raise AssertionError("a model build tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.mark.parametrize("name", LIBRARY_MODELS)
def test_library_backbones_end_in_one_logit_per_class_and_learn(name, offline):
    torch.manual_seed(0)
    info = get_backbone(name)
    assert info.display == name == info.name  # tables and figures show the name as written in the config
    assert get_backbone(name) is info  # resolved once, cached
    assert name not in backbone_names()  # the registered list stays the registered ones
    side = info.fixed_size or 32
    for in_channels in (1, 3):
        model = build_model(name, 3, in_channels).train()
        x = torch.rand(2, in_channels, side, side)
        out = model(x)
        assert out.shape == (2, 3) and out.dtype == torch.float32
        out.square().mean().backward()
        first = next(m for m in model.body.modules() if isinstance(m, torch.nn.Conv2d))
        assert first.in_channels == in_channels  # the first layer takes the images' channels (no repeat)
        assert first.weight.grad is not None and first.weight.grad.abs().sum() > 0
        head = [m for m in model.body.modules() if isinstance(m, torch.nn.Linear)][-1]
        assert head.out_features == 3 and head.weight.grad.abs().sum() > 0


def test_library_backbone_input_sizes():
    vit = get_backbone("timm:vit_tiny_patch16_224")
    assert (vit.min_size, vit.default_size, vit.fixed_size) == (224, 224, 224)
    assert input_size("timm:vit_tiny_patch16_224", 0, 32) == 224  # resized to its fixed side
    with pytest.raises(ValueError, match="224x224 images only"):
        input_size("timm:vit_tiny_patch16_224", 256, 32)
    assert (get_backbone("timm:resnet18").min_size, get_backbone("timm:resnet18").fixed_size) == (32, 0)
    assert input_size("timm:resnet18", 0, 50) == 50
    with pytest.raises(ValueError, match=r"at least 32x32.*train.image_size \(e.g. 224\)"):
        input_size("timm:resnet18", 0, 8)
    assert input_size("torchvision:resnet18", 0, 8) == 8  # torchvision's weights say min_size (1, 1)
    assert get_backbone("torchvision:vit_b_16").fixed_size == 224  # resolved without building it
    assert get_backbone("torchvision:inception_v3").min_size == 75
    assert get_backbone("timm:vit_tiny_patch16_224.augreg_in21k").fixed_size == 224  # a pretrained tag


def test_unknown_library_models_name_the_close_ones():
    from lfa.errors import UnknownNameError

    with pytest.raises(UnknownNameError, match=r"unknown backbone 'timm:resnet181'.*did you mean timm:resnet18\b"):
        get_backbone("timm:resnet181")
    with pytest.raises(UnknownNameError, match=r"did you mean timm:vit_tiny_patch16_224.augreg_in21k"):
        get_backbone("timm:vit_tiny_patch16_224.nope")
    with pytest.raises(UnknownNameError, match=r"torchvision has no model 'resnet-18' \(did you mean "
                                               r"torchvision:resnet18\b"):
        get_backbone("torchvision:resnet-18")
    with pytest.raises(UnknownNameError, match=r"no library 'torchvison' \(did you mean torchvision:resnet18\?\)"):
        get_backbone("torchvison:resnet18")
    with pytest.raises(UnknownNameError, match=r"known backbones: .*; or a library's model: timm:<model>, "
                                               r"torchvision:<model> \(here: timm:resnet18, torchvision:resnet18\)"):
        get_backbone("resnet18")


def _small_config(backbones: list[str]) -> dict:
    return {"datasets": {"d": {"source": "digits", "subset": {"kind": "all"}}},
            "experiments": {"e": {"dataset": "d", "backbones": backbones, "losses": ["bce"]}}}


def test_config_check_takes_library_names_and_refuses_unknown_ones_before_any_job():
    from lfa.errors import ConfigError
    from lfa.pipeline.config import validate_config

    validate_config(_small_config(["timm:resnet18", "torchvision:mobilenet_v3_small", "small_cnn"]))
    with pytest.raises(ConfigError, match=r"experiments.e.backbones: unknown backbone 'timm:resnet181': timm has no "
                                          r"model 'resnet181' \(did you mean timm:resnet18"):
        validate_config(_small_config(["timm:resnet181"]))
    with pytest.raises(ConfigError, match=r"experiments.e.backbones: .*did you mean torchvision:mobilenet_v3_small"):
        validate_config(_small_config(["torchvision:mobilenet_v3_smal"]))


def test_a_missing_library_says_how_to_install_it(monkeypatch):
    import sys

    from lfa import models
    from lfa.errors import ConfigError
    from lfa.pipeline.config import validate_config

    models._resolved.cache_clear()
    monkeypatch.setitem(sys.modules, "timm", None)  # as if timm were not installed
    try:
        with pytest.raises(ImportError, match=r"backbone 'timm:resnet18' needs the timm package.*pip install timm"):
            get_backbone("timm:resnet18")
        with pytest.raises(ConfigError, match=r"experiments.e.backbones: backbone 'timm:resnet18' needs the timm"):
            validate_config(_small_config(["timm:resnet18"]))
    finally:
        models._resolved.cache_clear()


def test_pretrained_weights_are_fetched_only_when_asked_for(monkeypatch):
    """``train.pretrained``: the library's weights (a hub download at run time), replaced here by local ones."""
    import timm.models._builder
    from torchvision.models._api import WeightsEnum

    calls = []
    monkeypatch.setattr(timm.models._builder, "load_pretrained", lambda model, *a, **k: calls.append(type(model)))
    build_model("timm:resnet18", 3, 1)
    assert calls == []
    build_model("timm:resnet18", 3, 1, pretrained=True)
    assert len(calls) == 1

    torch.manual_seed(5)
    imagenet = torchvision.models.resnet18(weights=None).state_dict()  # stands for the ImageNet weights
    monkeypatch.setattr(WeightsEnum, "get_state_dict", lambda self, *a, **k: imagenet)
    model = build_model("torchvision:resnet18", 3, 1, pretrained=True)
    assert torch.equal(model.body.layer1[0].conv1.weight, imagenet["layer1.0.conv1.weight"])
    assert torch.allclose(model.body.conv1.weight, imagenet["conv1.weight"].sum(dim=1, keepdim=True))
    assert model.body.fc.out_features == 3  # a new head of C outputs


def test_load_init_maps_library_backbones_and_names_a_channel_mismatch(tmp_path):
    import timm

    state = {f"module.{k}": v for k, v in timm.create_model("resnet18").state_dict().items()}
    torch.save({"state_dict": state}, tmp_path / "timm_r18.pth")
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), tmp_path / "tv_r18.pth")
    for name, path in (("timm:resnet18", "timm_r18.pth"), ("torchvision:resnet18", "tv_r18.pth")):
        model = build_model(name, 3, 3)
        summary = load_init(model, tmp_path / path)
        assert summary["head_initialised"] == ["body.fc.bias", "body.fc.weight"] and summary["skipped"] == 2
    with pytest.raises(CheckpointMismatch, match=r"body.conv1.weight \(64, 3, 7, 7\) != \(64, 1, 7, 7\)"):
        load_init(build_model("torchvision:resnet18", 3, 1), tmp_path / "tv_r18.pth")


def test_registered_backbones_are_unchanged():
    """The registered names keep their sizes and their preprocessing (the library path added nothing to them)."""
    sizes = {name: (get_backbone(name).display, get_backbone(name).min_size, get_backbone(name).default_size,
                    get_backbone(name).fixed_size) for name in backbone_names()
             if not name.endswith("_test")}  # other tests register their own
    assert sizes == {
        "alexnet": ("AlexNet", 63, 256, 0), "botnet": ("BoTNet-26T", 256, 256, 256),
        "cifar_resnet": ("ResNet-18 (CIFAR)", 8, 32, 0), "cifar_resnet20": ("ResNet-20 (CIFAR)", 8, 32, 0),
        "densenet121": ("DenseNet-121", 32, 256, 0), "resnet50": ("ResNet-50", 32, 256, 0),
        "small_cnn": ("Small CNN", 1, 0, 0),
    }
    grey, rgb = build_model("small_cnn", 2, 1), build_model("resnet50", 2, 1)
    assert grey.normalize.mean.flatten().tolist() == [0.5] and grey.normalize.std.flatten().tolist() == [0.25]
    assert rgb.repeat == 3 and rgb.body.conv1.in_channels == 3  # registered torchvision models still repeat grey
    assert torch.allclose(build_model("resnet50", 2, 3).normalize.mean.flatten(), torch.tensor([0.485, 0.456, 0.406]))
