"""``biornn cells``: the cells by name, with their equations and papers."""

from __future__ import annotations

import argparse
import inspect

EQUATIONS = {
    "elman": ("h_t = tanh(W_xh x_t + W_hh h_{t-1} + b)", "Elman 1990; torch nn.RNN"),
    "elman-relu": ("h_t = relu(W_xh x_t + W_hh h_{t-1} + b)", "torch nn.RNN(nonlinearity='relu')"),
    "irnn": ("h_t = relu(W_xh x_t + W_hh h_{t-1} + b), W_hh = I, b = 0 at init",
             "Le, Jaitly & Hinton 2015"),
    "fully-recurrent": ("s_t = f_h(W_xh x_t + W_hh s_{t-1} + W_oh o_{t-1} + b); o_t = f_o(V s_t + b_o)",
                        "Williams & Zipser 1989 (outputs fed back)"),
    "lstm1997": ("c_t = z_t * i_t + c_{t-1}; h_t = h(c_t) * o_t  (no forget gate)",
                 "Hochreiter & Schmidhuber 1997"),
    "lstm": ("c_t = f_t * c_{t-1} + i_t * g_t; h_t = o_t * tanh(c_t)",
             "Gers, Schmidhuber & Cummins 2000; torch nn.LSTM"),
    "lstm-peephole": ("as lstm, gates also read c (i, f: c_{t-1}; o: c_t)", "Gers & Schmidhuber 2000"),
    "gru": ("h_t = (1 - z_t) * n_t + z_t * h_{t-1}; n_t = tanh(W_in x + r_t * (W_hn h + b_hn))",
            "Cho et al. 2014; torch nn.GRU"),
}


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cells", help="list the cells with their equations",
                       description="List the cell names accepted by --cell, each with its "
                       "equation and paper; with a NAME, print that cell's full documentation.")
    p.add_argument("name", nargs="?", help="a cell name for its full documentation")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..cells import CELL_NAMES, CELLS

    if args.name is None:
        width = max(map(len, CELL_NAMES))
        for name in CELL_NAMES:
            eq, paper = EQUATIONS[name]
            print(f"{name.ljust(width)}  {eq}\n{' ' * width}  [{paper}]")
        return 0
    if args.name not in CELLS:
        raise ValueError(f"unknown cell {args.name!r}; choose from {', '.join(CELL_NAMES)}")
    cls, defaults, init = CELLS[args.name]
    print(f"{args.name}: {cls.__name__}({', '.join(f'{k}={v!r}' for k, v in defaults.items())})"
          + (f", init={init!r}" if init else ""))
    eq, paper = EQUATIONS[args.name]
    print(f"{eq}   [{paper}]\n")
    print(inspect.getdoc(cls))
    print()
    print(inspect.getdoc(inspect.getmodule(cls)))
    return 0
