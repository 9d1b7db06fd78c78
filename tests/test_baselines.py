"""The baselines: n-gram logistic regression and the PyTorch tutorial's RNN, on tiny made-up data."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from biornn.baselines import (
    N_LETTERS,
    NgramLogReg,
    TutorialNet,
    TrainingDiverged,
    TutorialRNN,
    evaluate_probs,
    line_to_indices,
    unicode_to_ascii,
)


def make_names(n_per_class: tuple[int, ...] = (40, 40), seed: int = 0) -> tuple[list[str], np.ndarray]:
    """Made-up "languages": class 0 names end in -ski and use k/z, class 1 end in -oto and use t/m."""
    rng = np.random.default_rng(seed)
    parts = [("kaz", "zor", "wik", "bro", "cza"), ("ta", "mo", "ki", "mi", "no")]
    ends = ["ski", "oto"]
    texts, labels = [], []
    for k, n in enumerate(n_per_class):
        for _ in range(n):
            stem = "".join(rng.choice(parts[k], size=rng.integers(1, 3)))
            texts.append((stem + ends[k]).capitalize())
            labels.append(k)
    return texts, np.asarray(labels)


def held_out(seed: int = 1) -> tuple[list[str], np.ndarray]:
    return make_names((20, 20), seed=seed)


# ---------------------------------------------------------------- evaluate_probs


def test_evaluate_probs_uses_argmax_and_reports_log_loss():
    probs = np.array([[0.8, 0.2, 0.0], [0.1, 0.9, 0.0], [0.5, 0.2, 0.3]])
    m = evaluate_probs(probs, [0, 1, 1], ["a", "b", "c"])
    assert m["accuracy"] == pytest.approx(2 / 3)
    assert m["balanced_accuracy"] == pytest.approx(0.75)  # class c absent: left out
    assert m["log_loss"] == pytest.approx(-(np.log(0.8) + np.log(0.9) + np.log(0.2)) / 3)
    with pytest.raises(ValueError):
        evaluate_probs(probs[:, :2], [0, 1, 1], ["a", "b", "c"])


# ---------------------------------------------------------------- NgramLogReg

# scikit-learn is an optional dependency: only these tests need it
needs_sklearn = pytest.mark.skipif(importlib.util.find_spec("sklearn") is None, reason="scikit-learn not installed")


@needs_sklearn
@pytest.mark.parametrize("analyzer", ["char_wb", "char"])
def test_ngram_logreg_learns_the_toy_languages(analyzer):
    texts, y = make_names()
    xt, yt = held_out()
    m = NgramLogReg(analyzer=analyzer).fit(texts, y, n_classes=2)
    assert (m.predict(xt) == yt).mean() > 0.9


@needs_sklearn
def test_ngram_logreg_probabilities_have_a_column_per_class():
    texts, y = make_names()
    third = ["Qqqxx", "Xxqq"]
    m = NgramLogReg().fit(texts, y, n_classes=4)  # classes 2 and 3 never seen
    p = m.predict_proba(held_out()[0] + third)
    assert p.shape == (42, 4)
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    assert np.all(p[:, 2:] == 0)
    # one training class: certain of it, still K columns
    one = NgramLogReg().fit(texts[:5], y[:5], n_classes=3)
    np.testing.assert_array_equal(one.predict_proba(["Abc"]), [[1.0, 0.0, 0.0]])


@needs_sklearn
def test_ngram_logreg_balanced_weights_move_the_fit_towards_the_minority():
    # 60 of class 0, 6 of class 1, with mixed names that carry both classes' n-grams
    texts, y = make_names((60, 6), seed=2)
    mixed = [a[:-3] + b[-3:].lower() for a, b in zip(texts[:6], texts[60:66])]
    texts, y = texts + mixed, np.concatenate([y, np.zeros(len(mixed), dtype=np.int64)])
    probe = held_out(seed=3)[0]
    plain = NgramLogReg(C=1.0).fit(texts, y, 2).predict_proba(probe)
    balanced = NgramLogReg(C=1.0, class_weight="balanced").fit(texts, y, 2).predict_proba(probe)
    assert not np.allclose(plain, balanced)
    assert balanced[:, 1].mean() > plain[:, 1].mean()


@needs_sklearn
def test_ngram_logreg_rejects_bad_arguments():
    with pytest.raises(ValueError, match="analyzer must be 'char' or 'char_wb', got 'word'"):
        NgramLogReg(analyzer="word")
    with pytest.raises(ValueError, match="class_weight must be None or 'balanced', got 'auto'"):
        NgramLogReg(class_weight="auto")
    with pytest.raises(ValueError, match=r"labels must lie in 0\.\.1"):
        NgramLogReg().fit(["a", "b"], [0, 2], n_classes=2)


# ---------------------------------------------------------------- TutorialRNN


def test_unicode_to_ascii_is_the_tutorials():
    assert unicode_to_ascii("Ślusàrski") == "Slusarski"
    assert unicode_to_ascii("O'Néal, Jr.") == "O'Neal, Jr."
    assert unicode_to_ascii("Groß-Łukasz") == "Groukasz"  # ß, Ł and - are not in the alphabet
    assert unicode_to_ascii("Ōta") == "Ota"
    assert N_LETTERS == 57
    np.testing.assert_array_equal(line_to_indices("aA'"), [0, 26, 56])


def test_tutorial_rnn_learns_the_toy_languages():
    texts, y = make_names()
    xt, yt = held_out()
    m = TutorialRNN().fit(texts, y, n_classes=2, steps=2000, seed=0)
    assert (m.predict(xt) == yt).mean() > 0.8
    assert m.losses_[-1] < m.losses_[0]


def test_tutorial_rnn_is_deterministic_for_a_seed_and_leaves_global_rng_alone():
    texts, y = make_names()
    state = torch.get_rng_state()
    a = TutorialRNN(hidden_size=32).fit(texts, y, 2, steps=300, seed=5)
    b = TutorialRNN(hidden_size=32).fit(texts, y, 2, steps=300, seed=5)
    c = TutorialRNN(hidden_size=32).fit(texts, y, 2, steps=300, seed=6)
    assert torch.equal(state, torch.get_rng_state())
    xt = held_out()[0]
    np.testing.assert_array_equal(a.predict_proba(xt), b.predict_proba(xt))
    assert not np.array_equal(a.predict_proba(xt), c.predict_proba(xt))


def test_tutorial_rnn_steps_match_the_tutorial_with_autograd():
    """The NumPy BPTT equals the tutorial's train(): TutorialNet, NLLLoss, backward, p -= lr * grad."""
    texts, y = make_names(seed=4)
    m = TutorialRNN(hidden_size=16)
    m._init_params(3, seed=0)
    net = m.to_module()
    criterion = torch.nn.NLLLoss()
    for line, k in zip(texts[::7] + ["A", "Aa"], list(y[::7]) + [2, 1]):
        seq = line_to_indices(unicode_to_ascii(line))
        line_tensor = torch.zeros(len(seq), 1, N_LETTERS)  # the tutorial's lineToTensor
        line_tensor[torch.arange(len(seq)), 0, torch.from_numpy(seq)] = 1
        hidden = net.init_hidden()
        net.zero_grad()
        for i in range(line_tensor.size(0)):
            output, hidden = net(line_tensor[i], hidden)
        loss = criterion(output, torch.tensor([int(k)]))
        loss.backward()
        with torch.no_grad():
            for p in net.parameters():
                if p.grad is not None:  # a one-letter name never reaches i2h
                    p.add_(p.grad, alpha=-m.learning_rate)
        assert m._sgd_step(seq, int(k)) == pytest.approx(loss.item(), abs=1e-5)
    ref = TutorialRNN().from_module(net)
    for name in ("Wx_", "Wh_", "b_", "Vx_", "Vh_", "c_"):
        np.testing.assert_allclose(getattr(m, name), getattr(ref, name), atol=1e-6, err_msg=name)
    # and the forward pass agrees with the module's
    with torch.no_grad():
        seq = line_to_indices("Kazski")
        hidden = net.init_hidden()
        for a in seq:
            output, hidden = net(torch.nn.functional.one_hot(torch.tensor([int(a)]), N_LETTERS).float(), hidden)
    np.testing.assert_allclose(m.predict_proba(["Kazski"])[0], output.exp()[0].numpy(), atol=1e-6)


def test_tutorial_rnn_probabilities_and_odd_inputs():
    texts, y = make_names()
    m = TutorialRNN(hidden_size=16).fit(texts + ["Łß"], np.append(y, 1), n_classes=3, steps=200)
    p = m.predict_proba(["Kazski", "", "ß", "Ta"])
    assert p.shape == (4, 3)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(p[1], 1 / 3)  # empty after transliteration: uniform
    assert isinstance(m.to_module(), TutorialNet)
    with pytest.raises(ValueError, match="no training name is left after transliteration"):
        TutorialRNN().fit(["ß"], [0], 1, steps=10)


def test_tutorial_rnn_reports_divergence():
    texts, y = make_names()
    with pytest.raises(TrainingDiverged) as e:
        TutorialRNN(learning_rate=5.0).fit(texts, y, 2, steps=2000)
    assert 1 <= e.value.step <= 2000
