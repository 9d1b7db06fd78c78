"""Beat detection and EC57 scoring (:mod:`biornn.beats`) on beat trains the tests make."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from biornn.beats import beat_labels, detect_beats, match_beats, score_beats


def test_beat_labels_mark_a_window_around_each_beat_and_clip_at_the_edges():
    y = beat_labels(np.array([0, 10, 19]), 20, 2)
    assert y.tolist() == [1, 1, 1, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1]
    # overlapping windows stay 1, not 2
    assert beat_labels(np.array([5, 6]), 12, 2).tolist() == [0, 0, 0, 1, 1, 1, 1, 1, 1, 0, 0, 0]
    assert beat_labels(np.array([], dtype=np.int64), 5, 3).tolist() == [0] * 5


def test_detect_beats_one_beat_per_run_at_its_centre():
    fs = 100.0
    p = np.zeros(300)
    p[40:51] = 0.9  # run 40..50: centre 45
    p[150:154] = np.array([0.6, 0.95, 0.7, 0.55])  # centre 151
    p[250] = 0.4  # below the threshold
    found, peak = detect_beats(p, fs)
    assert found.tolist() == [45, 151]
    np.testing.assert_allclose(peak, [0.9, 0.95])
    assert detect_beats(p, fs, threshold=0.3)[0].tolist() == [45, 151, 250]
    assert detect_beats(p, fs, min_width=5)[0].tolist() == [45]
    assert detect_beats(np.zeros(10), fs)[0].tolist() == []
    # a run that reaches the last sample
    q = np.zeros(10)
    q[7:] = 1.0
    assert detect_beats(q, fs)[0].tolist() == [8]


def test_the_refractory_period_keeps_the_stronger_of_two_close_detections():
    fs = 100.0
    p = np.zeros(200)
    p[50], p[60], p[120] = 0.7, 0.9, 0.8  # 50 and 60 are 100 ms apart; 120 is 600 ms after 60
    assert detect_beats(p, fs, refractory_s=0.2)[0].tolist() == [60, 120]
    assert detect_beats(p, fs, refractory_s=0.05)[0].tolist() == [50, 60, 120]
    # a chain of candidates each 150 ms apart: keeping the strongest drops its neighbours only
    c = np.zeros(100)
    c[[10, 25, 40]] = [0.6, 0.9, 0.6]
    assert detect_beats(c, fs, refractory_s=0.2)[0].tolist() == [25]
    # equal peaks within the refractory period: the earlier one is kept, as documented
    e = np.zeros(100)
    e[[30, 40]] = 0.8
    assert detect_beats(e, fs, refractory_s=0.2)[0].tolist() == [30]


def test_match_beats_pairs_nearest_first_and_each_beat_once():
    ref = np.array([100, 200, 300])
    # 195 and 205 both lie near 200: only one can take it; 205 is left over
    pairs = match_beats(ref, np.array([195, 205, 310]), 20)
    assert pairs.tolist() == [[1, 0], [2, 2]]
    # the detection at 150 is 50 from both 100 and 200 -- the nearer pair (198, 200) wins 200
    assert match_beats(ref, np.array([150, 198]), 50).tolist() == [[0, 0], [1, 1]]
    # the tolerance is inclusive
    assert len(match_beats(ref, np.array([120]), 20)) == 1 and len(match_beats(ref, np.array([121]), 20)) == 0
    assert match_beats(np.array([], dtype=np.int64), np.array([5]), 10).shape == (0, 2)


def test_match_beats_matches_as_many_pairs_as_there_can_be():
    """Nearest-first alone matched 1040 to 1000's neighbour 1080 and left 950 and 1000 apart (both within
    54 samples of each other): TP 1, FN 1, FP 1 for two beats each detected (a review's case)."""
    from scipy.optimize import linear_sum_assignment

    assert match_beats(np.array([1000, 1080]), np.array([950, 1040]), 54).tolist() == [[0, 0], [1, 1]]
    s = score_beats(np.array([1000, 1080]), np.array([950, 1040]), fs=360.0)
    assert (s["tp"], s["fn"], s["fp"]) == (2, 0, 0)
    # only that group is matched in time order: a beat far from it keeps its nearest detection (5001, not
    # 4995), and the mean offset is that of the nearest pairs there (it was 118 ms for this when the whole
    # record went to time order)
    assert match_beats(np.array([1000, 1080, 5000]), np.array([950, 1040, 4995, 5001]), 54).tolist() == \
        [[0, 0], [1, 1], [2, 3]]
    far = score_beats(np.array([5000, 9000]), np.array([4960, 5001, 8960, 9001]), fs=360.0)
    both = score_beats(np.array([1000, 1080, 5000, 9000]), np.array([950, 1040, 4960, 5001, 8960, 9001]), fs=360.0)
    assert both["mean_abs_offset_ms"] == pytest.approx((50 + 40 + 1 + 1) / 4 / 360 * 1000, abs=1e-3)
    assert far["mean_abs_offset_ms"] == pytest.approx(1 / 360 * 1000, abs=1e-3)
    rng = np.random.default_rng(0)
    for _ in range(300):
        ref = np.unique(rng.integers(0, 400, size=rng.integers(0, 12)))
        det = np.unique(rng.integers(0, 400, size=rng.integers(0, 12)))
        tol = int(rng.integers(0, 60))
        pairs = match_beats(ref, det, tol)
        assert len(set(pairs[:, 0])) == len(set(pairs[:, 1])) == len(pairs)
        assert all(abs(ref[r] - det[d]) <= tol for r, d in pairs)
        if len(ref) and len(det):  # the most pairs there can be: an assignment maximising matched pairs
            reach = np.abs(ref[:, None] - det[None, :]) <= tol
            rows, cols = linear_sum_assignment(reach, maximize=True)
            assert len(pairs) == int(reach[rows, cols].sum()), (ref, det, tol)
        else:
            assert len(pairs) == 0


def test_score_beats_the_150_ms_window_at_360_hz():
    fs = 360.0  # 150 ms = 54 samples
    ref = np.arange(1000, 100_000, 300)
    assert score_beats(ref, ref + 54, fs)["tp"] == len(ref)
    s = score_beats(ref, ref + 55, fs)
    assert (s["tp"], s["fn"], s["fp"]) == (0, len(ref), len(ref))
    assert s["sensitivity"] == 0.0 and s["positive_predictivity"] == 0.0 and s["f1"] == 0.0


def test_score_beats_counts_misses_and_false_detections():
    rng = np.random.default_rng(0)
    fs = 250.0
    ref = np.cumsum(rng.integers(150, 300, size=400))
    found = ref + rng.integers(-20, 21, size=len(ref))  # within 80 ms: all found
    found = np.delete(found, [3, 50, 51])  # three misses
    found = np.sort(np.concatenate([found, ref[[10, 200]] + 100]))  # two extra detections, 400 ms after a beat
    s = score_beats(ref, found, fs)
    assert (s["tp"], s["fn"], s["fp"]) == (397, 3, 2)
    assert s["sensitivity"] == pytest.approx(397 / 400) and s["positive_predictivity"] == pytest.approx(397 / 399)
    assert s["f1"] == pytest.approx(2 * 397 / (2 * 397 + 5))
    assert s["n_reference"] == 400 and s["n_detected"] == 399 and s["window_ms"] == 150.0
    assert 0 < s["mean_abs_offset_ms"] <= 80.0


def test_score_beats_on_an_excerpt_and_when_nothing_is_there():
    ref = np.array([100, 400, 700, 1000])
    s = score_beats(ref, np.array([405, 1000, 1300]), fs=100.0, start=300, end=1200)
    assert (s["tp"], s["fn"], s["fp"], s["n_reference"]) == (2, 1, 0, 3)
    empty = score_beats(np.array([], dtype=np.int64), np.array([], dtype=np.int64), fs=100.0)
    assert empty["sensitivity"] == empty["positive_predictivity"] == empty["f1"] == 1.0
    none_found = score_beats(ref, np.array([], dtype=np.int64), fs=100.0)
    assert none_found["sensitivity"] == 0.0 and none_found["positive_predictivity"] == 1.0
    assert none_found["f1"] == 0.0


def test_detect_then_score_recovers_a_synthetic_beat_train():
    fs = 360.0
    rng = np.random.default_rng(1)
    beats = np.cumsum(rng.integers(250, 400, size=200))
    n = int(beats[-1] + 400)
    # a probability that is a smooth bump around each beat, plus noise well below the threshold
    prob = np.clip(beat_labels(beats, n, 15) * 0.9 + rng.uniform(0, 0.3, n), 0, 1)
    found, _ = detect_beats(prob, fs)
    s = score_beats(beats, found, fs)
    assert s["sensitivity"] == 1.0 and s["positive_predictivity"] == 1.0
    assert s["mean_abs_offset_ms"] < 15 / fs * 1000


@settings(max_examples=60, deadline=None)
@given(gaps=st.lists(st.integers(120, 400), min_size=1, max_size=40),
       jitter=st.lists(st.integers(-54, 54), min_size=40, max_size=40),
       keep=st.lists(st.booleans(), min_size=40, max_size=40),
       extra=st.lists(st.integers(0, 20_000), max_size=10))
def test_score_beats_counts_add_up(gaps, jitter, keep, extra):
    """TP + FN is the number of reference beats and TP + FP the number of detections, always; beats at
    least 2 windows apart, each detected within the window or not at all, are found exactly where kept."""
    fs = 360.0  # window: 54 samples
    ref = np.cumsum(gaps)
    kept = np.array(keep[: len(ref)])
    found = (ref + np.array(jitter[: len(ref)]))[kept]
    s = score_beats(ref, found, fs)
    assert s["tp"] == kept.sum() and s["fn"] == len(ref) - kept.sum() and s["fp"] == 0
    both = score_beats(ref, np.concatenate([found, extra]), fs)
    assert both["tp"] + both["fn"] == len(ref) and both["tp"] + both["fp"] == len(found) + len(extra)
    assert both["tp"] >= s["tp"]
    assert 0.0 <= both["sensitivity"] <= 1.0 and 0.0 <= both["positive_predictivity"] <= 1.0
