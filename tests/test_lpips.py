"""LPIPS-VGG: properties with untrained weights, and loading torchvision / lpips weight files."""

from __future__ import annotations

import pytest
import torch

from momentum_gs.errors import UserError
from momentum_gs.eval.lpips import (BACKBONE_FILE, HEAD_KEY, HEADS_FILE, LPIPS, PAPER_CONVENTION,
                                    STANDARD_CONVENTION, LPIPSWeightsMissing, load_lpips)
from tests.helpers.lpips_weights import fake_backbone, fake_heads


@pytest.fixture(scope="module")
def metric() -> LPIPS:
    torch.manual_seed(0)
    return LPIPS().eval()


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.rand(2, 16, 16, 3, generator=torch.Generator().manual_seed(1))


@pytest.fixture
def weight_files(tmp_path, monkeypatch):
    """Fake weight files in a private hub cache; returns (backbone path, heads path, their state dicts)."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    backbone, heads = tmp_path / "hub" / "checkpoints" / BACKBONE_FILE, tmp_path / "hub" / "checkpoints" / HEADS_FILE
    backbone_state, heads_state = fake_backbone(), fake_heads()
    torch.save(backbone_state, backbone)
    torch.save(heads_state, heads)
    return backbone, heads, backbone_state, heads_state


def test_scores_per_image_zero_symmetric_positive(metric, images):
    a, b = images, images.flip(1)
    scores = metric(a, b)
    assert scores.shape == (2,)
    assert metric(a[0], b[0]).shape == ()
    assert torch.allclose(metric(a[0], b[0]), scores[0], atol=1e-6)
    assert torch.allclose(metric(b, a), scores, atol=1e-6)
    assert (scores > 0).all()
    assert torch.allclose(metric(a, a), torch.zeros(2), atol=1e-7)


def test_conventions_differ(metric, images):
    rescaled = LPIPS(normalize=True)
    rescaled.load_state_dict(metric.state_dict())
    assert metric.convention == PAPER_CONVENTION and rescaled.convention == STANDARD_CONVENTION
    assert not torch.allclose(metric(images[0], images[1]), rescaled(images[0], images[1]))


def test_load_from_hub_cache(weight_files, images):
    _, _, backbone_state, heads_state = weight_files
    metric = load_lpips(None, None, "cpu")
    for key, value in metric.features.state_dict().items():
        assert torch.equal(value, backbone_state[f"features.{key}"])
    for i, head in enumerate(metric.heads):
        assert torch.equal(head.weight, heads_state[HEAD_KEY.format(i)])
    assert not metric.training and not any(p.requires_grad for p in metric.parameters())
    assert metric.convention == PAPER_CONVENTION
    assert load_lpips(None, None, "cpu", normalize=True).convention == STANDARD_CONVENTION
    assert metric(images[0], images[1]) > 0


def test_missing_files_name_the_file(weight_files, tmp_path):
    backbone, heads, _, _ = weight_files
    with pytest.raises(LPIPSWeightsMissing, match=HEADS_FILE):
        load_lpips(backbone, tmp_path / HEADS_FILE, "cpu")
    backbone.unlink()
    with pytest.raises(LPIPSWeightsMissing, match=BACKBONE_FILE) as missing:
        load_lpips(None, heads, "cpu")
    assert "\n" not in str(missing.value)
    assert isinstance(missing.value, UserError)


def test_wrong_or_corrupt_file_is_user_error(weight_files, tmp_path):
    backbone, heads, backbone_state, heads_state = weight_files
    wrong = tmp_path / "wrong.pth"
    torch.save({**heads_state, HEAD_KEY.format(2): torch.rand(1, 128, 1, 1)}, wrong)
    with pytest.raises(UserError, match="lin2.model.1.weight") as error:
        load_lpips(backbone, wrong, "cpu")
    assert not isinstance(error.value, LPIPSWeightsMissing)
    torch.save({k: v for k, v in backbone_state.items() if k != "features.28.bias"}, wrong)
    with pytest.raises(UserError, match="features.28.bias"):
        load_lpips(wrong, heads, "cpu")
    wrong.write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="not a readable"):
        load_lpips(wrong, heads, "cpu")


def test_download_only_when_allowed(weight_files, monkeypatch):
    backbone, heads, backbone_state, _ = weight_files
    backbone.unlink()
    fetched = []
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", lambda url, **kw: fetched.append(url) or backbone_state)
    with pytest.raises(LPIPSWeightsMissing):
        load_lpips(None, heads, "cpu")
    assert not fetched
    load_lpips(None, heads, "cpu", allow_download=True)
    assert fetched == [f"https://download.pytorch.org/models/{BACKBONE_FILE}"]

    def offline(url, **kw):
        raise OSError("no network")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(LPIPSWeightsMissing, match="could not download"):
        load_lpips(None, heads, "cpu", allow_download=True)
