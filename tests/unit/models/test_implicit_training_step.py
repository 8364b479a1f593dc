"""The implicit GON's fast training step against the definition: F(0) and J by one backward pass
against forward mode, bf16 hidden products and coordinate subsets against the float32 step over
every pixel, on real digits."""

import pytest
import torch

from gonomaly.models import GradientOriginNetwork, ImplicitGON

SHAPE = (1, 28, 28)


def gradients(loss, model):
    return torch.autograd.grad(loss, list(model.parameters()))


def relative_error(a, b):
    return float((a - b).norm() / b.norm())


@pytest.fixture(scope="module")
def batch(mnist_small):
    return torch.from_numpy(mnist_small[0][:16])


@pytest.mark.parametrize("shape, fourier", [(SHAPE, 0), ((3, 12, 10), 2)], ids=["digits", "colour"])
def test_origin_terms_by_backward_pass_equal_forward_mode(shape, fourier):
    torch.manual_seed(0)
    model = ImplicitGON(shape, latent_dim=8, width=48, fourier_features=fourier)
    fast, reference = model.origin_terms(), GradientOriginNetwork.origin_terms(model)
    for a, b in zip(fast, reference):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    weights = torch.randn_like(fast[1])  # the weight gradients of a function of F(0) and J too
    fast_grads = gradients(fast[0].sum() + (fast[1] * weights).sum(), model)
    reference_grads = gradients(reference[0].sum() + (reference[1] * weights).sum(), model)
    for a, b in zip(fast_grads, reference_grads):
        assert relative_error(a, b) < 1e-5


def test_training_step_equals_the_forward_mode_step(batch):
    torch.manual_seed(0)
    model = ImplicitGON(SHAPE, latent_dim=16, width=64)
    fast = model.training_loss(batch).mean()

    class ForwardMode(ImplicitGON):
        origin_terms = GradientOriginNetwork.origin_terms

    reference = ForwardMode.training_loss(model, batch).mean()
    torch.testing.assert_close(fast, reference, rtol=1e-5, atol=0)
    for a, b in zip(gradients(fast, model), gradients(reference, model)):
        assert relative_error(a, b) < 1e-4


def test_bf16_step_is_within_tolerance_of_float32(batch):
    """bf16 hidden products (8 significant bits) against float32, at the default width: the loss
    within 0.2% and every weight gradient within 2% (relative L2; measured: 0.005% and 0.45%),
    the whole gradient's direction within cosine 0.999. The gradient-origin step stays float32: the latents equal."""
    torch.manual_seed(0)
    fp32 = ImplicitGON(SHAPE)
    bf16 = ImplicitGON(SHAPE, training_precision="bf16")
    bf16.load_state_dict(fp32.state_dict())
    torch.testing.assert_close(bf16.closed_form_latent(batch), fp32.closed_form_latent(batch), rtol=0, atol=0)
    loss_fp32, loss_bf16 = fp32.training_loss(batch).mean(), bf16.training_loss(batch).mean()
    assert abs(loss_bf16.item() - loss_fp32.item()) < 0.002 * loss_fp32.item()
    grads_fp32, grads_bf16 = gradients(loss_fp32, fp32), gradients(loss_bf16, bf16)
    for a, b in zip(grads_bf16, grads_fp32):
        assert relative_error(a, b) < 0.02
    flat_bf16, flat_fp32 = torch.cat([g.flatten() for g in grads_bf16]), torch.cat([g.flatten() for g in grads_fp32])
    assert torch.nn.functional.cosine_similarity(flat_bf16, flat_fp32, dim=0) > 0.999


def test_every_pixel_fraction_is_the_full_step_and_draws_nothing(batch):
    torch.manual_seed(0)
    model = ImplicitGON(SHAPE, latent_dim=8, width=32, coordinate_fraction=1.0)
    state = torch.get_rng_state()
    full = (model.training_reconstruction(batch) - batch).pow(2).flatten(1).sum(1)
    torch.testing.assert_close(model.training_loss(batch), full, rtol=0, atol=0)
    assert torch.equal(torch.get_rng_state(), state)


def test_coordinate_subset_is_the_full_error_at_the_drawn_pixels(batch):
    torch.manual_seed(0)
    model = ImplicitGON(SHAPE, latent_dim=8, width=32, coordinate_fraction=0.25)
    torch.manual_seed(1)
    loss = model.training_loss(batch)
    torch.manual_seed(1)
    pixels = model.sampled_pixels(len(batch), batch.device)
    assert pixels.shape == (16, 196) and all(len(set(row.tolist())) == 196 for row in pixels)
    full_error = (model.training_reconstruction(batch) - batch).pow(2).flatten(1)
    torch.testing.assert_close(loss, full_error.gather(1, pixels).sum(1) * 4, rtol=1e-5, atol=1e-6)


def test_coordinate_subset_loss_and_gradient_are_unbiased(batch):
    """Averaged over 400 draws, the subset step's loss and gradient approach the full step's
    (the Monte Carlo error of the mean shrinks as 1/sqrt(draws): within 3% here)."""
    torch.manual_seed(0)
    model = ImplicitGON(SHAPE, latent_dim=8, width=32, coordinate_fraction=0.25)
    x = batch[:4]
    full = (model.training_reconstruction(x) - x).pow(2).flatten(1).sum(1).mean()
    full_grads = gradients(full, model)
    losses, sums = [], [torch.zeros_like(g) for g in full_grads]
    for _ in range(400):
        loss = model.training_loss(x).mean()
        losses.append(loss.item())
        sums = [s + g for s, g in zip(sums, gradients(loss, model))]
    assert abs(sum(losses) / 400 - full.item()) < 0.03 * full.item()
    for total, reference in zip(sums, full_grads):
        assert relative_error(total / 400, reference) < 0.03
