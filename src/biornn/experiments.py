r"""Long-time-lag experiments: which cells learn the adding problem, at which lags, with which remedies.

The grid (Hochreiter & Schmidhuber 1997, experiment 4; Le, Jaitly & Hinton
2015, Sec. 4.1): every cell (``elman``, ``irnn``, ``lstm1997``, ``lstm``,
``gru``) is trained on the adding problem (:mod:`biornn.longlag`) at every
lag T, with and without gradient clipping; a run counts as *solved* when its
test MSE falls below 0.01 (the trivial baseline, always answering 1, scores
0.167).  Beside it: the gradient flow of every cell at initialisation
(:func:`biornn.diagnostics.fresh_gradient_flow`), and an *exploding-gradient*
run -- an IRNN whose identity recurrence is scaled above 1 (Pascanu,
Mikolov & Bengio 2013: clipping is the remedy) -- trained by SGD with and
without clipping.

Every run is trained by BPTT on fresh batches, with Adam, and stopped as
soon as it is solved (test MSE checked every ``eval_every`` steps) or after
``steps`` updates.  All hyperparameters are recorded in the result.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from .checkpoint import strict_json, write_json
from .diagnostics import COMPARE_CELLS, build_fresh, fresh_gradient_flow, plot_gradient_flow
from .longlag import ADDING_BASELINE_MSE, ADDING_SOLVED_MSE, adding_problem

#: per-cell Adam learning rates, chosen on runs of the adding problem: the gated cells learn
#: fastest at 1e-2; the Elman tanh net is unstable there and gets Adam's usual 1e-3; the ReLU IRNN,
#: whose activations are unbounded, needs 3e-4 and a long budget (T = 100 with clipping: stuck at the
#: baseline for ~3,000 updates, solved after ~6,500; 1e-4 learns too, more slowly; 1e-3 stalled)
LEARNING_RATES: dict[str, float] = {"elman": 1e-3, "irnn": 3e-4, "lstm1997": 1e-2, "lstm": 1e-2, "gru": 1e-2}
#: forget-gate bias of the forget-gate LSTM in the grid: sigma(3) = 0.95 keeps a memory for ~20+ steps
#: at the start (Gers et al. 2000; Tallec & Ollivier 2018 ("chrono") tie it to the lag, log T)
FORGET_BIAS = 3.0

#: the budget is the same for every cell: 12,000 updates (384,000 sequences), enough for the IRNN
#: (Le, Jaitly & Hinton 2015 trained it far longer); runs stop as soon as they are solved
DEFAULT = {"cells": COMPARE_CELLS, "lags": (25, 50, 100, 200), "steps": 12000, "hidden": 64, "batch": 32}
QUICK = {"cells": COMPARE_CELLS, "lags": (20, 50), "steps": 600, "hidden": 32, "batch": 32}


def available_memory() -> int:
    """Bytes of memory available now (Linux ``MemAvailable``; else the physical memory)."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


#: the files a long-lag grid writes into its folder
OUTPUTS = ("long_lag.json", "gradient_flow.png", "exploding.png", "success.png")


def estimate_memory(lag: int, hidden: int, batch: int, diag_batch: int = 16) -> int:
    """Rough peak bytes of one run of the grid at lag T (float32).

    Training keeps, per step, the gates' and states' activations of the batch
    for the backward pass (about 4 gate blocks + 3 states, twice for the
    gradients); the gradient-flow measurement runs the step loop, whose graph
    holds about 40 (B, H) tensors per step, plus 16 rows of the Jacobian at once.
    """
    train = 4 * lag * batch * hidden * (4 + 3) * 2
    diagnose = 4 * lag * diag_batch * hidden * 40 + 4 * 16 * 8 * lag * hidden * 2
    # the weights (at most 4 gate blocks of H x (I + H + 1), I = 2) with their gradient and Adam's two
    # moments, and the Jacobian d h_T / d h_t's H x H per step of the 4 sequences it is taken over
    weights = 4 * 4 * hidden * (hidden + 3) * 4
    jacobian = 4 * lag * hidden * hidden * 4
    return train + diagnose + weights + jacobian


def check_grid(lags: Sequence[int], hidden: int, batch: int, memory: int | None = None, jobs: int = 1) -> int:
    """Refuse (``ValueError``) a grid whose largest run (times ``jobs`` running at once) would not fit
    in memory; return its estimate."""
    for name, values in (("lag", lags), ("hidden", [hidden]), ("batch", [batch])):
        for v in values:
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
    if min(lags) < 2:
        raise ValueError("lags must be >= 2 (the adding problem marks one step in each half)")
    need = estimate_memory(max(lags), hidden, batch) * jobs
    have = available_memory() if memory is None else memory
    if need > 0.8 * have:
        at_once = f" ({jobs} runs at once)" if jobs > 1 else ""
        raise ValueError(
            f"the grid does not fit in memory: lag {max(lags)} with hidden {hidden} and batch {batch}{at_once} needs "
            f"about {need / 2**30:.1f} GiB, {have / 2**30:.1f} GiB are available; use smaller lags, --hidden or --batch"
            + (" or fewer --jobs" if jobs > 1 else "")
        )
    return need


def train_adding(cell: str, lag: int, *, steps: int, hidden: int, batch: int, lr: float, clip: float,
                 optimizer: str = "adam", scale: float = 1.0, forget_bias: float | None = None, seed: int = 0,
                 eval_every: int = 100, test_size: int = 1000, stop_when_solved: bool = True) -> dict[str, Any]:
    """Train one cell on the adding problem at lag T; return its test MSE and history.

    Parameters
    ----------
    cell : str
    lag : int
        T, the sequence length.
    steps : int
        Most updates (batches of fresh sequences).
    hidden, batch : int
    lr : float
    clip : float
        Clip the global gradient norm to this (``torch.nn.utils.clip_grad_norm_``);
        0 = no clipping.
    optimizer : {"adam", "sgd"}
        SGD has momentum 0.9.
    scale : float
        Multiplies W_hh after the cell's default init (see :func:`build_fresh`).
    forget_bias : float, optional
    seed : int
    eval_every : int
        Test MSE every this many steps (and at the end).
    test_size : int
        Fixed test sequences (their own seed).
    stop_when_solved : bool
        Stop at the first evaluation below :data:`ADDING_SOLVED_MSE`.

    Returns
    -------
    dict
        ``test_mse`` (last evaluation; ``None`` if it diverged to NaN/inf),
        ``best_test_mse``, ``solved``, ``diverged``, ``steps`` run,
        ``seconds``, ``history`` (list of {step, test_mse, grad_norm}),
        ``max_grad_norm`` (before clipping).
    """
    torch.manual_seed(seed)
    rnn = build_fresh(cell, 2, hidden, scale=scale, forget_bias=forget_bias if cell == "lstm" else None)
    readout = nn.Linear(rnn.output_size, 1)
    params = [*rnn.parameters(), *readout.parameters()]
    if optimizer == "adam":
        opt: torch.optim.Optimizer = torch.optim.Adam(params, lr=lr)
    elif optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=lr, momentum=0.9)
    else:
        raise ValueError(f"optimizer must be adam or sgd, got {optimizer!r}")
    data = torch.Generator().manual_seed(seed + 1)
    x_test, y_test = adding_problem(test_size, lag, torch.Generator().manual_seed(10_000 + lag))

    def test_mse() -> float:
        with torch.no_grad():
            out, _ = rnn(x_test)
            return float((readout(out[:, -1]).squeeze(1) - y_test).pow(2).mean())

    history: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    best, mse, diverged, max_norm, step, norm = math.inf, math.nan, False, 0.0, 0, 0.0
    for step in range(1, steps + 1):
        x, y = adding_problem(batch, lag, data)
        out, _ = rnn(x)
        loss = (readout(out[:, -1]).squeeze(1) - y).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        # the norm before clipping (clip_grad_norm_ returns it); inf max_norm = measure only
        norm = float(nn.utils.clip_grad_norm_(params, clip if clip > 0 else math.inf))
        max_norm = max(max_norm, norm) if math.isfinite(norm) else math.inf
        if not math.isfinite(float(loss.detach())) or not math.isfinite(norm):
            diverged = True
            history.append({"step": step, "test_mse": None, "grad_norm": None})
            break
        opt.step()
        if step % eval_every == 0 or step == steps:
            mse = test_mse()
            if not math.isfinite(mse):
                diverged = True
                history.append({"step": step, "test_mse": None, "grad_norm": norm})
                break
            best = min(best, mse)
            history.append({"step": step, "test_mse": mse, "grad_norm": norm})
            if stop_when_solved and mse < ADDING_SOLVED_MSE:
                break
    if not diverged and (not history or history[-1]["step"] != step):
        mse = test_mse()
        diverged = not math.isfinite(mse)
        if not diverged:
            best = min(best, mse)
    return {
        "cell": cell, "lag": lag, "clip": clip, "lr": lr, "optimizer": optimizer, "scale": scale,
        "forget_bias": forget_bias if cell == "lstm" else None, "hidden": hidden, "batch": batch, "seed": seed,
        "test_mse": None if diverged else mse, "best_test_mse": best if math.isfinite(best) else None,
        "solved": (not diverged) and mse < ADDING_SOLVED_MSE, "diverged": diverged, "steps": step,
        "sequences": step * batch, "seconds": round(time.perf_counter() - t0, 2),
        "max_grad_norm": max_norm if math.isfinite(max_norm) else None, "history": history,
    }


def long_lag_grid(out: str | Path, *, cells: Sequence[str] = DEFAULT["cells"],
                  lags: Sequence[int] = DEFAULT["lags"], steps: int = DEFAULT["steps"],
                  hidden: int = DEFAULT["hidden"], batch: int = DEFAULT["batch"], clip: float = 1.0,
                  clipping: Sequence[bool] = (False, True), lr: dict[str, float] | None = None,
                  forget_bias: float = FORGET_BIAS, explode_scale: float = 1.1, explode_lag: int | None = None,
                  seed: int = 0, jobs: int = 1, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the grid and write ``long_lag.json``, ``success.png``, ``gradient_flow.png``, ``exploding.png``.

    Parameters
    ----------
    out : path
        Output directory (created).
    cells, lags : sequences
        Cell names and lags T.
    steps, hidden, batch : int
        Per run: most updates, hidden units, batch size.
    clip : float
        The clipping threshold (global gradient norm) of the clipped runs.
    clipping : sequence of bool
        Which of (no clipping, clipping) to run.
    lr : dict, optional
        Adam learning rate per cell (default :data:`LEARNING_RATES`).
    forget_bias : float
        Of the forget-gate LSTM.
    explode_scale : float
        The exploding run: an IRNN with W_hh = explode_scale * I, trained by
        SGD (lr 1e-3, momentum 0.9) at ``explode_lag`` (default: the middle
        lag), with and without clipping; 0 skips it.
    seed : int
    jobs : int
        Runs trained at once, each in its own process with one torch thread
        (1: one after the other in this process, with its threads).  Every run
        seeds itself, so the results do not depend on ``jobs``.
    log : callable
        Receives one line per finished run (in the order they finish).

    Returns
    -------
    dict
        What ``long_lag.json`` holds: ``config``, ``runs`` (one per cell, lag
        and clipping), ``table`` (rows of cell, clip and test MSE per lag),
        ``gradient_flow`` (per lag and cell: the init's dL/dh_t), ``exploding``.
    """
    from .cells import CELL_NAMES

    for c in cells:
        if c not in CELL_NAMES:
            raise ValueError(f"cell must be one of {', '.join(CELL_NAMES)}; got {c!r}")
    lags = sorted(set(lags))
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    check_grid(lags, hidden, batch, jobs=jobs)
    if steps <= 0:
        raise ValueError(f"steps must be positive, got {steps}")
    rates = {**LEARNING_RATES, **(lr or {})}
    from .checkpoint import check_out_dir

    out = check_out_dir(out, OUTPUTS, option="out")
    out.mkdir(parents=True, exist_ok=True)
    config = {"cells": list(cells), "lags": lags, "steps": steps, "hidden": hidden, "batch": batch, "clip": clip,
              "clipping": list(clipping), "lr": {c: rates.get(c, 1e-3) for c in cells}, "forget_bias": forget_bias,
              "explode_scale": explode_scale, "seed": seed, "solved_below": ADDING_SOLVED_MSE,
              "baseline_mse": ADDING_BASELINE_MSE, "torch_threads": 1 if jobs > 1 else torch.get_num_threads(),
              "jobs": jobs}
    result: dict[str, Any] = {"config": config, "gradient_flow": {}, "runs": [], "exploding": []}
    t_start = time.perf_counter()

    # gradient flow at initialisation (the cells as trained: lstm with its forget bias), per lag
    for lag in lags:
        flows = {}
        for c in cells:
            r = fresh_gradient_flow(c, lag, hidden, 16, forget_bias=forget_bias if c == "lstm" else None,
                                    seed=seed, jacobian_batch=4)
            flows[c] = {"dl_dh": r["dl_dh"][0], "dh_final_dh": r["dh_final_dh"][0], "saturation": r["saturation"][0]}
        result["gradient_flow"][str(lag)] = flows
    plot_gradient_flow(result["gradient_flow"][str(lags[-1])], out / "gradient_flow.png",
                       gradient_flow_title(lags[-1], cells, forget_bias))
    # an earlier grid's plots go with its long_lag.json, replaced now: this grid draws its own at the
    # end, and one interrupted before then must not sit beside another grid's figures
    for name in ("success.png", "exploding.png"):
        (out / name).unlink(missing_ok=True)
    write_json(out / "long_lag.json", strict_json(result))

    grid = [(c, lag, clipped) for lag in lags for c in cells for clipped in clipping]
    done: dict[int, dict[str, Any]] = {}

    def finished(k: int, r: dict[str, Any]) -> None:
        c, lag, clipped = grid[k]
        done[k] = r
        result["runs"] = [done[i] for i in sorted(done)]  # grid order, whatever order they finish in
        shown = "diverged" if r["diverged"] else f"{r['test_mse']:.4f}"
        log(f"{c:9s} T={lag:<5d} clip={'on ' if clipped else 'off'} test MSE {shown:>8s} "
            f"{'solved' if r['solved'] else '      '} after {r['steps']} steps ({r['seconds']:.0f} s)")
        write_json(out / "long_lag.json", strict_json(result))  # after every run: a partial grid is kept

    def kwargs(c: str, clipped: bool) -> dict[str, Any]:
        return dict(steps=steps, hidden=hidden, batch=batch, lr=rates.get(c, 1e-3),
                    clip=clip if clipped else 0.0, forget_bias=forget_bias, seed=seed)

    if jobs == 1:
        for k, (c, lag, clipped) in enumerate(grid):
            finished(k, train_adding(c, lag, **kwargs(c, clipped)))
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        # the longest lags first, so that the last runs to finish are short ones
        order = sorted(range(len(grid)), key=lambda k: -grid[k][1])
        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"),
                                 initializer=torch.set_num_threads, initargs=(1,)) as pool:
            futures = {pool.submit(train_adding, grid[k][0], grid[k][1], **kwargs(grid[k][0], grid[k][2])): k
                       for k in order}
            try:
                for f in as_completed(futures):
                    finished(futures[f], f.result())
            except BaseException:
                # Ctrl-C, a kill (SIGTERM reaches this process alone), a failed run: stop the workers now;
                # leaving the pool would wait for every run in progress to finish (minutes at long lags)
                for proc in list((getattr(pool, "_processes", None) or {}).values()):
                    proc.terminate()
                pool.shutdown(wait=False, cancel_futures=True)
                raise

    if explode_scale:
        lag = explode_lag or lags[len(lags) // 2]
        for clipped in (False, True):
            r = train_adding("irnn", lag, steps=min(steps, 300), hidden=hidden, batch=batch, lr=1e-3,
                             clip=clip if clipped else 0.0, optimizer="sgd", scale=explode_scale, seed=seed,
                             eval_every=10, stop_when_solved=False)
            result["exploding"].append(r)
            norm = r["max_grad_norm"] if r["max_grad_norm"] is not None else math.inf
            outcome = "diverged" if r["diverged"] else f"test MSE {r['test_mse']:.4f}"
            log(f"exploding: irnn W_hh = {explode_scale:g} I, T={lag}, SGD, clip={'on ' if clipped else 'off'}: "
                f"max gradient norm {norm:.3g}, {outcome} after {r['steps']} steps")
        plot_exploding(result["exploding"], out / "exploding.png")

    result["table"] = success_table(result["runs"], lags)
    result["seconds"] = round(time.perf_counter() - t_start, 1)
    write_json(out / "long_lag.json", strict_json(result))
    if result["runs"]:
        plot_success(result["table"], lags, out / "success.png")
    return result


def success_table(runs: Sequence[dict[str, Any]], lags: Sequence[int]) -> list[dict[str, Any]]:
    """Rows (cell, clip) with the test MSE at each lag (``None``: diverged) and whether it was solved."""
    rows: dict[tuple[str, float], dict[str, Any]] = {}
    for r in runs:
        row = rows.setdefault((r["cell"], r["clip"]), {"cell": r["cell"], "clip": r["clip"], "mse": {}, "solved": {}})
        row["mse"][str(r["lag"])] = r["test_mse"]
        row["solved"][str(r["lag"])] = r["solved"]
    return list(rows.values())


def format_table(table: Sequence[dict[str, Any]], lags: Sequence[int]) -> str:
    """The success table as Markdown: test MSE per lag, solved marked with *."""
    head = "| cell | clipping | " + " | ".join(f"T = {t}" for t in lags) + " |"
    lines = [head, "|" + "---|" * (2 + len(lags))]
    for row in table:
        cells = []
        for t in lags:
            v = row["mse"].get(str(t), "n/a")
            if v == "n/a":
                cells.append("")
            elif v is None:
                cells.append("diverged")
            else:
                cells.append(f"**{v:.4f}**" if row["solved"][str(t)] else f"{v:.3f}")
        clip = f"norm {row['clip']:g}" if row["clip"] else "none"
        lines.append(f"| {row['cell']} | {clip} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_success(table: Sequence[dict[str, Any]], lags: Sequence[int], path: str | Path) -> None:
    """Heatmap of log10 test MSE, rows (cell, clipping) by lag; solved cells marked."""
    from .diagnostics import _pyplot, _save

    plt = _pyplot()
    M = np.full((len(table), len(lags)), np.nan)
    for i, row in enumerate(table):
        for j, t in enumerate(lags):
            v = row["mse"].get(str(t))
            if v is not None:
                M[i, j] = math.log10(max(v, 1e-6))
    fig, ax = plt.subplots(figsize=(1.6 * len(lags) + 3, 0.45 * len(table) + 1.5))
    im = ax.imshow(M, cmap="RdYlGn_r", vmin=-4, vmax=math.log10(0.5), aspect="auto")
    for i, row in enumerate(table):
        for j, t in enumerate(lags):
            v = row["mse"].get(str(t), "n/a")
            text = "" if v == "n/a" else ("NaN" if v is None else f"{v:.3f}" + (" ok" if row["solved"][str(t)] else ""))
            ax.text(j, i, text, ha="center", va="center", fontsize=8)
    ax.set_xticks(range(len(lags)), [f"T={t}" for t in lags])
    ax.set_yticks(range(len(table)), [f"{r['cell']}, {'clip' if r['clip'] else 'no clip'}" for r in table])
    fig.colorbar(im, ax=ax, label="log10 test MSE (baseline 0.167 = -0.78; solved < 0.01 = -2)")
    ax.set_title("adding problem: test MSE (ok = solved)")
    _save(fig, path)


def gradient_flow_title(lag: int, cells: Sequence[str], forget_bias: float) -> str:
    """The title of gradient_flow.png: the forget bias is named only where an ``lstm`` is drawn."""
    bias = f" (lstm: forget bias {forget_bias:g})" if "lstm" in cells else ""
    return f"at initialisation, adding problem T = {lag}{bias}"


def plot_exploding(runs: Sequence[dict[str, Any]], path: str | Path) -> None:
    """Gradient norm (before clipping) and test MSE over training, with and without clipping."""
    from .diagnostics import _save

    _save(_exploding_figure(runs), path)


def _exploding_figure(runs: Sequence[dict[str, Any]]) -> Any:
    """The figure of :func:`plot_exploding`: a red dashed line (in the legend) marks a run that
    diverged, only if one did; the dotted line is the baseline MSE of predicting the mean."""
    from .diagnostics import _pyplot

    plt = _pyplot()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.8))
    for r in runs:
        label = f"clip {r['clip']:g}" if r["clip"] else "no clipping"
        h = [e for e in r["history"] if e["grad_norm"] is not None]
        a1.semilogy([e["step"] for e in h], [e["grad_norm"] for e in h], marker=".", label=label)
        m = [e for e in r["history"] if e["test_mse"] is not None]
        a2.semilogy([e["step"] for e in m], [e["test_mse"] for e in m], marker=".", label=label)
        if r["diverged"]:
            a2.axvline(r["steps"], color="r", ls="--", lw=0.8, label=f"{label}: diverged (NaN/inf)")
    a1.set(xlabel="update", ylabel="gradient norm before clipping", title="exploding gradients")
    a2.set(xlabel="update", ylabel="test MSE", title="test MSE")
    a2.axhline(ADDING_BASELINE_MSE, color="gray", ls=":", lw=0.8,
               label=f"baseline: predict the mean ({ADDING_BASELINE_MSE:.3f})")
    for a in (a1, a2):
        if a.get_legend_handles_labels()[0]:
            a.legend(fontsize=8)
        a.grid(True, alpha=0.3)
    if runs:
        fig.suptitle(f"IRNN with W_hh = {runs[0]['scale']:g} I, adding problem T = {runs[0]['lag']}, SGD")
    return fig
