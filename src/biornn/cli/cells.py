"""``biornn cells``: the cells by name, with their equations and papers."""

from __future__ import annotations

import argparse
import inspect
import re

EQUATIONS = {
    "elman": ("h_t = tanh(W_xh x_t + W_hh h_{t-1} + b)", "Elman 1990; torch nn.RNN"),
    "elman-relu": ("h_t = relu(W_xh x_t + W_hh h_{t-1} + b)", "torch nn.RNN(nonlinearity='relu')"),
    "irnn": ("h_t = relu(W_xh x_t + W_hh h_{t-1} + b), W_hh = I, b = 0 at init",
             "Le, Jaitly & Hinton 2015"),
    "fully-recurrent": ("s_t = f_h(W_xh x_t + W_hh s_{t-1} + W_oh o_{t-1} + b); o_t = f_o(V s_t + b_o)",
                        "layered form of Williams & Zipser 1989: outputs fed back"),
    "lstm1997": ("c_t = z_t * i_t + c_{t-1}; h_t = h(c_t) * o_t  (no forget gate)",
                 "Hochreiter & Schmidhuber 1997"),
    "lstm": ("c_t = f_t * c_{t-1} + i_t * g_t; h_t = o_t * tanh(c_t)",
             "Gers, Schmidhuber & Cummins 2000; torch nn.LSTM"),
    "lstm-peephole": ("as lstm, gates also read c (i, f: c_{t-1}; o: c_t)", "Gers & Schmidhuber 2000"),
    "gru": ("h_t = (1 - z_t) * n_t + z_t * h_{t-1}; n_t = tanh(W_xn x_t + b_in + r_t * (W_hn h_{t-1} + b_hn))",
            "Cho et al. 2014, in torch nn.GRU's form"),
}


#: LaTeX in the docstrings -> what a terminal shows
_SYMBOLS = {
    r"\odot": "⊙", r"\sigma": "σ", r"\tanh": "tanh", r"\partial": "∂", r"\lambda": "λ",
    r"\qquad": "    ", r"\quad": "  ", r"\cdot": "·", r"\operatorname{diag}": "diag",
    r"\sum": "Σ", r"\textstyle": "", r"\lVert": "‖", r"\rVert": "‖", r"\tfrac12": "½",
    r"\big": "", r"\Big": "", r"\!": "", r"\,": " ", r"^\top": "ᵀ", r"\top": "ᵀ",
}


def plain(text: str) -> str:
    """reStructuredText with LaTeX maths -> plain text for a terminal."""
    text = re.sub(r"\n *\.\. math::\n", "\n", text)
    text = re.sub(r":math:`([^`]*)`", r"\1", text)
    text = re.sub(r":(?:func|mod|class|data):`~?([^`]*)`", r"\1", text)
    text = text.replace("``", "")
    text = re.sub(r" *\\\\ *$", "", text, flags=re.M)  # LaTeX line breaks
    text = re.sub(r"&\\text\{([^}]*)\} *(.*?) *$", r"   (\1\2)", text, flags=re.M)
    text = re.sub(r"\\text\{([^}]*)\}", r"\1", text)
    text = re.sub(r"\\frac\{([^{}]*)\}\{([^{}]*)\}", r"\1 / \2", text)
    text = re.sub(r"\\overleftarrow\{([^}]*)\}", r"\1(reverse)", text)
    for latex, symbol in _SYMBOLS.items():
        text = text.replace(latex, symbol)
    text = re.sub(r" *&(?==)", " ", text)  # alignment marks (a &= b)
    return text


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cells", help="list the cells with their equations",
                       description="List the cell names (as Recurrent and the command line take them), each with its "
                       "equation and paper; with a NAME, print that cell's full documentation.")
    p.add_argument("name", nargs="?", help="a cell name for its full documentation")
    p.set_defaults(handler=run)


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
    from ..init import SCHEMES

    cls, defaults, init = CELLS[args.name]
    print(f"{args.name}: {cls.__name__}({', '.join(f'{k}={v!r}' for k, v in defaults.items())})")
    eq, paper = EQUATIONS[args.name]
    print(f"{eq}   [{paper}]")
    if init:
        s = SCHEMES[init]
        print(f"initialised with biornn.init's {init!r} scheme: recurrent weights {s['recurrent']}, "
              f"input weights {s['input']}, biases {s['bias']}")
    print()
    print(plain(inspect.getdoc(cls) or ""))
    print()
    print(plain(inspect.getdoc(inspect.getmodule(cls)) or ""))
    return 0
