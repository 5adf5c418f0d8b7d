import numpy as np
import pytest
import torch
import torchvision

from maskopt.core.errors import MaskoptError
from maskopt.core.signed_distance import normalized_signed_distance
from maskopt.models import losses


def test_hinge_losses_on_hand_made_logits():
    real = torch.tensor([2.0, 0.5])
    fake = torch.tensor([-2.0, 0.5])
    # D: (mean(relu(1 - real)) + mean(relu(1 + fake))) / 2 = (0.25 + 0.75) / 2
    assert losses.hinge_discriminator_loss(real, fake).item() == pytest.approx(0.5)
    assert losses.hinge_generator_loss(fake).item() == pytest.approx(0.75)


def test_feature_matching_sums_l1_per_layer_and_ignores_real_gradient():
    real = [torch.zeros(1, 2, 2, 2, requires_grad=True), torch.ones(1, 1, 3, 3, requires_grad=True)]
    fake = [torch.full((1, 2, 2, 2), 0.5, requires_grad=True), torch.full((1, 1, 3, 3), 3.0)]
    value = losses.feature_matching_loss(fake, real)
    assert value.item() == pytest.approx(0.5 + 2.0)
    value.backward()
    assert real[0].grad is None and fake[0].grad is not None


def test_gram_matrix_matches_naive_computation():
    torch.manual_seed(0)
    features = torch.randn(2, 3, 4, 5)
    gram = losses.gram_matrix(features)
    for n in range(2):
        for i in range(3):
            for j in range(3):
                naive = sum(features[n, i, y, x] * features[n, j, y, x]
                            for y in range(4) for x in range(5)) / (3 * 4 * 5)
                assert gram[n, i, j].item() == pytest.approx(naive.item(), abs=1e-6)


def test_masked_cross_entropy_ignores_known_and_unlabeled_pixels():
    logits = torch.zeros(1, 3, 2, 2)
    logits[0, 1] = 10  # predicts class 1 everywhere
    target = torch.tensor([[[1, 2], [0, 1]]])
    mask = torch.tensor([[[[1.0, 0.0], [1.0, 1.0]]]])
    value = losses.masked_cross_entropy(logits, target, mask)
    # counted: (0,0) class 1 right, (1,1) class 1 right; (1,0) is unlabeled, (0,1) known
    assert value.item() == pytest.approx(-torch.log_softmax(logits[0, :, 0, 0], 0)[1].item())


def test_vgg_random_mode_warns_and_imagenet_failure_is_explicit(monkeypatch):
    with pytest.warns(UserWarning, match="random VGG19"):
        vgg = losses.VGG19Features("random")
    feats = vgg(torch.rand(1, 3, 32, 32))
    assert set(losses.PERCEPTUAL_LAYERS + losses.STYLE_LAYERS) <= set(feats)
    assert feats["relu1_1"].shape == (1, 64, 32, 32) and (feats["relu1_1"] >= 0).all()
    assert not any(p.requires_grad for p in vgg.parameters())

    def offline(**_):
        raise OSError("no network")
    monkeypatch.setattr(torchvision.models, "vgg19", offline)
    with pytest.raises(MaskoptError, match="vgg_weights: random"):
        losses.VGG19Features("imagenet")


def test_perceptual_and_style_are_zero_for_identical_images():
    with pytest.warns(UserWarning):
        vgg = losses.VGG19Features("random")
    image = torch.rand(1, 3, 32, 32)
    same = vgg(image)
    other = vgg(torch.rand(1, 3, 32, 32))
    assert losses.perceptual_loss(same, same).item() == 0
    assert losses.style_loss(same, same).item() == 0
    assert losses.perceptual_loss(other, same).item() > 0


def _square(size=64, lo=22, hi=42):
    mask = np.zeros((size, size), bool)
    mask[lo:hi, lo:hi] = True
    return mask


def test_signed_distance_is_negative_inside_zero_at_boundary_normalized():
    phi = normalized_signed_distance(_square())
    assert phi.min() >= -1 and phi.max() <= 1
    assert phi[32, 32] < 0 and phi[0, 0] > 0
    assert phi[22, 30] == 0  # first row inside
    assert phi[21, 30] == pytest.approx(1 / 64)  # one pixel outside


def _grown(mask, d):
    from scipy import ndimage

    if d == 0:
        return mask
    op = ndimage.binary_dilation if d > 0 else ndimage.binary_erosion
    return op(mask, np.ones((3, 3), bool), iterations=abs(d))


def test_mask_expansion_loss_is_lowest_for_the_square_grown_by_the_alpha_band():
    gt = _square()
    phi = torch.from_numpy(normalized_signed_distance(gt))
    alpha = 3.5 / 64  # a 3.5 px band at 64 px
    values = {d: losses.mask_expansion_loss(torch.from_numpy(_grown(gt, d)).float(), phi,
                                            alpha).item() for d in range(-3, 9)}
    assert min(values, key=values.get) == 3
    # and the exact optimum is the band itself
    band = (phi < alpha).float()
    assert losses.mask_expansion_loss(band, phi, alpha).item() <= min(values.values())


def test_mask_expansion_gradient_pulls_the_band_in_and_pushes_the_rest_out():
    gt = _square()
    phi = torch.from_numpy(normalized_signed_distance(gt))
    soft = torch.full(gt.shape, 0.5, requires_grad=True)
    losses.mask_expansion_loss(soft, phi, 0.05).backward()
    grad = soft.grad
    assert (grad[phi < 0.05] < 0).all()  # descent raises m̂ inside the object and band
    assert (grad[phi > 0.05] > 0).all()
    assert grad[32, 32] < 0 and grad[21, 30] < 0  # inside, and 1 px outside (in band)
    assert grad[0, 0] > 0


def test_mask_expansion_shape_mismatch_is_an_error():
    with pytest.raises(MaskoptError, match="differ"):
        losses.mask_expansion_loss(torch.zeros(4, 4), torch.zeros(5, 5), 0.03)
