"""The ``translate`` task and its encoder-decoder: model shapes, greedy and beam decoding, the generated
ORFs against Biopython, and a tiny end-to-end run (train, evaluate, predict, resume, bad input)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from biornn.cli.main import main
from biornn.config import resolve
from biornn.models.seq2seq import EncoderDecoder, beam_decode
from biornn.tasks import translate as tr
from biornn.train import train

pytest.importorskip("Bio")

TINY = ["n_sequences=40", "hidden_size=8", "embedding_dim=4", "batch_size=16", "epochs=2", "threads=1"]


@pytest.fixture(autouse=True)
def _no_env(monkeypatch, tmp_path):
    monkeypatch.delenv("BIORNN_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def _model(cell: str = "lstm", attention: str = "location", **kw) -> EncoderDecoder:
    torch.manual_seed(0)
    return EncoderDecoder(4, 7, bos=0, eos=6, cell=cell, hidden_size=5, embedding_dim=3, attention=attention,
                          attention_size=4, **kw).eval()


def _source(B: int = 3, S: int = 9) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    x = torch.nn.functional.one_hot(torch.randint(0, 4, (B, S), generator=g), 4).float()
    lengths = torch.tensor([S, S - 3, 3][:B])
    return x, lengths


# -- the model ----------------------------------------------------------------------------


@pytest.mark.parametrize("cell", ["lstm", "gru", "lstm1997", "elman", "irnn", "lstm-peephole", "fully-recurrent"])
@pytest.mark.parametrize("attention", ["location", "none"])
def test_teacher_forcing_shapes_for_every_cell(cell, attention):
    model = _model(cell, attention, num_layers=2)
    x, lengths = _source()
    tgt_in = torch.tensor([[0, 1, 2, 3], [0, 4, 5, 5], [0, 2, 2, 1]])
    logits = model(x, lengths, tgt_in)
    assert logits.shape == (3, 4, 7) and torch.isfinite(logits).all()
    logits.sum().backward()  # every parameter on the graph gets a gradient
    assert all(p.grad is not None for p in model.parameters())


def test_padding_does_not_change_a_sequence():
    """A source padded with garbage past its length decodes as the same source unpadded."""
    model = _model()
    x, lengths = _source()
    tgt_in = torch.tensor([[0, 1, 2, 3]] * 3)
    padded = x.clone()
    padded[1, lengths[1]:] = 7.0
    a = model(padded, lengths, tgt_in)[1]
    b = model(x[1:2, : lengths[1]], lengths[1:2], tgt_in[1:2])[0]
    torch.testing.assert_close(a, b)


def test_greedy_equals_beam_of_one_and_scores_are_the_sequence_log_prob():
    model = _model()
    x, lengths = _source()
    tokens, scores = model.greedy(x, lengths, max_len=5)
    btokens, bscores = model.beam_search(x, lengths, max_len=5, beam=1)
    assert torch.equal(tokens, btokens)
    torch.testing.assert_close(scores, bscores)
    # the score is log p(tokens | x) of teacher forcing on the decoded tokens
    with torch.no_grad():
        torch.testing.assert_close(model.sequence_log_prob(x, lengths, tokens), scores, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("beam", [2, 4])
def test_beam_scores_are_the_sequence_log_prob(beam):
    """The beam's bookkeeping (reordered states) is right: its score is the model's probability of its output."""
    model = _model("gru")
    x, lengths = _source()
    tokens, scores = model.beam_search(x, lengths, max_len=5, beam=beam)
    with torch.no_grad():
        torch.testing.assert_close(model.sequence_log_prob(x, lengths, tokens), scores, atol=1e-5, rtol=1e-5)


def _markov_step(table: torch.Tensor):
    """A constructed left-to-right model: p(next | previous token), ``table`` (V, V) of probabilities."""
    def step(tokens, state):
        return torch.log(table[tokens]), state

    return step


def test_beam_finds_a_more_probable_sequence_than_greedy():
    # tokens: 0 bos, 1 "a", 2 "b", 3 eos.  Greedy takes "a" (0.6) and then has only 0.4 to end;
    # "b" (0.4) ends with certainty: p(b, eos) = 0.4 > p(a, eos) = 0.24 > p(a, a, ...)
    table = torch.tensor([[1e-9, 0.6, 0.4, 1e-9],
                          [1e-9, 0.3, 0.3, 0.4],
                          [1e-9, 1e-9, 1e-9, 1.0],
                          [1e-9, 1e-9, 1e-9, 1.0]])
    step = _markov_step(table)
    keep = lambda state, index: state  # noqa: E731  (the constructed model has no state)
    greedy, g_score = beam_decode(step, keep, None, 1, 1, 3, bos=0, eos=3)
    best, b_score = beam_decode(step, keep, None, 1, 2, 3, bos=0, eos=3)
    assert greedy[0, 0].item() == 1 and best[0].tolist()[:2] == [2, 3]
    assert b_score.item() == pytest.approx(math.log(0.4), abs=1e-6)
    assert b_score.item() > g_score.item()


def test_beam_never_loses_to_greedy_on_random_models():
    x, lengths = _source()
    for seed in range(5):
        torch.manual_seed(seed)
        model = EncoderDecoder(4, 7, 0, 6, cell="lstm", hidden_size=6, embedding_dim=3).eval()
        _, g = model.greedy(x, lengths, 4)
        _, b = model.beam_search(x, lengths, 4, beam=5)
        assert (b >= g - 1e-5).all()


@pytest.mark.parametrize("beam", [1, 3])
def test_per_sequence_caps_decode_each_sequence_as_alone(beam):
    """With one cap per sequence, each sequence's tokens and score are those of decoding it alone with
    its cap (a random model rarely emits eos, so the caps bind: the batch's longest cap must not leak)."""
    model = _model("lstm")
    x, lengths = _source()
    caps = torch.tensor([5, 2, 1])
    tokens, scores = model.beam_search(x, lengths, caps, beam) if beam > 1 else model.greedy(x, lengths, caps)
    assert tokens.shape[1] == 5
    for b in range(3):
        n = int(lengths[b])
        if beam > 1:
            alone, s = model.beam_search(x[b : b + 1, :n], lengths[b : b + 1], int(caps[b]), beam)
        else:
            alone, s = model.greedy(x[b : b + 1, :n], lengths[b : b + 1], int(caps[b]))
        assert tokens[b, : int(caps[b])].tolist() == alone[0, : int(caps[b])].tolist()
        assert float(scores[b]) == pytest.approx(float(s[0]), abs=1e-5)
    with pytest.raises(ValueError, match="one cap per sequence"):
        model.greedy(x, lengths, torch.tensor([3, 3]))


@pytest.mark.parametrize("beam", [1, 3])
def test_decode_does_not_depend_on_the_batch(beam):
    """A protein and its score are the same whatever other ORFs are decoded beside it (an untrained
    model does not stop at its codon count, where the batch's longest ORF used to set the cap)."""
    model = EncoderDecoder(tr.DNA.size, len(tr.TOKENS), tr.BOS, tr.EOS, hidden_size=6, embedding_dim=3).eval()
    short, long = "ATGTTTTGA", "ATG" + "GCC" * 30 + "TAA"
    alone = tr.decode(model, [short], beam)
    together = tr.decode(model, [short, long], beam)
    assert together[0][0] == alone[0][0] and len(alone[0][0]) <= 3
    assert together[1][0] == pytest.approx(alone[1][0], abs=1e-5)


def test_model_refuses_bad_arguments():
    with pytest.raises(ValueError, match="attention must be one of"):
        EncoderDecoder(4, 7, 0, 6, attention="dot")
    with pytest.raises(ValueError, match="bos and eos"):
        EncoderDecoder(4, 7, 0, 0)
    with pytest.raises(ValueError, match="beam must be at least 1"):
        _model().beam_search(*_source(), max_len=3, beam=0)


# -- the generated data ---------------------------------------------------------------------


def test_generated_orfs_are_translated_by_biopython():
    from Bio.Data import CodonTable
    from Bio.Seq import Seq

    cfg = resolve("translate", overrides=["n_sequences=200"])
    data = tr.load(cfg)
    table = CodonTable.unambiguous_dna_by_id[1]
    n = tr.sizes(200)
    assert {p: len(s.dna) for p, s in data.splits.items()} == n == {"train": 200, "val": 20, "test": 50,
                                                                     "test_longer": 25}
    everything = [s for split in data.splits.values() for s in split.dna]
    assert len(set(everything)) == len(everything)  # no ORF in two parts
    for part, split in data.splits.items():
        lo, hi = tr.LONGER_CODONS if part == "test_longer" else tr.TRAIN_CODONS
        for dna, protein, src, tgt in zip(split.dna, split.protein, split.src, split.tgt):
            codons = [dna[i : i + 3] for i in range(0, len(dna), 3)]
            assert len(dna) % 3 == 0 and lo <= len(codons) <= hi
            assert codons[0] == "ATG" and codons[-1] in table.stop_codons
            assert all(c in table.forward_table for c in codons[1:-1])  # no stop inside
            assert protein == str(Seq(dna).translate()) and protein[0] == "M" and protein.endswith("*")
            assert protein.count("*") == 1 and len(protein) == len(codons)
            assert src.shape == (len(dna), 4) and (src.sum(axis=1) == 1).all()
            assert tr.protein_of(tgt) == protein
    # training lengths fill their range; the longer test part starts past it
    assert data.splits["train"].codons.max() <= tr.TRAIN_CODONS[1] < data.splits["test_longer"].codons.min()


def test_generation_is_fixed_by_split_seed():
    a = tr.load(resolve("translate", overrides=["n_sequences=40"]))
    b = tr.load(resolve("translate", overrides=["n_sequences=40", "seed=5"]))
    c = tr.load(resolve("translate", overrides=["n_sequences=40", "split_seed=1"]))
    assert a.fingerprint == b.fingerprint and a.splits["train"].dna == b.splits["train"].dna
    assert a.fingerprint != c.fingerprint
    assert a.meta() == c.meta()


def test_metrics_and_baseline_windows():
    m = tr.sequence_metrics(["MA*", "MK", "MAA*"], ["MA*", "MA*", "MKA*"])
    assert m["exact_match"] == pytest.approx(1 / 3)
    assert m["residue_accuracy"] == pytest.approx((3 + 1 + 3) / 10)
    split = tr.make_split(["ATGGCCTAA"])
    w = tr.frame_windows(split)
    assert w.shape == (3, 12) and w[1].reshape(3, 4).argmax(axis=1).tolist() == [2, 1, 1]  # G C C


@pytest.mark.parametrize("text, match", [
    ("ATGXCCTAA", "character 'X' at position 4; translate reads A, C, G, T only"),
    ("ATGNCCTAA", "ambiguity code 'N' at position 4; translate reads A, C, G, T only"),
    ("ATGGCCTA", "8 bases is not a whole number of codons"),
    ("   ", "an empty sequence"),
    ("ATG" + "GCC" * (tr.MAX_PREDICT_CODONS - 1) + "TAA",
     f"{tr.MAX_PREDICT_CODONS + 1} codons; translate decodes at most {tr.MAX_PREDICT_CODONS} codons"),
])
def test_check_orf_refuses_bad_input(text, match):
    with pytest.raises(ValueError, match=match):
        tr.check_orf(text)


def test_check_orf_accepts_lower_case_and_spaces():
    assert tr.check_orf("atg gcc\ttaa") == "ATGGCCTAA"
    longest = "ATG" + "GCC" * (tr.MAX_PREDICT_CODONS - 2) + "TAA"
    assert tr.check_orf(longest) == longest


# -- end to end --------------------------------------------------------------------------------


def test_translate_end_to_end(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "translate", "--out", str(out), "--cell", "gru", *TINY, "beam=2"]) == 0
    for name in ("config.json", "model.safetensors", "metrics.json", "log.csv", "curves.png",
                 "accuracy_by_length.png", "checkpoint.pt"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["task"] == "translate" and metrics["cell"] == "gru" and metrics["epochs"] == 2
    assert set(metrics["test"]) == set(tr.METRIC_KEYS)
    assert all(0.0 <= v <= 1.0 for v in metrics["test"].values())
    assert metrics["baseline"]["name"] == "frame-window-logreg"
    assert all(0.0 <= metrics["baseline"][k] <= 1.0 for k in tr.METRIC_KEYS)
    assert metrics["decoding"] == "beam 2"
    assert metrics["n"] == {"train": 40, "val": 10, "test": 10, "test_longer": 10}
    assert sum(r["n"] for r in metrics["by_length"]["model"]) == 20
    capsys.readouterr()

    assert main(["evaluate", str(out)]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["test"] == metrics["test"] and evaluated["decoding"] == "beam 2"

    assert main(["predict", str(out), "ATGGCCTAA", "atgaaa tgg tga"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["input"] for r in rows] == ["ATGGCCTAA", "ATGAAATGGTGA"]
    assert [r["biopython"] for r in rows] == ["MA*", "MKW*"]
    for r in rows:
        assert 1 <= len(r["protein"]) <= len(r["input"]) // 3
        assert set(r["protein"]) <= set(tr.TOKENS[1:]) and r["log_probability"] <= 0.0

    for bad, match in (("ATGGCCTAX", "character 'X' at position 9"), ("ATGGCCTA", "8 bases")):
        assert main(["predict", str(out), "ATGGCCTAA", bad]) == 2
        captured = capsys.readouterr()
        assert captured.out == "" and len(captured.err.strip().splitlines()) == 1 and match in captured.err


def test_translate_resume_gives_the_same_weights(tmp_path):
    from safetensors.torch import load_file

    cfg = resolve("translate", overrides=TINY)
    train(cfg, tmp_path / "whole", log=lambda line: None)
    assert train(cfg, tmp_path / "cut", log=lambda line: None, stop_after_epochs=1) == {}
    assert not (tmp_path / "cut" / "metrics.json").exists()
    assert main(["train", "--resume", str(tmp_path / "cut")]) == 0
    a, b = load_file(tmp_path / "whole" / "model.safetensors"), load_file(tmp_path / "cut" / "model.safetensors")
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)


@pytest.mark.parametrize("override, match", [
    ("ensemble=2", "ensemble must be 1"),
    ("embedding_dim=0", "embedding_dim must be > 0"),
    ("monitor=macro_f1", "monitor must be accuracy"),
    ("beam=0", "beam must be at least 1"),
])
def test_translate_config_checks_exit_2_and_write_nothing(tmp_path, capsys, override, match):
    out = tmp_path / "run"
    assert main(["train", "translate", "--out", str(out), *TINY, override]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and match in err, err
    assert not out.exists()


def test_the_attention_kind_is_kept_with_the_weights(tmp_path, monkeypatch, capsys):
    """A run trained without attention (the benchmark's comparison) is rebuilt without it by evaluate."""
    monkeypatch.setattr(tr, "ATTENTION", "none")
    cfg = resolve("translate", overrides=[*TINY, "epochs=1"])
    metrics = train(cfg, tmp_path / "run", log=lambda line: None)
    monkeypatch.setattr(tr, "ATTENTION", "location")
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "run")]) == 0
    assert json.loads(capsys.readouterr().out)["test"] == metrics["test"]
