"""The n-gram part of the names blend: NgramScorer's features and logits against scikit-learn's own
TF-IDF and logistic regression, the blend in Ensemble, and the option through the task."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from biornn.cli.main import main
from biornn.config import resolve
from biornn.data.batching import Vocabulary, pad_batch
from biornn.models import Ensemble, SequenceClassifier
from biornn.models.ngram import MISSING_CLASS_LOGIT, NgramScorer

NAMES = ["Abbas", "Abboud", "Nakamura", "Nakano", "Smith", "Smythe", "Nguyen", "Ngo", "Tanaka", "Haddad",
         "Baker", "Walker", "Sato", "Suzuki", "Nagy", "Horvath", "Kovacs", "Szabo", "Mc Donald", "o'Brien"]
LABELS = [0, 0, 1, 1, 2, 2, 3, 3, 1, 0, 2, 2, 1, 1, 4, 4, 4, 4, 2, 2]


def grams(symbols: list[int], fold: dict[int, int], base: int, n_max: int) -> list[int]:
    """The documented features, written out one n-gram at a time: the framed, folded sequence's
    1..n_max-grams as codes sum_j d_j base**j, the marks alone left out."""
    framed = [base - 2] + [fold[s] for s in symbols] + [base - 1]
    out = []
    for n in range(1, n_max + 1):
        for i in range(len(framed) - n + 1):
            g = framed[i : i + n]
            if n == 1 and g[0] >= base - 2:
                continue
            out.append(sum(d * base**j for j, d in enumerate(g)))
    return out


@pytest.fixture(scope="module")
def fitted():
    vocab = Vocabulary.build(NAMES)
    encoded = [vocab.encode(n) for n in NAMES]
    scorer = NgramScorer.fit(encoded, LABELS, 6, vocab.symbols, n_max=3, C=5.0)  # class 5 never seen
    return vocab, encoded, scorer


def test_features_and_logits_equal_scikit_learn(fitted):
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    vocab, encoded, scorer = fitted
    fold = {i: int(scorer.fold[i]) for i in range(len(vocab))}
    vec = TfidfVectorizer(analyzer=lambda s: grams(s, fold, scorer.base, 3), lowercase=False)
    X = vec.fit_transform(encoded)
    assert scorer.n_features == X.shape[1]
    assert scorer.codes.tolist() == sorted(vec.vocabulary_)
    order = np.argsort([vec.vocabulary_[c] for c in scorer.codes.tolist()])  # scorer column -> sklearn column
    x, lengths = pad_batch(encoded)
    with torch.no_grad():
        v = scorer.features(x, lengths).numpy()
        logits = scorer(x, lengths).numpy()
    want = X.toarray()[:, [vec.vocabulary_[c] for c in scorer.codes.tolist()]]
    assert np.allclose(v, want, atol=1e-6)
    lr = LogisticRegression(C=5.0, max_iter=3000).fit(X, LABELS)
    assert np.allclose(logits[:, :5], lr.decision_function(X), atol=1e-4)
    assert np.all(logits[:, 5] == MISSING_CLASS_LOGIT)  # a class training never showed
    assert len(order) == X.shape[1]


def test_class_weights_weigh_the_likelihood_as_scikit_learn_does(fitted):
    from sklearn.linear_model import LogisticRegression

    vocab, encoded, scorer = fitted
    w = [1.0, 2.0, 0.5, 3.0, 1.5, 0.0]  # class 5 has no names
    weighted = NgramScorer.fit(encoded, LABELS, 6, vocab.symbols, n_max=3, C=5.0, class_weight=w)
    x, lengths = pad_batch(encoded)
    X = weighted.features(x, lengths).double().numpy()
    lr = LogisticRegression(C=5.0, max_iter=3000).fit(X, LABELS, sample_weight=np.asarray(w)[LABELS])
    with torch.no_grad():
        assert np.allclose(weighted(x, lengths).numpy()[:, :5], lr.decision_function(X), atol=1e-4)
        assert not torch.allclose(weighted(x, lengths), scorer(x, lengths), atol=1e-3)  # the weights matter


def test_padding_case_and_unknown_symbols(fitted):
    vocab, encoded, scorer = fitted
    alone = [scorer(*pad_batch([e])) for e in encoded]
    together = scorer(*pad_batch(encoded))
    assert torch.allclose(torch.cat(alone), together, atol=1e-6)  # padding and batch change nothing
    x = torch.tensor([vocab.encode("Nagy")])
    assert torch.allclose(scorer(x), scorer(x, torch.tensor([4])))  # lengths=None: every step is real
    # case folded: "NASAH", "Nasah" and "nasah" are one input (each of its letters is in the vocabulary in both cases)
    folded = [scorer(torch.tensor([vocab.encode(s)])) for s in ("NASAH", "Nasah", "nasah")]
    assert torch.equal(folded[0], folded[1]) and torch.equal(folded[1], folded[2])
    # an unknown symbol contributes no n-gram: "Nagy?" scores as "Nagy" without the n-grams through "?"
    with_unknown = torch.tensor([vocab.encode("Nagy") + [1]])
    assert not torch.allclose(scorer(with_unknown), scorer(x))
    codes, valid = scorer.gram_codes(with_unknown)
    _, found = scorer.columns(codes, valid)
    known = {int(c) for c in scorer.codes}
    assert found.sum() == sum(1 for c in codes[valid].tolist() if c in known)
    # no known n-gram at all: the bias alone, no NaN from the zero vector
    nothing = torch.ones((1, 3), dtype=torch.long)
    assert torch.allclose(scorer(nothing), scorer.bias.unsqueeze(0))


def test_two_classes_and_one_class():
    vocab = Vocabulary.build(["ab", "ba", "aa", "bb"])
    enc = [vocab.encode(s) for s in ["ab", "ba", "aa", "bb"]]
    two = NgramScorer.fit(enc, [0, 1, 0, 1], 2, vocab.symbols)
    p = torch.softmax(two(*pad_batch(enc)), dim=1)
    # scikit-learn's binary form (one row, for class 1) as two rows: the same probabilities
    from sklearn.linear_model import LogisticRegression

    X = two.features(*pad_batch(enc)).double().numpy()
    lr = LogisticRegression(C=10.0, max_iter=3000).fit(X, [0, 1, 0, 1])
    assert np.allclose(p.double().numpy(), lr.predict_proba(X), atol=1e-4)
    assert (two.weight[0] == -two.weight[1]).all()
    one = NgramScorer.fit(enc, [1, 1, 1, 1], 3, vocab.symbols)
    assert one(*pad_batch(enc)).argmax(1).tolist() == [1] * 4
    with pytest.raises(ValueError, match="labels must be in 0..2"):
        NgramScorer.fit(enc, [0, 1, 2, 3], 3, vocab.symbols)


def test_state_round_trip_and_empty(fitted):
    vocab, encoded, scorer = fitted
    again = NgramScorer.empty(len(vocab), scorer.n_features, 6, 3)
    again.load_state_dict(scorer.state_dict())
    assert again.base == scorer.base
    x, lengths = pad_batch(encoded)
    assert torch.equal(again(x, lengths), scorer(x, lengths))


def test_ensemble_blend_is_a_weighted_geometric_mean(fitted):
    vocab, encoded, scorer = fitted
    torch.manual_seed(0)
    members = [SequenceClassifier(len(vocab), 6, hidden_size=4, embedding_dim=3) for _ in range(2)]
    plain = Ensemble(members)
    blend = Ensemble(members, ngram=scorer, ngram_weight=0.25)
    x, lengths = pad_batch(encoded)
    with torch.no_grad():
        want = 0.75 * plain(x, lengths) + 0.25 * torch.log_softmax(scorer(x, lengths), dim=1)
        assert torch.allclose(blend(x, lengths), want, atol=1e-6)
        assert torch.equal(blend.member_logits(x, lengths), plain.member_logits(x, lengths))  # training reads these
        assert torch.allclose(blend.recurrent_logits(x, lengths), plain(x, lengths))
    assert not any(p is t for p in blend.parameters() for t in scorer.buffers())  # nothing of it is trained
    assert "ngram.codes" in blend.state_dict()
    for bad in (1.0, -0.1):
        with pytest.raises(ValueError, match="ngram_weight must be in"):
            Ensemble(members, ngram=scorer, ngram_weight=bad)
    with pytest.raises(ValueError, match="needs a weight"):
        Ensemble(members, ngram=scorer)


def test_the_option_through_train_predict_and_the_config(tmp_path, capsys):
    from conftest import TINY_NAMES, train_tiny_names_run

    out = train_tiny_names_run(tmp_path)  # the names defaults: with the n-gram part
    data_dir = tmp_path / "data"
    capsys.readouterr()
    metrics = json.loads((out / "metrics.json").read_text())
    parts = metrics["parts"]
    assert parts["ngram_weight"] == 0.5 and parts["ngram_features"] > 0 and parts["ngram_fit_seconds"] >= 0
    for part in ("recurrent", "ngram"):
        assert set(parts[part]) == {"accuracy", "balanced_accuracy", "macro_f1"}
    # each part's figures are that part's own: recomputed from the saved model on the test split
    from biornn.evaluate import load_run
    from biornn.metrics import classification_metrics
    from biornn.tasks import names as names_task

    cfg, _, model, meta = load_run(out)
    data = names_task.load(cfg, str(data_dir))
    test = data.splits["test"]
    adjust = cfg.logit_adjustment * torch.tensor(meta["log_prior"])
    with torch.no_grad():
        x, lengths = pad_batch(test.encoded)
        for part, fn in (("recurrent", model.recurrent_logits), ("ngram", model.ngram), (None, model)):
            m = classification_metrics(test.y, (fn(x, lengths) - adjust).argmax(1).numpy(), data.labels)
            want = metrics["test"] if part is None else parts[part]
            assert m["accuracy"] == pytest.approx(want["accuracy"]), part
            assert m["balanced_accuracy"] == pytest.approx(want["balanced_accuracy"]), part
    # explain: the score splits into the LSTMs' share and the n-gram share the attributions leave out
    from biornn.diagnostics import explain_symbols

    symbols = test.encoded[0]
    row = explain_symbols(model, symbols, data.labels, adjust=adjust)
    k = data.labels.index(row["target"])
    with torch.no_grad():
        x1 = torch.tensor([symbols])
        rec = torch.log_softmax(model.recurrent_logits(x1), dim=-1)[0, k]
        q = torch.log_softmax(model.ngram(x1), dim=-1)[0, k]
    assert row["ngram_term"] == pytest.approx(float(0.5 * q), abs=1e-5)
    assert row["score"] == pytest.approx(float(0.5 * rec) + row["ngram_term"] - float(adjust[k]), abs=1e-4)
    assert row["completeness_gap"] < 0.01 * max(1.0, abs(row["score"] - row["score_baseline"]))
    assert main(["predict", str(out), "Nakamura"]) == 0
    assert json.loads(capsys.readouterr().out)["top"][0]["label"]
    # the recurrent model alone: no n-gram part, no parts
    alone = tmp_path / "alone"
    assert main(["train", "names", "--data-dir", str(data_dir), "--out", str(alone), *TINY_NAMES, "threads=1",
                 "ngram_blend=0"]) == 0
    assert "parts" not in json.loads((alone / "metrics.json").read_text())
    capsys.readouterr()
    # config.json edited to a blend the weights do not have: one line naming the file
    cfg = json.loads((alone / "config.json").read_text())
    cfg["ngram_blend"] = 0.5
    (alone / "config.json").write_text(json.dumps(cfg))
    assert main(["predict", str(alone), "Nakamura"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "model.safetensors" in err[0] and "no n-gram part" in err[0], err


@pytest.mark.parametrize("override,message", [
    ("ngram_blend=1", "ngram_blend must be in [0, 1)"),
    ("ngram_blend=-0.5", "ngram_blend must be in [0, 1)"),
])
def test_bad_blend_weights_are_refused(override, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace(")", r"\)")):
        resolve("names", overrides=[override]).validate()


def test_other_tasks_refuse_the_blend(tmp_path, capsys):
    assert main(["train", "splice", "--data-dir", str(tmp_path), "--out", str(tmp_path / "s"), "ngram_blend=0.5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "ngram_blend" in err[0] and "names" in err[0], err
    assert not (tmp_path / "s").exists()


def test_on_a_device_lengths_stay_on_the_cpu(fitted):
    """device.place keeps lengths on the CPU and moves the rest (a GPU, here PyTorch's meta device as in
    tests/test_device.py): the n-gram part takes CPU lengths beside device symbols, and is hooked like
    the members, so that its output comes back to the CPU beside theirs."""
    import copy

    from biornn import device as devices

    vocab, encoded, scorer = fitted
    x, lengths = pad_batch(encoded)
    on_meta = copy.deepcopy(scorer).to("meta")
    codes, valid = on_meta.gram_codes(x.to("meta"), lengths)
    assert codes.device.type == "meta" and codes.shape == scorer.gram_codes(x, lengths)[0].shape
    members = [SequenceClassifier(len(vocab), 6, hidden_size=4, embedding_dim=3)]
    blend = Ensemble(members, ngram=copy.deepcopy(scorer), ngram_weight=0.5)
    assert devices.hooked_modules(blend) == [blend, *blend.members, blend.ngram]


def test_damaged_ngram_parts_are_refused(fitted):
    vocab, encoded, scorer = fitted
    scorer.check()  # a fitted one passes

    def damaged(**changes):
        import copy

        s = copy.deepcopy(scorer)
        for name, value in changes.items():
            getattr(s, name).copy_(value)
        return s

    codes = scorer.codes.clone()
    fold = scorer.fold.clone()
    cases = [
        (damaged(codes=codes.flip(0)), "not sorted, distinct"),
        (damaged(fold=-fold), "symbol table"),
        (damaged(fold=torch.cat([fold[:1], torch.tensor([1]), fold[2:]])), "symbol table"),
        (damaged(fold=fold * 50_000_000), "overflow 64-bit codes"),
        (damaged(idf=torch.full_like(scorer.idf, float("nan"))), "ngram.idf holds NaN"),
        (damaged(weight=torch.full_like(scorer.weight, float("inf"))), "ngram.weight holds NaN or infinite"),
        (NgramScorer.empty(len(vocab), 0, 6, 3), "no n-gram"),
    ]
    for bad, message in cases:
        with pytest.raises(ValueError, match=message):
            bad.check()


def test_a_damaged_file_is_one_line(tmp_path, capsys):
    """An n-gram tensor edited in model.safetensors: one line naming the file, exit 2 -- for a shape
    the config cannot take and for numbers that cannot be a fitted scorer's."""
    from safetensors.torch import load_file, save_file
    from safetensors import safe_open

    from conftest import train_tiny_names_run

    run = train_tiny_names_run(tmp_path)
    capsys.readouterr()
    weights = run / "model.safetensors"
    with safe_open(str(weights), "pt") as f:
        metadata = f.metadata()
    tensors = load_file(str(weights))
    for key, value, message in [
        ("ngram.codes", tensors["ngram.codes"].flip(0).contiguous(), "not sorted, distinct"),
        ("ngram.codes", tensors["ngram.codes"].reshape(1, -1).contiguous(), "wrong shapes"),
    ]:
        save_file({**tensors, key: value}, str(weights), metadata=metadata)
        assert main(["predict", str(run), "Nakamura"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "model.safetensors" in err[0] and message in err[0], err


def test_another_task_run_edited_to_blend_is_refused(tmp_path, capsys):
    from conftest import train_tiny_names_run

    run = train_tiny_names_run(tmp_path)
    cfg = json.loads((run / "config.json").read_text())
    cfg["task"] = "splice"  # as if a splice run's config.json had gained ngram_blend=0.5
    (run / "config.json").write_text(json.dumps(cfg))
    capsys.readouterr()
    assert main(["evaluate", str(run)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "config.json" in err[0] and "applies to the names task" in err[0], err


def test_names_evaluate_split_subtracts_the_adjustment():
    """The logit adjustment's sign: argmax(logit - tau log prior) favours the rare class."""
    from biornn.tasks import names as names_task

    split = names_task.Split(texts=["a", "b"], encoded=[[2], [2]], y=np.array([1, 1]))
    logits = torch.tensor([[1.0, 0.8], [1.0, 0.8]])  # class 0 a little ahead
    prior = torch.log(torch.tensor([0.9, 0.1]))  # and far more frequent
    plain, pred = names_task.evaluate_split(None, split, ["common", "rare"], None, logits=logits)
    assert pred.tolist() == [0, 0] and plain["accuracy"] == 0.0
    adjusted, pred = names_task.evaluate_split(None, split, ["common", "rare"], 0.5 * prior, logits=logits)
    assert pred.tolist() == [1, 1] and adjusted["accuracy"] == 1.0
