import numpy as np
import torch

from gonomaly.models import ConvGON, gradient_origin_latent


def _model(seed=0, shape=(1, 28, 28)):
    torch.manual_seed(seed)
    return ConvGON(shape, latent_dim=100)


def test_latent_is_negative_gradient_of_each_samples_own_loss(mnist_small):
    model = _model()
    x = torch.from_numpy(mnist_small[1][:8])
    z = model.encode(x)
    for i in range(len(x)):
        z0 = torch.zeros(1, 100, requires_grad=True)
        loss = ((model.decode(z0) - x[i:i + 1]) ** 2).sum()
        (grad,) = torch.autograd.grad(loss, z0)
        torch.testing.assert_close(z[i:i + 1], -grad, rtol=1e-5, atol=1e-6)
    # The closed form at the origin, 2 J^T (x - F(0)), is the same vector.
    jacobian = torch.autograd.functional.jacobian(lambda v: model.decode(v).flatten(), torch.zeros(1, 100))
    jacobian = jacobian.reshape(784, 100)
    residual = (x - model.decode(torch.zeros(1, 100))).flatten(1)
    torch.testing.assert_close(z, 2 * residual @ jacobian, rtol=1e-4, atol=1e-5)


def test_latent_does_not_depend_on_batch_size_or_batch_mates(mnist_small):
    model = _model()
    x = torch.from_numpy(mnist_small[1][:256])
    together = model.encode(x)
    alone = torch.cat([model.encode(x[i:i + 1]) for i in range(0, 256, 37)])
    torch.testing.assert_close(together[::37], alone, rtol=1e-5, atol=1e-6)
    # Replacing the batch mates leaves a sample's latent unchanged.
    shuffled = torch.cat([x[:1], torch.flip(x[1:], [0])])
    torch.testing.assert_close(model.encode(shuffled)[0], together[0], rtol=1e-5, atol=1e-6)


def test_train_and_eval_mode_agree(mnist_small):
    model = _model()
    x = torch.from_numpy(mnist_small[1][:64])
    model.train()
    with torch.no_grad():
        train_mode = model(x)
    model.eval()
    with torch.no_grad():
        eval_mode = model(x)
    torch.testing.assert_close(train_mode, eval_mode, rtol=1e-5, atol=1e-7)


def test_reconstruction_is_not_the_origin_image(mnist_small):
    model = _model()
    x = torch.from_numpy(mnist_small[1][:4])
    with torch.no_grad():
        at_origin = model.decode(torch.zeros(1, 100))
        reconstruction = model(x)
    assert (reconstruction - at_origin).abs().max() > 1e-4
    assert not torch.allclose(reconstruction[0], reconstruction[1])


def test_training_step_back_propagates_through_the_gradient_step(mnist_small):
    model = _model()
    x = torch.from_numpy(mnist_small[0][:16])
    z = gradient_origin_latent(model.decoder, x, 100, create_graph=True)
    assert z.requires_grad  # create_graph keeps the step differentiable
    loss = model.training_loss(x).mean()
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_closed_form_training_step_equals_autograd_step(mnist_small):
    """The fast training step gives the loss and weight gradients of the definition
    (inner gradient by autograd with create_graph=True), and the same weights after steps."""
    x = torch.from_numpy(mnist_small[0][:128])
    fast, reference = _model(seed=1), _model(seed=1)
    fast_loss = fast.training_loss(x).mean()
    reference_loss = reference.autograd_training_loss(x).mean()
    torch.testing.assert_close(fast_loss, reference_loss, rtol=1e-5, atol=1e-5)
    fast_grads = torch.autograd.grad(fast_loss, list(fast.parameters()))
    reference_grads = torch.autograd.grad(reference_loss, list(reference.parameters()))
    for a, b in zip(fast_grads, reference_grads):
        assert (a - b).abs().max() <= 1e-5 * b.abs().max()
    optimisers = [torch.optim.Adam(m.parameters(), lr=1e-3) for m in (fast, reference)]
    losses = {"fast": [], "reference": []}
    for step in range(5):
        batch = torch.from_numpy(mnist_small[0][step * 64:(step + 1) * 64])
        for name, model, optimiser in (("fast", fast, optimisers[0]),
                                       ("reference", reference, optimisers[1])):
            loss = (model.training_loss(batch) if name == "fast"
                    else model.autograd_training_loss(batch)).mean()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            losses[name].append(loss.item())
    np.testing.assert_allclose(losses["fast"], losses["reference"], rtol=1e-4)
    for a, b in zip(fast.parameters(), reference.parameters()):
        # Adam divides by the gradient scale, so float noise of tiny gradients shows in a few
        # weights; every weight moved ~1e-3 per step.
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4)


def test_training_reduces_loss_and_beats_the_origin_image(trained_gon, mnist_small):
    losses = trained_gon.loss_history_
    assert np.mean(losses[-10:]) < 0.5 * np.mean(losses[:10])
    held_out = mnist_small[1]
    gon_error = trained_gon.score_samples(held_out).mean()
    with torch.no_grad():
        origin = trained_gon.model_.decode(torch.zeros(1, 100)).numpy()
    origin_error = ((origin - held_out) ** 2).reshape(len(held_out), -1).mean(1).mean()
    assert gon_error < 0.5 * origin_error


def test_power_of_two_sizes_and_colour(mnist_small):
    model = _model(shape=(3, 64, 64))
    z = torch.randn(2, 100)
    assert model.decode(z).shape == (2, 3, 64, 64)
    x = torch.rand(2, 3, 64, 64)
    assert model(x).shape == x.shape


def test_closed_form_encoder_matches_autograd_on_real_digits(trained_gon, mnist_small):
    model = trained_gon.model_
    x = torch.from_numpy(mnist_small[1][:200])
    model.eval().prepare_closed_form()
    with torch.no_grad():
        closed = model.encode(x)
        model.closed_form, saved = None, model.closed_form
        autograd = model.encode(x)
        model.closed_form = saved
    scale = autograd.abs().max()
    assert (closed - autograd).abs().max() / scale < 1e-5
    with torch.no_grad():
        torch.testing.assert_close(model.decode(closed), model.decode(autograd), rtol=1e-5, atol=1e-5)


def test_training_mode_drops_the_closed_form_and_uses_autograd(mnist_small):
    model = _model().eval().prepare_closed_form()
    assert model.closed_form is not None
    model.train()
    assert model.closed_form is None
    x = torch.from_numpy(mnist_small[0][:4])
    z = model.encode(x, create_graph=True)
    assert z.requires_grad  # the training path back-propagates through the gradient step
    # The detector prepares it lazily for scoring and the state dict never contains it.
    assert not any("closed_form" in k for k in model.state_dict())
