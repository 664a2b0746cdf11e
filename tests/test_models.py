"""Backbones (lfa.models) and initial weights (lfa.checkpoints.load_init)."""

from __future__ import annotations

import hashlib
import io
import time

import pytest
import torch
import torchvision

from lfa import checkpoints
from lfa.checkpoints import CheckpointMismatch, UnreadableCheckpoint, fetch_init, init_cache_path, load_init
from lfa.models import backbone_names, build_model, get_backbone, input_size
from lfa.paper import TABLES

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
