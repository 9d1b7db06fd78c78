"""The sequence alphabets and the light readers (FASTA, UCR/UEA, CSV/TSV, NPZ) on small files written here."""

from __future__ import annotations

import re

import numpy as np
import pytest

from biornn.data.alphabets import DNA, PROTEIN, RNA, Alphabet, get, text_alphabet
from biornn.data.readers import read_fasta, read_labels, read_npz, read_table, read_ucr

# -- alphabets ----------------------------------------------------------------------


def test_iupac_codes_spread_their_weight():
    x = DNA.encode("ACGTNRYd")
    assert x.shape == (8, 4) and x.dtype == np.float32
    np.testing.assert_allclose(x.sum(axis=1), 1.0)
    np.testing.assert_allclose(x[4], [0.25, 0.25, 0.25, 0.25])  # N
    np.testing.assert_allclose(x[5], [0.5, 0, 0.5, 0])  # R = A/G
    np.testing.assert_allclose(x[6], [0, 0.5, 0, 0.5])  # Y = C/T
    np.testing.assert_allclose(x[7], [1 / 3, 0, 1 / 3, 1 / 3])  # d = A/G/T, lower case read as upper
    assert DNA.decode(x[:4]) == "ACGT"


def test_rna_and_protein():
    np.testing.assert_allclose(RNA.encode("UN"), [[0, 0, 0, 1], [0.25] * 4])
    with pytest.raises(ValueError, match="'T' at position 1 is not in the RNA alphabet"):
        RNA.encode("TA")
    x = PROTEIN.encode("ACXB")
    assert x.shape == (4, 20)
    np.testing.assert_allclose(x[2], np.full(20, 0.05), rtol=1e-6)
    assert x[3, PROTEIN.symbols.index("D")] == pytest.approx(0.5)
    assert x[3, PROTEIN.symbols.index("N")] == pytest.approx(0.5)
    assert get("Protein") is PROTEIN
    with pytest.raises(ValueError, match="unknown alphabet"):
        get("klingon")


def test_bad_character_names_sequence_position_and_character():
    with pytest.raises(ValueError) as e:
        DNA.encode("ACGTZ", where="f.fa: record 'r1'")
    assert str(e.value).startswith("f.fa: record 'r1': character 'Z' at position 5 is not in the DNA alphabet")


def test_text_alphabet_and_json_round_trip():
    a = text_alphabet(["hello", "Hi"])
    assert a.symbols == "Hehilo" and a.case_sensitive
    assert a.encode("hi").argmax(axis=1).tolist() == [a.symbols.index("h"), a.symbols.index("i")]
    with pytest.raises(ValueError, match="'x' at position 1"):
        a.encode("x")
    assert Alphabet.from_json(DNA.to_json()) == DNA


# -- FASTA ----------------------------------------------------------------------------


def test_fasta_labels_from_header_and_from_file(tmp_path):
    fa = tmp_path / "s.fa"
    fa.write_text(">r1 label=EI some words\nACGT\nacgn\n\n>r2 label=N\nTTTT\n; a comment\n>r3\nGG\n")
    recs = read_fasta(fa, alphabet=DNA)
    assert [(r.id, r.sequence, r.label) for r in recs] == [("r1", "ACGTacgn", "EI"), ("r2", "TTTT", "N"),
                                                            ("r3", "GG", None)]
    assert recs[0].description == "label=EI some words"
    labels = tmp_path / "labels.tsv"
    labels.write_text("# id label\nr1\tIE\nr2\tIE\nr3\tN\n")
    assert read_labels(labels)["r3"] == "N"
    assert [r.label for r in read_fasta(fa, labels=labels, require_labels=True)] == ["IE", "IE", "N"]
    # a label with spaces is quoted (unquoted, 'class A' and 'class B' were both read as 'class')
    fa.write_text('>r1 label="class A" x\nACGT\n>r2 label=B\nAC\n')
    assert [r.label for r in read_fasta(fa, alphabet=DNA)] == ["class A", "B"]


@pytest.mark.parametrize("text, match", [
    ("", "empty file"),
    ("ACGT\n", "line 1: sequence before the first '>'"),
    (">r1 label=N\nACGT\n>r2\n", "record 'r2' \\(line 3\\): no sequence"),
    (">r1 label=N\nAC\n>r1\nGT\n", "record 'r1' \\(line 3\\): id given twice"),
    (">r1 label=N\nACGT\n>r2 label=N\nACXT\n", "record 'r2' \\(line 3\\): character 'X' at position 3 is not in the DNA"),
    (">r1\nACGT\n", "record 'r1' \\(line 1\\): no label in its header"),
    (">r1 label=A label=C\nACGT\n", "record 'r1' \\(line 1\\): the header gives label= 2 times"),
    ('>r1 label=""\nACGT\n', "record 'r1' \\(line 1\\): an empty label"),
])
def test_fasta_bad_input(tmp_path, text, match):
    fa = tmp_path / "bad.fa"
    fa.write_text(text)
    with pytest.raises(ValueError, match=match) as e:
        read_fasta(fa, alphabet=DNA, require_labels=True)
    assert str(e.value).startswith(str(fa)) and "\n" not in str(e.value)


def test_fasta_max_length_and_missing_label_in_file(tmp_path):
    fa = tmp_path / "s.fa"
    fa.write_text(">a\nACGTACGT\n>b\nAC\n")
    with pytest.raises(ValueError, match="record 'a' \\(line 1\\): sequence of 8 residues is longer than the maximum 5"):
        read_fasta(fa, max_length=5)
    with pytest.raises(ValueError, match="record 'b' \\(line 3\\): no label in the labels file"):
        read_fasta(fa, labels={"a": "x"}, require_labels=True)


# -- UCR / UEA --------------------------------------------------------------------------


def test_ucr_whitespace_and_comma(tmp_path):
    f = tmp_path / "X_TRAIN.tsv"
    f.write_text("1.0000000e+00  0.5 1.5 -2\n-1\t3 4 5\n\n")
    X, y = read_ucr(f)
    assert X.shape == (2, 3) and X.dtype == np.float32 and y == ["1", "-1"]
    g = tmp_path / "X_TRAIN.txt"
    g.write_text("abnormal,1,2\nnormal,3,4,5\n")
    rows, y = read_ucr(g, equal_length=False)
    assert [len(r) for r in rows] == [2, 3] and y == ["abnormal", "normal"]


@pytest.mark.parametrize("text, match", [
    ("  \n", "empty file"),
    ("1 0.5 1.5\n2 1.0\n", "line 2: 1 values, but line 1 has 2; equal lengths are required"),
    ("1 0.5 nan\n", "line 1, value 2: nan \\(NaN or infinite"),
    ("1 0.5 inf\n", "line 1, value 2: inf \\(NaN or infinite"),
    ("1 0.5 x\n", "line 1, value 2: 'x' is not a number"),
    ("1\n", "line 1: a label and no values"),
    ("1 0.5 1e39\n", "line 1, value 2: 1e39 is beyond float32's range"),
    # an empty field between commas is a missing value (it was skipped: the line read one value short)
    ("1,0.5,,1.5\n2,1,2,3\n", "line 1, value 2: empty \\(a missing value"),
    (",0.5,1.5\n", "line 1: empty label"),
])
@pytest.mark.filterwarnings("error")  # one line of error, no numpy RuntimeWarning before it
def test_ucr_bad_input(tmp_path, text, match):
    f = tmp_path / "bad.txt"
    f.write_text(text)
    with pytest.raises(ValueError, match=match) as e:
        read_ucr(f)
    assert str(e.value).startswith(str(f))


# -- CSV / TSV -------------------------------------------------------------------------


def test_table_sequence_column_and_numeric_columns(tmp_path):
    f = tmp_path / "s.csv"
    f.write_text("label,name,sequence\nEI,  a1,  ACGTN \nN,a2,ttga\n")
    t = read_table(f, sequence="sequence", id="name", alphabet=DNA)
    assert (t.labels, t.ids, t.sequences, t.values) == (["EI", "N"], ["a1", "a2"], ["ACGTN", "ttga"], None)
    g = tmp_path / "v.tsv"
    g.write_text("x1\tx2\tlabel\n0.5\t1\tup\n-1\t2e3\tdown\n")
    t = read_table(g)
    assert t.columns == ["x1", "x2"] and t.labels == ["up", "down"]
    np.testing.assert_allclose(t.values, [[0.5, 1], [-1, 2000]])


@pytest.mark.parametrize("text, kwargs, match", [
    ("", {}, "empty file"),
    ("a,b\n1,2\n", {}, "line 1: no label column 'label'"),
    ("label,x\nA,1\nB,1,2\n", {}, "line 3: 3 fields, the header has 2"),
    ("label,x\nA,nan\n", {}, "line 2, value 2: nan \\(NaN or infinite"),
    ("label,id,seq\nA,r1,ACGT\nB,r2,AC-T\n", {"sequence": "seq", "id": "id"},
     "line 3 \\(r2\\): character '-' at position 3 is not in the DNA"),
    ("label,seq\n,ACGT\n", {"sequence": "seq"}, "line 2: empty label"),
    ("label,x\n", {}, "a header and no rows"),
])
def test_table_bad_input(tmp_path, text, kwargs, match):
    f = tmp_path / "bad.csv"
    f.write_text(text)
    with pytest.raises(ValueError, match=match):
        read_table(f, alphabet=DNA, **kwargs)


# -- NPZ -------------------------------------------------------------------------------


def test_npz_with_and_without_lengths(tmp_path):
    f = tmp_path / "d.npz"
    X = np.arange(2 * 3 * 2, dtype=np.float64).reshape(2, 3, 2)
    X[1, 2] = np.nan  # padding past the length is not checked, and is zeroed
    np.savez(f, X=X, y=np.array([0, 1]), lengths=np.array([3, 2]))
    X2, y, lengths = read_npz(f)
    assert X2.shape == (2, 3, 2) and X2.dtype == np.float32 and lengths.tolist() == [3, 2]
    assert X2[1, 2].tolist() == [0.0, 0.0] and y.tolist() == [0, 1]
    g = tmp_path / "e.npz"
    np.savez(g, X=np.ones((4, 5)), y=np.array(["a", "b", "a", "b"]))
    X3, y3, l3 = read_npz(g)
    assert X3.shape == (4, 5, 1) and l3.tolist() == [5] * 4 and y3.tolist() == ["a", "b", "a", "b"]


@pytest.mark.parametrize("arrays, match", [
    ({"y": np.zeros(2)}, "no array 'X'"),
    ({"X": np.ones((2, 3, 1)), "y": np.zeros(3)}, "y must be \\(N,\\) = \\(2,\\)"),
    ({"X": np.full((2, 3, 1), np.inf), "y": np.zeros(2)}, "record 0, step 0: NaN or infinite"),
    ({"X": np.ones((2, 3, 1)), "y": np.zeros(2), "lengths": np.array([3, 4])}, "record 1: length 4 is outside 1..3"),
    ({"X": np.ones(3), "y": np.zeros(3)}, "X must be \\(N, T, F\\)"),
    ({"X": np.full((2, 3, 1), 1e39), "y": np.zeros(2)}, "record 0, step 0: a value beyond float32's range"),
    ({"X": np.zeros((2, 3, 0)), "y": np.zeros(2)}, "with N, T, F > 0, got shape \\(2, 3, 0\\)"),
    # records of different lengths as an object array: a valid archive, not a number array
    ({"X": np.array([np.zeros(3), np.zeros(4)], dtype=object), "y": np.zeros(2)},
     "an array of Python objects .* with lengths \\(N,\\)"),
])
@pytest.mark.filterwarnings("error")
def test_npz_bad_input(tmp_path, arrays, match):
    f = tmp_path / "bad.npz"
    np.savez(f, **arrays)
    with pytest.raises(ValueError, match=match) as e:
        read_npz(f)
    assert str(e.value).startswith(str(f))


def test_npz_not_an_archive(tmp_path):
    (tmp_path / "empty.npz").write_bytes(b"")
    with pytest.raises(ValueError, match="empty file"):
        read_npz(tmp_path / "empty.npz")
    (tmp_path / "junk.npz").write_text("hello")
    with pytest.raises(ValueError, match="not a NumPy .npz archive"):
        read_npz(tmp_path / "junk.npz")
    import gzip

    np.savez(tmp_path / "d.npz", X=np.ones((2, 3)), y=np.zeros(2))
    (tmp_path / "d.npz.gz").write_bytes(gzip.compress((tmp_path / "d.npz").read_bytes()))
    with pytest.raises(ValueError, match="a gzip file, not a NumPy .npz archive"):
        read_npz(tmp_path / "d.npz.gz")


def test_a_damaged_checkpoint_is_named_as_such(tmp_path):
    """torch's weights_only text (about its default changing in PyTorch 2.6) is not shown for a damaged file."""
    from biornn import checkpoint

    (tmp_path / "checkpoint.pt").write_text("garbage\n")
    with pytest.raises(ValueError, match="not a loadable checkpoint \\(damaged, or not a biornn training") as e:
        checkpoint.load_state(tmp_path / "checkpoint.pt")
    assert "PyTorch 2.6" not in str(e.value) and "\n" not in str(e.value)


def test_npz_per_step_labels_and_no_labels(tmp_path):
    f = tmp_path / "steps.npz"
    y = np.array([[0, 1, 1], [1, 0, 9]])  # the 9 lies past record 1's length: padding
    np.savez(f, X=np.ones((2, 3, 2)), y=y, lengths=np.array([3, 2]))
    X, y2, lengths = read_npz(f, y="step")
    assert X.shape == (2, 3, 2) and y2.shape == (2, 3) and lengths.tolist() == [3, 2]
    with pytest.raises(ValueError, match=r"y must be \(N,\) = \(2,\)"):
        read_npz(f)  # one label per record is the default
    g = tmp_path / "series.npz"
    np.savez(g, X=np.ones((2, 4)))
    X3, y3, l3 = read_npz(g, y="none")
    assert X3.shape == (2, 4, 1) and y3 is None and l3.tolist() == [4, 4]
    with pytest.raises(ValueError, match="no array 'y'"):
        read_npz(g)
    h = tmp_path / "bad_steps.npz"
    np.savez(h, X=np.ones((2, 3)), y=np.zeros((2, 2)))
    with pytest.raises(ValueError, match=r"per-step labels y must be \(N, T\) = \(2, 3\)"):
        read_npz(h, y="step")
    k = tmp_path / "nan_steps.npz"
    np.savez(k, X=np.ones((1, 3)), y=np.array([[0.0, np.nan, 1.0]]))
    with pytest.raises(ValueError, match="record 0, step 1: y is NaN or infinite"):
        read_npz(k, y="step")


def test_gzip_compressed_files_read_as_their_contents(tmp_path):
    """reads.fa.gz, a.tsv.gz, a UCR .txt.gz: the same records as the plain files (told by the first
    bytes, the format by the extension under .gz); a damaged archive is one line naming the file."""
    import gzip

    from biornn.data.readers import read_fasta, read_text_file
    from biornn.tasks.userdata import file_format

    fasta = ">a label=x\r\nACGT\nAC\n>b label=y\nTTTT\n"
    plain, packed = tmp_path / "r.fa", tmp_path / "r.fa.gz"
    plain.write_text(fasta)
    packed.write_bytes(gzip.compress(fasta.encode()))
    assert file_format(packed) == "fasta"
    assert [(r.id, r.sequence, r.label) for r in read_fasta(packed)] == [(r.id, r.sequence, r.label)
                                                                         for r in read_fasta(plain)]
    ucr = tmp_path / "u.tsv.gz"
    ucr.write_bytes(gzip.compress(b"1\t0.5\t0.25\n2\t0.1\t0.2\n"))
    assert file_format(ucr) == "ucr"
    assert read_text_file(tmp_path / "r.fa.gz") == fasta.replace("\r\n", "\n")
    cut = tmp_path / "cut.fa.gz"
    cut.write_bytes(gzip.compress(fasta.encode() * 50)[:40])
    with pytest.raises(ValueError, match=re.escape(f"{cut}: a damaged gzip file")):
        read_text_file(cut)
    with pytest.raises(ValueError, match=re.escape("cannot tell the format from the extension '(none)' under .gz")):
        file_format(tmp_path / "x.gz")


def test_table_rows_are_named_by_the_line_they_start_on(tmp_path):
    """A quoted field over two lines put every later row's line number one short."""
    from biornn.data.readers import read_table

    p = tmp_path / "t.csv"
    p.write_text('label,sequence\nA,"AC\nGT"\n\nB,ACGT\nC,"AC\nG"\n')
    t = read_table(p, sequence="sequence")
    assert t.lines == [2, 5, 6] and t.sequences == ["ACGT", "ACGT", "ACG"]
    p.write_text('label,sequence\nA,"AC\nGT"\n,ACGT\n')
    with pytest.raises(ValueError, match=r"t\.csv: line 4: empty label"):
        read_table(p, sequence="sequence")
