import numpy as np
import pytest

from biornn.metrics import classification_metrics, confusion_matrix


def test_against_hand_counts():
    y = [0, 0, 0, 1, 1, 2]
    p = [0, 0, 1, 1, 0, 2]
    m = classification_metrics(y, p, ["a", "b", "c"])
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["balanced_accuracy"] == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
    f1_a = 2 * (2 / 3) * (2 / 3) / (4 / 3)
    f1_b = 2 * 0.5 * 0.5 / 1.0
    assert m["macro_f1"] == pytest.approx((f1_a + f1_b + 1.0) / 3)
    assert m["per_class"]["b"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}


def test_absent_class_is_left_out_of_macro_averages():
    m = classification_metrics([0, 0, 1], [0, 2, 1], ["a", "b", "c"])
    assert m["balanced_accuracy"] == pytest.approx((0.5 + 1.0) / 2)
    # c is predicted once but never true: its F1 of 0 is not averaged in (a: 2/3, b: 1)
    assert m["macro_f1"] == pytest.approx((2 / 3 + 1.0) / 2)
    assert m["per_class"]["c"]["support"] == 0


def test_matches_sklearn_when_available():
    sk = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    y, p = rng.integers(0, 5, 300), rng.integers(0, 5, 300)
    m = classification_metrics(y, p, list("abcde"))
    assert m["balanced_accuracy"] == pytest.approx(sk.balanced_accuracy_score(y, p))
    assert m["macro_f1"] == pytest.approx(sk.f1_score(y, p, average="macro"))
    np.testing.assert_array_equal(confusion_matrix(y, p, 5), sk.confusion_matrix(y, p, labels=range(5)))


def test_bad_labels():
    with pytest.raises(ValueError, match="y_pred"):
        confusion_matrix([0, 1], [0, 5], 3)
    for y_true in ([-1, 0], [0, 3]):  # -1 was counted as the last class if unchecked
        with pytest.raises(ValueError, match="y_true has labels outside 0..2"):
            confusion_matrix(y_true, [0, 0], 3)
