"""Training from the command line on a tiny names data set made here: the run directory,
evaluate, predict, seeds, resume, configs and bad input."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from biornn.cli.main import main
from biornn.config import TrainConfig, load_toml, parse_overrides, resolve
from biornn.data.registry import DATASETS
from biornn.train import train

LANGS = [Path(f.path).stem for f in DATASETS["names"].files if f.path.endswith(".txt")]
TINY = ["hidden_size=8", "embedding_dim=4", "batch_size=16", "epochs=2", "ensemble=1"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """18 language files of made-up names, each language with its own ending."""
    root = tmp_path_factory.mktemp("data")
    names = root / "names"
    names.mkdir()
    rng = random.Random(0)
    letters = "abcdefghijklmnoprstuvz"
    for k, lang in enumerate(LANGS):
        ending = letters[k % len(letters)] + letters[(3 * k + 1) % len(letters)] + "é" * (k % 2)
        rows = {"".join(rng.choice(letters) for _ in range(rng.randint(2, 5))).title() + ending for _ in range(12)}
        (names / f"{lang}.txt").write_text("\n".join(sorted(rows)) + "\n", encoding="utf-8")
    (names / "LICENSE").write_text("made up for tests\n")
    return root


@pytest.fixture(autouse=True)
def _no_env(monkeypatch, tmp_path):
    monkeypatch.delenv("BIORNN_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def _train(data_dir, out, *extra, expect=0, capsys=None):
    code = main(["train", "names", "--data-dir", str(data_dir), "--out", str(out), *TINY, *extra])
    assert code == expect
    return code


# -- configs -------------------------------------------------------------------

def test_config_precedence(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text('cell = "gru"\nhidden_size = 32\nlr = 1\n')
    cfg = resolve("names", toml, {"cell": "elman", "epochs": None}, ["hidden_size=16"])
    assert (cfg.cell, cfg.hidden_size, cfg.lr, cfg.epochs) == ("elman", 16, 1.0, TrainConfig().epochs)
    assert isinstance(cfg.lr, float)


@pytest.mark.parametrize(
    "overrides,needle",
    [
        (["hiden_size=3"], "did you mean hidden_size"),
        (["hidden_size=abc"], "hidden_size must be int"),
        (["hidden_size=0"], "hidden_size must be positive"),
        (["cell=lsmt"], "cell must be one of"),
        (["bidirectional=maybe"], "bidirectional must be bool"),
        (["lr=inf"], "lr must be a finite number"),
        (["dropout=-0.1"], "dropout"),
        (["forget_bias=1"], "forget_bias applies to lstm"),
        (["label_smoothing=1"], "label_smoothing must be in"),
        (["label_smoothing=-0.1"], "label_smoothing must be in"),
        (["noequals"], "key=value"),
    ],
)
def test_bad_overrides(overrides, needle):
    with pytest.raises(ValueError, match=needle):
        resolve("names", overrides=overrides if overrides != ["forget_bias=1"] else ["cell=gru", "forget_bias=1"])


def test_bad_toml(tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text("cell = \n")
    with pytest.raises(ValueError, match="not valid TOML"):
        load_toml(p)
    p.write_text("[model]\ncell = 'gru'\n")
    with pytest.raises(ValueError, match="flat"):
        load_toml(p)
    p.write_text("hidden_size = '12'\n")
    with pytest.raises(ValueError, match="hidden_size must be int"):
        resolve("names", p)
    with pytest.raises(ValueError, match="no such config file"):
        load_toml(tmp_path / "missing.toml")


def test_label_smoothing_defaults_and_maths():
    """names smooths by default; the class default (and so a run written before the option) does not;
    the loss is the cross-entropy (or squared error) against (1 - eps) onehot + eps / K."""
    import torch
    from torch.nn import functional as F

    from biornn.config import from_json
    from biornn.train import loss_fn

    assert resolve("names").label_smoothing == 0.1 and resolve("splice").label_smoothing == 0.0
    assert TrainConfig().label_smoothing == 0.0 and from_json('{"task": "names"}').label_smoothing == 0.0
    torch.manual_seed(0)
    logits, y = torch.randn(5, 4), torch.tensor([0, 3, 1, 1, 2])
    eps = 0.2
    target = F.one_hot(y, 4).float() * (1 - eps) + eps / 4
    cfg = TrainConfig(label_smoothing=eps)
    ce = -(target * torch.log_softmax(logits, 1)).sum(1).mean()
    torch.testing.assert_close(loss_fn(cfg, logits, y, None), ce)
    sq = 0.5 * (logits - target).square().sum(1).mean()
    torch.testing.assert_close(loss_fn(TrainConfig(label_smoothing=eps, loss="mse"), logits, y, None), sq)
    plain = loss_fn(TrainConfig(label_smoothing=0.0), logits, y, None)
    torch.testing.assert_close(plain, F.cross_entropy(logits, y))


def test_parse_overrides_types():
    v = parse_overrides(["bidirectional=no", "forget_bias=none", "lr=0.5", "epochs=3", "cell=gru"])
    assert v == {"bidirectional": False, "forget_bias": None, "lr": 0.5, "epochs": 3, "cell": "gru"}


# -- a run from the command line ------------------------------------------------

def test_train_writes_a_complete_run_and_evaluate_predict_read_it(data_dir, tmp_path, capsys):
    run = tmp_path / "run"
    _train(data_dir, run)
    summary = json.loads(capsys.readouterr().out)
    for name in ("config.json", "model.safetensors", "metrics.json", "log.csv", "steps.csv", "curves.png",
                 "confusion.png", "checkpoint.pt"):
        assert (run / name).is_file(), name
    assert not [p for p in run.iterdir() if p.name.startswith(".")]  # no temporary files left
    assert (run / "curves.png").read_bytes()[:4] == b"\x89PNG"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["task"] == "names" and metrics["cell"] == "lstm" and metrics["epochs"] == 2
    assert set(metrics["test"]) == {"accuracy", "balanced_accuracy", "macro_f1"}
    assert 0 <= metrics["test"]["accuracy"] <= 1 and metrics["train_seconds"] > 0
    assert metrics["baseline"]["name"] == "ngram-logreg-balanced" and "accuracy" in metrics["baseline"]
    assert summary["test"] == metrics["test"]
    config = json.loads((run / "config.json").read_text())
    assert config["hidden_size"] == 8 and config["task"] == "names"
    log = (run / "log.csv").read_text().splitlines()
    assert log[0].startswith("epoch,train_loss,val_loss") and len(log) == 3
    steps = (run / "steps.csv").read_text().splitlines()
    assert steps[0] == "step,epoch,loss,grad_norm,lr" and len(steps) > 3

    assert main(["evaluate", str(run), "--data-dir", str(data_dir)]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    for k, v in metrics["test"].items():
        assert evaluated["test"][k] == pytest.approx(v)

    assert main(["predict", str(run), "Dostoevsky", "Satoshi", "Nguyễn"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["input"] for r in rows] == ["Dostoevsky", "Satoshi", "Nguyễn"]
    for r in rows:
        assert len(r["top"]) == 3 and r["top"][0]["label"] in LANGS
        probs = [t["probability"] for t in r["top"]]
        assert probs == sorted(probs, reverse=True) and sum(probs) <= 1.0001
    f = tmp_path / "names.txt"
    f.write_text("Smith\n\nO'Neill\n", encoding="utf-8")
    assert main(["predict", str(run), "--file", str(f), "--top", "1"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2


def test_same_seed_same_weights_different_seed_different(data_dir, tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    _train(data_dir, a, "--seed", "3")
    _train(data_dir, b, "--seed", "3")
    _train(data_dir, c, "--seed", "4")
    wa, wb, wc = (load_file(str(r / "model.safetensors")) for r in (a, b, c))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not all(torch.equal(wa[k], wc[k]) for k in wa)


def test_resume_ends_with_the_same_weights(data_dir, tmp_path, capsys):
    cfg = resolve("names", overrides=TINY + ["epochs=4", "dropout=0.3", "lr_schedule=onecycle"])
    full, part = tmp_path / "full", tmp_path / "part"
    train(cfg, full, data_dir=str(data_dir), progress=False, log=lambda s: None)
    assert train(cfg, part, data_dir=str(data_dir), progress=False, log=lambda s: None, stop_after_epochs=2) == {}
    assert not (part / "metrics.json").exists()
    capsys.readouterr()
    assert main(["predict", str(part), "Abc"]) == 2  # an interrupted run says how to finish it
    assert capsys.readouterr().err.strip().endswith(
        f"(missing metrics.json); training was interrupted: finish it with biornn train --resume {part}")
    assert main(["train", "--resume", str(part), "--data-dir", str(data_dir)]) == 0
    wa, wb = (load_file(str(r / "model.safetensors")) for r in (full, part))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    la = (full / "log.csv").read_text().splitlines()
    lb = (part / "log.csv").read_text().splitlines()
    assert [r.split(",")[:7] for r in la] == [r.split(",")[:7] for r in lb]  # same losses and metrics


def test_toml_task_file(data_dir, tmp_path, capsys):
    toml = tmp_path / "exp.toml"
    toml.write_text('task = "names"\ncell = "gru"\nhidden_size = 8\nembedding_dim = 0\nepochs = 1\n')
    assert main(["train", str(toml), "--data-dir", str(data_dir), "--out", str(tmp_path / "r")]) == 0
    assert json.loads((tmp_path / "r" / "config.json").read_text())["cell"] == "gru"


def test_threads_limits_the_baselines_pools_too():
    """threads=N also holds the BLAS and OpenMP pools of NumPy, SciPy and scikit-learn (the baselines),
    loaded before or after it is set (a fresh process: the setting is process-wide)."""
    import subprocess
    import sys

    code = ("from biornn.train import _set_threads; _set_threads(1); import sklearn.linear_model; "
            "from threadpoolctl import threadpool_info; import torch; "
            "print(sorted({i['num_threads'] for i in threadpool_info()}), torch.get_num_threads())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["[1]", "1"], out.stdout


def test_class_weighting_with_logit_adjustment_is_noted(data_dir, tmp_path, capsys):
    """Both corrections for the imbalance at once is allowed, and said on stderr; either alone is quiet."""
    _train(data_dir, tmp_path / "both", "epochs=1", "class_weighting=balanced")
    assert "favoured twice" in capsys.readouterr().err
    _train(data_dir, tmp_path / "one", "epochs=1", "class_weighting=balanced", "logit_adjustment=0")
    assert "favoured twice" not in capsys.readouterr().err


def test_config_file_names_the_task(data_dir, tmp_path, capsys):
    """--config FILE.toml without a TASK trains the task the file sets."""
    toml = tmp_path / "exp.toml"
    toml.write_text('task = "names"\ncell = "gru"\nhidden_size = 8\nembedding_dim = 0\nepochs = 1\n')
    assert main(["train", "--config", str(toml), "--data-dir", str(data_dir), "--out", str(tmp_path / "r")]) == 0
    cfg = json.loads((tmp_path / "r" / "config.json").read_text())
    assert (cfg["task"], cfg["cell"]) == ("names", "gru")
    capsys.readouterr()
    bare = tmp_path / "bare.toml"
    bare.write_text("epochs = 1\n")
    assert main(["train", "--config", str(bare), "--out", str(tmp_path / "r2")]) == 2
    _one_line_error(capsys, str(bare), "sets no task", "task = NAME")
    assert not (tmp_path / "r2").exists()
    assert main(["train", "--out", str(tmp_path / "r3")]) == 2
    _one_line_error(capsys, "give a TASK", "--config")


# -- bad input: one line, exit 2, nothing half-written ------------------------------

def _one_line_error(capsys, *needles):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("biornn: error:"), err
    for n in needles:
        assert n in err[0], err[0]


@pytest.mark.parametrize(
    "argv,needles",
    [
        (["train", "recipes"], ["recipes", "names"]),
        (["train", "names", "--cell", "lstm97"], ["cell"]),
        (["train", "names", "hiden_size=3"], ["hiden_size", "hidden_size"]),
        (["train", "names", "epochs=many"], ["epochs"]),
        (["train", "names", "--config", "/nonexistent.toml"], ["/nonexistent.toml"]),
        (["train", "names", "pool=split"], ["pool", "last, max, mean", "split"]),
        (["train", "names", "pool=top"], ["pool", "top"]),
    ],
)
def test_bad_train_arguments(argv, needles, capsys, tmp_path):
    assert main([*argv, "--out", str(tmp_path / "r")]) == 2
    _one_line_error(capsys, *needles)
    assert not (tmp_path / "r").exists()


def test_data_dir_without_the_task_files(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["train", "names", "--data-dir", str(empty), "--out", str(tmp_path / "r")]) == 2
    _one_line_error(capsys, "names", str(empty), "biornn data fetch")
    assert not (tmp_path / "r").exists()


def test_out_dir_not_empty(data_dir, tmp_path, capsys):
    out = tmp_path / "r"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert main(["train", "names", "--data-dir", str(data_dir), "--out", str(out), *TINY]) == 2
    _one_line_error(capsys, "not empty")
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


@pytest.fixture(scope="module")
def trained(data_dir, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("runs") / "r"
    cfg = resolve("names", overrides=TINY + ["epochs=1"])
    train(cfg, run, data_dir=str(data_dir), progress=False, log=lambda s: None)
    return run


def test_weights_that_do_not_fit_the_config_are_one_line(trained, tmp_path, capsys):
    import shutil

    run = tmp_path / "edited"
    shutil.copytree(trained, run)
    cfg = json.loads((run / "config.json").read_text())
    cfg["hidden_size"] += 1  # the saved tensors no longer fit the model the config builds
    (run / "config.json").write_text(json.dumps(cfg))
    assert main(["predict", str(run), "Nguyen"]) == 2
    _one_line_error(capsys, "model.safetensors", "weights do not fit the config", "in the file", "for the config",
                    "more tensor(s) differ")
    cfg["hidden_size"] -= 1
    cfg["conv_channels"] = 2  # a window layer the weights do not have: which tensor, said
    (run / "config.json").write_text(json.dumps(cfg))
    assert main(["predict", str(run), "Nguyen"]) == 2
    _one_line_error(capsys, "the config's model has members.0.conv.weight, the file has not")
    cfg["conv_kernel"] = 4  # a value out of range in an edited config.json: the file is named, as for a type
    (run / "config.json").write_text(json.dumps(cfg))
    assert main(["predict", str(run), "Nguyen"]) == 2
    _one_line_error(capsys, str(run / "config.json") + ": conv_kernel must be an odd number")


def test_predict_bad_inputs(trained, capsys):
    assert main(["predict", str(trained), "12345"]) == 2
    _one_line_error(capsys, "12345", "no character")
    assert main(["predict", str(trained)]) == 2
    _one_line_error(capsys, "INPUT")
    assert main(["predict", str(trained), "--file", "/nonexistent.txt"]) == 2
    _one_line_error(capsys, "/nonexistent.txt")


def test_run_dir_missing_files_or_other_version(trained, tmp_path, capsys):
    assert main(["evaluate", str(tmp_path / "nope")]) == 2
    _one_line_error(capsys, "no such run directory")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text((trained / "config.json").read_text())
    assert main(["predict", str(broken), "Smith"]) == 2
    _one_line_error(capsys, "missing", "model.safetensors")

    from safetensors.torch import safe_open, save_file

    other = tmp_path / "other"
    other.mkdir()
    for name in ("config.json", "metrics.json"):
        (other / name).write_text((trained / name).read_text())
    with safe_open(str(trained / "model.safetensors"), framework="pt") as fh:
        meta = dict(fh.metadata())
    meta["format_version"] = "0"
    save_file(load_file(str(trained / "model.safetensors")), str(other / "model.safetensors"), metadata=meta)
    assert main(["predict", str(other), "Smith"]) == 2
    _one_line_error(capsys, "different biornn run format")

    (other / "model.safetensors").write_bytes(b"not a safetensors file")
    assert main(["predict", str(other), "Smith"]) == 2
    _one_line_error(capsys, "model.safetensors")

    (other / "config.json").write_text('{"hidden_size": 8, "colour": "red"}')
    assert main(["evaluate", str(other)]) == 2
    _one_line_error(capsys, "colour")


def test_ensemble_trains_saves_and_predicts(data_dir, tmp_path, capsys):
    run = tmp_path / "ens"
    _train(data_dir, run, "ensemble=2", "epochs=1")
    keys = load_file(str(run / "model.safetensors"))
    assert any(k.startswith("members.1.") for k in keys)
    assert main(["evaluate", str(run), "--data-dir", str(data_dir)]) == 0
    capsys.readouterr()
    assert main(["predict", str(run), "Smith", "--top", "18"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert sum(t["probability"] for t in row["top"]) == pytest.approx(1.0, abs=1e-3)


def test_ensemble_averages_member_probabilities():
    from biornn.models import Ensemble, SequenceClassifier

    torch.manual_seed(0)
    members = [SequenceClassifier(10, 4, cell="gru", hidden_size=5, embedding_dim=3) for _ in range(3)]
    ens = Ensemble(members).eval()
    x, lengths = torch.randint(1, 10, (2, 6)), torch.tensor([6, 3])
    expected = torch.stack([torch.softmax(m(x, lengths), -1) for m in members]).mean(0)
    torch.testing.assert_close(torch.softmax(ens(x, lengths), -1), expected)


def test_names_benchmark_quick_runs(data_dir, tmp_path):
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "names.py"
    res = subprocess.run([sys.executable, str(script), "--quick", "--json", "--data-dir", str(data_dir)],
                         capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    out = json.loads(res.stdout)
    rows = out["rows"] if isinstance(out, dict) and "rows" in out else out
    text = json.dumps(rows)
    assert "n-gram" in text and "Tutorial" in text and "biornn" in text


# -- from a review: runs that fail early, resume edge cases, limits ------------------

def test_a_run_that_fails_in_its_first_epoch_leaves_nothing(data_dir, tmp_path, capsys, monkeypatch):
    import biornn.train as train_module

    real = train_module.loss_fn
    monkeypatch.setattr(train_module, "loss_fn", lambda *a: real(*a) * float("nan"))
    out = tmp_path / "nan"
    assert main(["train", "names", "--data-dir", str(data_dir), "--out", str(out), *TINY]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "training failed" in err[0] and "nan" in err[0]
    assert not out.exists()  # no dead run directory to trip over


@pytest.mark.parametrize("stop", [["epochs=2"], ["epochs=3", "max_seconds=0.001"],
                                  ["epochs=4", "patience=1", "lr=1e-12"]],
                         ids=["completed", "time-limit", "early-stop"])
def test_resume_after_a_kill_in_the_finish(data_dir, tmp_path, monkeypatch, stop):
    """Killed after its last epoch (during the baseline or the test metrics), a run resumes into its
    finish -- no further epoch -- and ends as the uninterrupted run did."""
    from biornn.tasks import names as names_task

    cfg = resolve("names", overrides=TINY + stop)
    full, part = tmp_path / "full", tmp_path / "part"
    train(cfg, full, data_dir=str(data_dir), progress=False, log=lambda s: None)
    real = names_task.finish

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(names_task, "finish", killed)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, part, data_dir=str(data_dir), progress=False, log=lambda s: None)
    monkeypatch.setattr(names_task, "finish", real)
    assert (part / "checkpoint.pt").is_file() and not (part / "metrics.json").exists()
    assert main(["train", "--resume", str(part), "--data-dir", str(data_dir)]) == 0
    ma, mb = (json.loads((r / "metrics.json").read_text()) for r in (full, part))
    assert (ma["test"], ma["epochs"], ma["best_epoch"]) == (mb["test"], mb["epochs"], mb["best_epoch"])
    if "patience=1" in stop:
        assert mb["epochs"] < 4  # stopped early, and the resume did not train on
    wa, wb = (load_file(str(r / "model.safetensors")) for r in (full, part))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert main(["train", "--resume", str(part), "--data-dir", str(data_dir)]) == 2  # now finished


def test_resume_refuses_finished_runs_and_other_data(data_dir, tmp_path, capsys):
    run = tmp_path / "done"
    _train(data_dir, run)
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--data-dir", str(data_dir)]) == 2
    _one_line_error(capsys, "finished")

    cfg = resolve("names", overrides=TINY + ["epochs=3"])
    part = tmp_path / "part"
    train(cfg, part, data_dir=str(data_dir), progress=False, log=lambda s: None, stop_after_epochs=1)
    other = tmp_path / "other"
    (other / "names").mkdir(parents=True)
    for f in (data_dir / "names").iterdir():
        (other / "names" / f.name).write_text(f.read_text() + ("Qqq\n" if f.suffix == ".txt" else ""))
    assert main(["train", "--resume", str(part), "--data-dir", str(other)]) == 2
    _one_line_error(capsys, "other data", "differs in")
    assert main(["evaluate", str(run), "--data-dir", str(other)]) == 2
    _one_line_error(capsys, "other data")

    torch.save({"model": {}}, part / "checkpoint.pt")
    assert main(["train", "--resume", str(part), "--data-dir", str(data_dir)]) == 2
    _one_line_error(capsys, "checkpoint.pt", "not a biornn training checkpoint")


@pytest.mark.parametrize("x,needle", [
    (torch.tensor([[1, 9]]), "0..8"), (torch.tensor([[-1, 2]]), "got -1..2"),
    (torch.tensor([1, 2]), "2-D (B, T)"), (torch.tensor([[1.0, 2.0]]), "integers"),
])
def test_a_classifier_refuses_symbols_it_cannot_read(x, needle):
    """Out of the vocabulary, 1-D or floating symbols: one ValueError naming the problem (an IndexError
    deep in the embedding before)."""
    from biornn.models import SequenceClassifier

    for dim in (0, 4):  # one-hot and embedded
        with pytest.raises(ValueError, match=re.escape(needle)):
            SequenceClassifier(9, 3, hidden_size=5, embedding_dim=dim)(x)


def test_meta_difference_names_what_changed():
    """A resume refused for other data says what differs: short values in full (the sampling rate an
    older release read from a rounded time column), long ones (a vocabulary) by name."""
    from biornn.train import _meta_difference

    then = {"fs": 333.333, "vocab": list("abc"), "leads": 2}
    now = {"fs": 360.0, "vocab": list("abcd"), "leads": 2}
    assert _meta_difference(then, now) == "differs in fs: 333.333 then, 360.0 now; vocab"


@pytest.mark.parametrize("item,key", [("seed=99999999999999", "seed"), ("threads=100000", "threads"),
                                      ("embedding_dim=100000000", "embedding_dim"), ("ensemble=1000", "ensemble")])
def test_limits_name_the_key(item, key):
    with pytest.raises(ValueError, match=rf"^override: {key} must be at most"):
        resolve("names", overrides=[item])


def test_a_bad_value_is_reported_against_the_layer_that_set_it(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text('lr = -1.0\nhidden_size = 8\n')
    with pytest.raises(ValueError, match=rf"^{re.escape(str(p))}: lr must be in \(0, 10\], got -1.0$"):
        resolve("names", p)
    # an override of the same key takes the blame when it is the bad value ...
    with pytest.raises(ValueError, match=r"^override: lr must be in"):
        resolve("names", p, overrides=["lr=-2"])
    # ... and a good override mends the file's bad value
    assert resolve("names", p, overrides=["lr=0.01"]).lr == 0.01
    with pytest.raises(ValueError, match=r"^option: epochs must be positive"):
        resolve("names", options={"epochs": -3})


def test_non_finite_numbers_from_toml_are_refused(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text("logit_adjustment = nan\n")
    with pytest.raises(ValueError, match="logit_adjustment must be a finite number"):
        resolve("names", p)


def test_unusable_out_path(data_dir, tmp_path, capsys):
    f = tmp_path / "afile"
    f.write_text("x")
    assert main(["train", "names", "--data-dir", str(data_dir), "--out", str(f / "sub"), *TINY]) == 2
    _one_line_error(capsys, str(f / "sub"), "cannot create")


def test_predict_options_before_inputs_and_a_bom(trained, tmp_path, capsys):
    assert main(["predict", str(trained), "--top", "2", "Smith", "Rossi"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["input"] for r in rows] == ["Smith", "Rossi"] and len(rows[0]["top"]) == 2
    f = tmp_path / "bom.txt"
    f.write_bytes("\ufeffSmith\n".encode("utf-8"))
    assert main(["predict", str(trained), "--file", str(f)]) == 0
    assert json.loads(capsys.readouterr().out)["input"] == "Smith"


def test_run_files_are_world_readable(trained):
    import os
    import stat

    mode = stat.S_IMODE((trained / "metrics.json").stat().st_mode)
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask  # as open() would make it, not mkstemp's 0600


# -- pooling of a many-to-one classifier (the ``pool`` option) ---------------------------------------


@pytest.mark.parametrize("pool", ["max", "mean"])
def test_pool_outputs_never_reads_padding(pool):
    from biornn.models import pool_outputs

    out = torch.randn(3, 5, 4)
    lengths = torch.tensor([5, 2, 1])
    padded = out.clone()
    for b, L in enumerate(lengths.tolist()):
        padded[b, L:] = 1e6  # what a padding step must never contribute
    got = pool_outputs(padded, lengths, pool, 2)
    for b, L in enumerate(lengths.tolist()):
        want = out[b, :L].amax(0) if pool == "max" else out[b, :L].mean(0)
        assert torch.allclose(got[b], want)


def test_sequence_classifier_pools_as_asked():
    from biornn.models import SequenceClassifier, last_outputs

    torch.manual_seed(0)
    x, lengths = torch.randint(1, 9, (4, 6)), torch.tensor([6, 3, 1, 4])
    for pool in ("last", "max", "mean"):
        m = SequenceClassifier(9, 3, hidden_size=5, bidirectional=True, embedding_dim=4, pool=pool).eval()
        out, _ = m.rnn(m.embedding(x), lengths=lengths)
        if pool == "last":
            want = last_outputs(out, lengths, 2)
        else:
            want = torch.stack([(out[b, :L].amax(0) if pool == "max" else out[b, :L].mean(0))
                                for b, L in enumerate(lengths.tolist())])
        assert torch.allclose(m(x, lengths), m.readout(want), atol=1e-6)
    with pytest.raises(ValueError, match="pool must be one of last, max, mean"):
        SequenceClassifier(9, 3, pool="split")


def test_forget_bias_reaches_every_lstm_cell_of_a_task_model():
    """forget_bias=1 through a task's model builder (models.build_recurrent): every direction of every
    layer of every ensemble member starts with its effective forget-gate bias at exactly 1."""
    from biornn.tasks import names as names_task

    cfg = resolve("names", overrides=["forget_bias=1.5", "num_layers=2", "ensemble=2", "hidden_size=8", "ngram_blend=0"])
    model = names_task.build_model(cfg, vocab_size=12, n_classes=3)
    cells = [c for m in model.members for row in m.rnn.cells for c in row]
    assert len(cells) == 2 * 2 * 2
    for c in cells:
        f = c.gate_slices()["f"]
        assert torch.allclose(c.bias_ih[f] + c.bias_hh[f], torch.full((8,), 1.5))


def test_config_file_without_task_takes_overrides(data_dir, tmp_path, capsys):
    """`train --config FILE.toml key=value`: the first override is not read as the TASK."""
    toml = tmp_path / "task.toml"
    toml.write_text('task = "names"\nhidden_size = 8\nembedding_dim = 4\nensemble = 1\nepochs = 1\n')
    out = tmp_path / "run"
    assert main(["train", "--config", str(toml), "--data-dir", str(data_dir), "--out", str(out),
                 "batch_size=16", "lr=0.003"]) == 0
    cfg = json.loads((out / "config.json").read_text())
    assert (cfg["hidden_size"], cfg["batch_size"], cfg["lr"]) == (8, 16, 0.003)


@pytest.mark.parametrize("argv, needle", [
    (["names", "task=splice"], "override: task = 'splice', but the task trained is 'names'"),
    (["names", "beam=3"], "override: beam applies to translate, not to task 'names'"),
    (["names", "temperature=0.5"], "temperature applies to generate-names"),
    (["names", "folds=3"], "folds applies to promoters"),
    (["names", "horizon=5"], "horizon applies to ecg-anomaly and forecast"),
    (["splice", "smooth=3"], "smooth applies to ecg-anomaly"),
    (["names", "normalize=false"], "normalize applies to classify, tag, forecast"),
    (["names", "--record", "100"], "option: record applies to ecg-anomaly and mitdb-qrs"),
    (["names", "refit=true"], "override: refit applies to the tasks with a validation part"),
    (["splice", "conv_channels=4"], "override: conv_channels (a window layer before the recurrence) applies to"),
    (["splice", "ngram_blend=0.3"], "override: ngram_blend (a character n-gram model"),
    # values that are not numbers of the key's type were blamed on 'config:'
    (["names", "clip_value=nan"], "override: clip_value must be a finite number, got 'nan'"),
    (["names", "lr=inf"], "override: lr must be a finite number, got 'inf'"),
    (["names", "hidden_size=x"], "override: hidden_size must be int, got 'x'"),
])
def test_keys_that_do_nothing_for_the_task_are_refused(argv, needle, tmp_path, capsys):
    assert main(["train", *argv, "--data-dir", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and needle in err, err
    assert not (tmp_path / "o").exists()


def test_an_inapplicable_key_in_a_toml_file_names_the_file(tmp_path, capsys):
    toml = tmp_path / "na.toml"
    toml.write_text('record = "100"\n')
    assert main(["train", "names", "--config", str(toml), "--out", str(tmp_path / "o")]) == 2
    assert f"{toml}: record applies to" in capsys.readouterr().err


@pytest.mark.parametrize("left", [("config.json",), ("config.json", "model.safetensors", "log.csv", "steps.csv")])
def test_a_run_stopped_before_its_first_checkpoint_resumes_from_the_start(data_dir, tmp_path, capsys, left):
    """A run killed in its first epoch leaves config.json alone: --resume trains it from epoch 1 with the
    recorded config (it could be neither resumed nor trained again into the same folder).  Killed
    between the first epoch's weights and logs and its checkpoint, it leaves those too (it was refused
    then, 'checkpoint.pt: missing'), and resumes from epoch 1 the same way."""
    whole, stopped = tmp_path / "whole", tmp_path / "stopped"
    _train(data_dir, whole)
    _train(data_dir, stopped)
    for f in stopped.iterdir():  # what a kill in epoch 1 leaves: the config and a partial write
        if f.name not in left:
            f.unlink() if f.is_file() else __import__("shutil").rmtree(f)
    if "log.csv" in left:  # the first epoch's row alone
        (stopped / "log.csv").write_text("\n".join((stopped / "log.csv").read_text().splitlines()[:2]) + "\n")
    (stopped / ".checkpoint.pt.abcd1234.pt").write_bytes(b"partial")
    (stopped / "tensorboard").mkdir()  # a tracker's store, made before epoch 1
    assert main(["train", "--resume", str(stopped), "--data-dir", str(data_dir)]) == 0
    a, b = load_file(whole / "model.safetensors"), load_file(stopped / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not list(stopped.glob(".*"))
    rows = [r.split(",")[:3] for r in (stopped / "log.csv").read_text().splitlines()]
    assert rows == [r.split(",")[:3] for r in (whole / "log.csv").read_text().splitlines()]  # rewritten, not appended
    assert main(["train", "--resume", str(tmp_path / "nowhere")]) == 2
    assert "no such run directory" in capsys.readouterr().err


def test_a_bad_line_of_predict_file_is_named_by_its_line(data_dir, tmp_path, capsys):
    run = tmp_path / "run"
    _train(data_dir, run, "epochs=1")
    f = tmp_path / "in.txt"
    f.write_text("Abcab\n\n123\n", encoding="utf-8")
    capsys.readouterr()
    assert main(["predict", str(run), "--file", str(f)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"biornn: error: {f}:3: ") and "'123'" in err and err.count("\n") == 1, err


def test_threads_is_an_option_of_train_too(data_dir, tmp_path, capsys):
    """detect, bench, diagnose and experiment take --threads; train took only threads=N."""
    out = tmp_path / "t"
    assert main(["train", "names", "--data-dir", str(data_dir), "--out", str(out), *TINY, "--threads", "1"]) == 0
    assert json.loads((out / "config.json").read_text())["threads"] == 1
    capsys.readouterr()
    assert main(["train", "names", "--data-dir", str(data_dir), "--out", str(tmp_path / "u"), "--threads", "-1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("biornn: error: option: threads"), err
    assert main(["train", "--resume", str(out), "--threads", "2"]) == 2
    assert "--resume continues a run with its recorded config" in capsys.readouterr().err


def test_a_run_directory_being_written_by_another_process_is_refused(data_dir, tmp_path, capsys):
    """Two trainings started on one --out both found it empty and wrote it together (a config of one,
    the weights of the other, both exit 0); a resume beside a running training did the same.  The
    lock (checkpoint.run_lock, held here as another process would hold it) refuses the second one
    before it reads or writes anything."""
    import os
    import subprocess
    import sys

    from biornn import checkpoint

    out = tmp_path / "run"
    with checkpoint.run_lock(out):
        assert main(["train", "names", "--data-dir", str(data_dir), "--out", str(out), *TINY]) == 2
        err = capsys.readouterr().err.strip()
        assert err == (f"biornn: error: {out}: another biornn process (pid {os.getpid()}) is writing this run "
                       f"directory; wait for it to end or choose another --out"), err
        assert not out.exists()
        # another process, the same folder by another spelling
        code = ("import sys; from biornn.cli.main import main; "
                f"sys.exit(main(['train', '--resume', {str(tmp_path / '.' / 'run')!r}]))")
        res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        assert res.returncode == 2 and "another biornn process" in res.stderr, res.stderr[-2000:]
    _train(data_dir, out)  # released at the end of the block
    assert (out / "metrics.json").is_file()
    with checkpoint.run_lock(out):  # and at the end of the training that held it
        pass


def test_the_run_lock_never_follows_a_planted_file_and_leaves_nothing(tmp_path, monkeypatch):
    """A lock file someone else planted (a symlink to a file of the user's) must not be opened and
    truncated; a lock folder open to others is not used (the block runs unlocked); the lock file is
    removed when released."""
    import hashlib
    import os
    import tempfile

    from biornn import checkpoint

    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    out = tmp_path / "run"
    folder = tmp_path / f"biornn-locks-{os.getuid()}"
    folder.mkdir(mode=0o700)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious data")
    lock = folder / f"{hashlib.sha256(str(out.resolve()).encode()).hexdigest()[:32]}.lock"
    lock.symlink_to(victim)
    with checkpoint.run_lock(out):
        pass
    assert victim.read_text() == "precious data"
    lock.unlink()
    folder.chmod(0o777)
    with checkpoint.run_lock(out):
        assert list(folder.iterdir()) == []
    folder.chmod(0o700)
    with checkpoint.run_lock(out):  # this user's own folder: the lock file holds the pid while held
        assert lock.read_text() == str(os.getpid())
        with pytest.raises(ValueError, match=f"another biornn process \\(pid {os.getpid()}\\)"):
            with checkpoint.run_lock(out / "." ):
                pass
    assert list(folder.iterdir()) == []  # and is gone once released


def test_a_run_of_several_epochs_without_its_checkpoint_is_not_started_again(data_dir, tmp_path, capsys):
    """Only what the first epoch writes before its checkpoint lets a run resume from epoch 1; a run
    that logged more epochs and lost its checkpoint is refused, not overwritten."""
    run = tmp_path / "run"
    cfg = resolve("names", overrides=TINY + ["epochs=4"])
    assert train(cfg, run, data_dir=str(data_dir), progress=False, log=lambda s: None, stop_after_epochs=3) == {}
    (run / "checkpoint.pt").unlink()
    before = (run / "log.csv").read_text()
    assert main(["train", "--resume", str(run), "--data-dir", str(data_dir)]) == 2
    assert f"{run / 'checkpoint.pt'}: missing, nothing to resume" in capsys.readouterr().err
    assert (run / "log.csv").read_text() == before


def test_the_resume_hint_only_for_an_interrupted_run(data_dir, tmp_path, capsys):
    import shutil

    from biornn import checkpoint

    run = tmp_path / "run"
    _train(data_dir, run)
    lost = tmp_path / "lost"
    shutil.copytree(run, lost)
    (lost / "model.safetensors").unlink()  # finished (metrics.json), its weights gone: no resume to suggest
    capsys.readouterr()
    assert main(["predict", str(lost), "Abc"]) == 2
    assert capsys.readouterr().err.strip().endswith("(missing model.safetensors)")
    (lost / "metrics.json").unlink()
    with checkpoint.run_lock(lost):  # still training in another process
        assert main(["predict", str(lost), "Abc"]) == 2
        assert capsys.readouterr().err.strip().endswith("; another biornn process is training it now")
