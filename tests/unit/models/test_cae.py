import torch

from gonomaly.models import CAE


def test_cae_shapes_and_range():
    torch.manual_seed(0)
    model = CAE((1, 28, 28))
    x = torch.rand(5, 1, 28, 28)
    out = model(x)
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1
    assert model.training_loss(x).shape == (5,)


def test_cae_samples_are_independent(mnist_small):
    torch.manual_seed(0)
    model = CAE((1, 28, 28)).eval()
    x = torch.from_numpy(mnist_small[1][:32])
    with torch.no_grad():
        torch.testing.assert_close(model(x)[3:4], model(x[3:4]), rtol=1e-5, atol=1e-7)
