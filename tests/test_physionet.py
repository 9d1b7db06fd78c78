"""The WFDB readers (:mod:`biornn.data.physionet`): records and beat annotations written by the test with
``wfdb.wrsamp`` / ``wfdb.wrann``, the real MIT-BIH record 100, and every bad input."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("wfdb")
import wfdb  # noqa: E402

from biornn.data.physionet import BEAT_CODES, read_beats, read_record, record_path  # noqa: E402

REAL = Path(os.environ.get("BIORNN_DATA", "/work/shared/data")) / "ecg" / "mitdb" / "100"
FS = 250


def _write(root: Path, name: str = "rec", n: int = 1000, fmt: str = "16", nan_at: int | None = None) -> Path:
    """A two-lead record of ``n`` samples: a ramp on lead 0, a sine on lead 1."""
    t = np.arange(n) / FS
    x = np.stack([np.linspace(-1.0, 1.0, n), 0.5 * np.sin(2 * np.pi * 1.3 * t)], axis=1)
    if nan_at is not None:
        x[nan_at, 1] = np.nan
    wfdb.wrsamp(name, fs=FS, units=["mV", "mV"], sig_name=["MLII", "V5"], p_signal=x, fmt=[fmt, fmt],
                write_dir=str(root))
    return root / name


def test_a_written_record_reads_back(tmp_path):
    for fmt in ("16", "212"):
        base = _write(tmp_path, f"r{fmt}", n=1001, fmt=fmt)
        rec = read_record(base)
        assert rec.signal.shape == (1001, 2) and rec.signal.dtype == np.float64
        assert rec.fs == FS and rec.leads == ["MLII", "V5"] and rec.units == ["mV", "mV"]
        # 16-bit and 12-bit (212) quantisation of a signal within [-1, 1]
        np.testing.assert_allclose(rec.signal[:, 0], np.linspace(-1.0, 1.0, 1001), atol=2e-3)
        assert rec.name == str(base)
    # the record's name with any of its extensions, or none, is the same record
    assert read_record(str(base) + ".hea").signal.shape == (1001, 2)
    assert record_path(tmp_path / "r16.dat") == tmp_path / "r16"
    assert read_record(tmp_path / "r16", channels=[1]).leads == ["V5"]


def test_beats_are_the_beat_annotations_only(tmp_path):
    base = _write(tmp_path)
    wfdb.wrann("rec", "atr", np.array([0, 100, 350, 600, 800]), symbol=["+", "N", "V", "~", "A"],
               write_dir=str(tmp_path))
    beats = read_beats(base, n_samples=1000)
    assert beats.sample.tolist() == [100, 350, 800]
    assert beats.symbol == ["N", "V", "A"]
    assert beats.skipped == {"+": 1, "~": 1}
    assert {"N", "V", "A", "L", "R", "/", "f", "Q"} <= BEAT_CODES and not {"+", "~", "|", '"'} & BEAT_CODES


@pytest.mark.skipif(not REAL.with_suffix(".hea").is_file(), reason="no data directory with ecg/mitdb/100")
def test_the_real_record_100():
    rec = read_record(REAL)
    assert rec.signal.shape == (650000, 2) and rec.fs == 360.0 and rec.leads == ["MLII", "V5"]
    assert np.isfinite(rec.signal).all() and -5 < rec.signal.min() < rec.signal.max() < 5
    beats = read_beats(REAL, n_samples=len(rec.signal))
    symbols, counts = np.unique(beats.symbol, return_counts=True)
    assert dict(zip(symbols.tolist(), counts.tolist())) == {"N": 2239, "A": 33, "V": 1}
    assert beats.skipped == {"+": 1}
    assert np.all(np.diff(beats.sample) > 0)


# -- bad input: one line naming the file ------------------------------------------------


def test_missing_files(tmp_path):
    with pytest.raises(ValueError, match=r"nope\.hea: no such WFDB header"):
        read_record(tmp_path / "nope")
    base = _write(tmp_path)
    (tmp_path / "rec.dat").unlink()
    with pytest.raises(ValueError, match=r"rec\.dat: no such signal file \(named by rec\.hea\)"):
        read_record(base)
    with pytest.raises(ValueError, match=r"rec\.atr: no such annotation file"):
        read_beats(base)
    for empty in ("", "  "):  # e.g. biornn predict QRS-RUN ""
        with pytest.raises(ValueError, match="an empty record path"):
            read_record(empty)


@pytest.mark.parametrize("edit, match", [
    (lambda h: h.replace("rec 2 250 1000", "rec 2 250 1500"), r"3000 bytes \(4000 bytes\)|header does not match"),
    (lambda h: h.replace("rec 2 250 1000", "rec 2 250 700"), "header does not match its signal file"),
])
def test_a_header_that_does_not_match_its_signal_file(tmp_path, edit, match):
    base = _write(tmp_path)
    hea = tmp_path / "rec.hea"
    hea.write_text(edit(hea.read_text()))
    with pytest.raises(ValueError, match=match) as e:
        read_record(base)
    assert "rec.dat" in str(e.value) and "\n" not in str(e.value)


def test_a_header_one_frame_off_its_signal_file(tmp_path):
    """One sample more than the file holds is within the size check's padding slack; wfdb then fails to
    decode, and the line says which files disagree rather than only wfdb's own words."""
    base = _write(tmp_path)
    hea = tmp_path / "rec.hea"
    hea.write_text(hea.read_text().replace("rec 2 250 1000", "rec 2 250 1001"))
    with pytest.raises(ValueError, match=r"cannot decode the WFDB record; does rec\.hea match its signal file\?"
                       ) as e:
        read_record(base)
    assert "\n" not in str(e.value)


def test_a_header_with_another_number_of_signals(tmp_path):
    # the header names one signal, but the file holds two interleaved: twice the bytes it should have
    base = _write(tmp_path)
    hea = tmp_path / "rec.hea"
    lines = hea.read_text().splitlines()
    hea.write_text("\n".join([lines[0].replace("rec 2 ", "rec 1 "), lines[1]]) + "\n")
    with pytest.raises(ValueError, match=r"rec\.dat: 4000 bytes, but rec\.hea says 1 signal\(s\)"):
        read_record(base)


def test_a_truncated_signal_file(tmp_path):
    base = _write(tmp_path, fmt="212")
    dat = tmp_path / "rec.dat"
    dat.write_bytes(dat.read_bytes()[:1000])
    with pytest.raises(ValueError, match=r"rec\.dat: 1000 bytes, but rec\.hea says 2 signal\(s\) of format 212"):
        read_record(base)
    dat.write_bytes(b"")
    with pytest.raises(ValueError, match=r"rec\.dat: empty signal file"):
        read_record(base)


def test_missing_samples_and_bad_annotations(tmp_path):
    base = _write(tmp_path, nan_at=321)
    with pytest.raises(ValueError, match=r"signal 'V5' has 1 missing \(NaN\) or infinite sample\(s\), the first at "
                                         r"sample 321"):
        read_record(base)
    (tmp_path / "rec.atr").write_bytes(b"")
    with pytest.raises(ValueError, match=r"rec\.atr: empty annotation file"):
        read_beats(base)
    (tmp_path / "rec.atr").write_bytes(b"\x00\x01garbage")
    with pytest.raises(ValueError, match=r"rec\.atr: "):
        read_beats(base)
    wfdb.wrann("rec", "atr", np.array([5, 50]), symbol=["+", "~"], write_dir=str(tmp_path))
    with pytest.raises(ValueError, match=r"rec\.atr: no beat annotation"):
        read_beats(base)
    wfdb.wrann("rec", "atr", np.array([5, 5000]), symbol=["N", "N"], write_dir=str(tmp_path))
    with pytest.raises(ValueError, match=r"rec\.atr: a beat at sample 5000 lies outside the record's 1000 samples"):
        read_beats(base, n_samples=1000)


def test_a_malformed_header(tmp_path):
    (tmp_path / "bad.hea").write_text("this is not a header\n")
    with pytest.raises(ValueError, match=r"bad\.hea: "):
        read_record(tmp_path / "bad")
