"""The names task on the protocol of the issue's reference figures: an 85/15 split of the
20,050 raw lines (duplicates kept, so a name can sit on both sides), no validation split.

biornn's own split (``biornn train names``, ``benchmarks/names.py``) is stricter:
deduplicated and grouped so that no name string is in two splits.  This script
trains biornn's default names model (the same config, the same builder) for the
same number of epochs on the raw protocol and scores it, for several logit
adjustments tau, beside the n-gram logistic regressions -- so that figures
measured on the two protocols are not compared with each other.

    BIORNN_DATA=../shared/data .venv/bin/python benchmarks/names_raw_split.py
"""

from __future__ import annotations

import argparse
import random
import time
import unicodedata

import numpy as np
import torch
from torch.nn import functional as F

from biornn.baselines import NgramLogReg
from biornn.config import resolve
from biornn.data.batching import Vocabulary, pad_batch
from biornn.data.registry import locate
from biornn.metrics import classification_metrics
from biornn.tasks import names as task


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir")
    ap.add_argument("--seed", type=int, default=0, help="shuffle and model seed (default 0)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                    help="config overrides, as for 'biornn train names' (e.g. ensemble=5)")
    args = ap.parse_args()
    from biornn.cli.checks import run_script

    raise SystemExit(run_script(lambda: _run(args), "names_raw_split.py"))


def _run(args: argparse.Namespace) -> int:
    from biornn.cli import checks

    checks.seed("--seed", args.seed)
    checks.threads(args.threads)
    checks.benchmark_config("names", args.overrides, {"seed": "--seed", "threads": "--threads"})
    torch.set_num_threads(args.threads)
    root = locate("names", args.data_dir)
    rows = []
    for path in sorted((root / "names").glob("*.txt")):
        for line in path.read_text(encoding="utf-8-sig").splitlines():
            if line.strip():
                rows.append((unicodedata.normalize("NFC", line.strip()), path.stem))
    langs = sorted({lang for _, lang in rows})
    random.Random(args.seed).shuffle(rows)
    cut = int(0.85 * len(rows))
    train, test = rows[:cut], rows[cut:]
    y_tr = np.array([langs.index(lang) for _, lang in train])
    y_te = np.array([langs.index(lang) for _, lang in test])

    cfg = resolve("names", overrides=[f"seed={args.seed}", *args.overrides])
    torch.manual_seed(cfg.seed)
    vocab = Vocabulary.build(n for n, _ in train)
    x_tr, x_te = [vocab.encode(n) for n, _ in train], [vocab.encode(n) for n, _ in test]
    t0 = time.perf_counter()
    ngram = (task.fit_ngram(x_tr, y_tr, len(langs), vocab, task.class_weights(cfg, y_tr, len(langs)))
             if cfg.ngram_blend else None)
    fit_seconds = time.perf_counter() - t0
    model = task.build_model(cfg, len(vocab), len(langs), ngram)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = (len(y_tr) + cfg.batch_size - 1) // cfg.batch_size
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.epochs * steps)
    t0 = time.perf_counter()
    for epoch in range(cfg.epochs):
        order = torch.randperm(len(y_tr), generator=torch.Generator().manual_seed(epoch)).tolist()
        for s in range(0, len(order), cfg.batch_size):
            idx = order[s : s + cfg.batch_size]
            x, lengths = pad_batch([x_tr[i] for i in idx])
            y = torch.from_numpy(y_tr[idx])
            outputs = model.member_logits(x, lengths) if hasattr(model, "member_logits") else [model(x, lengths)]
            loss = torch.stack([F.cross_entropy(o, y, label_smoothing=cfg.label_smoothing) for o in outputs]).mean()
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_norm)
            opt.step()
            sched.step()
    seconds = time.perf_counter() - t0 + fit_seconds
    model.eval()

    def scores(fn) -> torch.Tensor:
        with torch.no_grad():
            return torch.cat([fn(*pad_batch(x_te[s : s + 512])) for s in range(0, len(x_te), 512)])

    logits = scores(model)
    prior = task.log_prior(y_tr, len(langs))
    print(f"raw 85/15 split of {len(rows)} lines: {len(train)} train / {len(test)} test, seed {args.seed}")
    print(f"{'model':60} {'accuracy':>8} {'bal.acc':>8} {'macro-F1':>8} {'train s':>8}")
    for tau in (0.0, 0.25, 0.375, 0.5, 0.625, 0.75, 1.0):
        m = classification_metrics(y_te, (logits - tau * prior).argmax(1).numpy(), langs)
        label = f"biornn default, logit adjustment tau={tau:g}" + (" (default)" if tau == cfg.logit_adjustment else "")
        print(f"{label:60} {m['accuracy']:8.3f} {m['balanced_accuracy']:8.3f} {m['macro_f1']:8.3f} {seconds:8.0f}")
    if ngram is not None:  # the blend's two parts alone, at the default adjustment
        tau = cfg.logit_adjustment
        for label, fn, s in (("its recurrent part alone", model.recurrent_logits, seconds - fit_seconds),
                             ("its n-gram part alone", model.ngram, fit_seconds)):
            m = classification_metrics(y_te, (scores(fn) - tau * prior).argmax(1).numpy(), langs)
            label = f"  {label}, tau={tau:g}"
            print(f"{label:60} {m['accuracy']:8.3f} {m['balanced_accuracy']:8.3f} {m['macro_f1']:8.3f} {s:8.0f}")
    for weight in (None, "balanced"):
        t0 = time.perf_counter()
        base = NgramLogReg(class_weight=weight).fit([n for n, _ in train], y_tr, len(langs))
        s = time.perf_counter() - t0
        m = classification_metrics(y_te, base.predict([n for n, _ in test]), langs)
        label = "n-gram LR" + (", balanced" if weight else "")
        print(f"{label:60} {m['accuracy']:8.3f} {m['balanced_accuracy']:8.3f} {m['macro_f1']:8.3f} {s:8.0f}")
    return 0


if __name__ == "__main__":
    main()
