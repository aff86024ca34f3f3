"""Tests of monai_prichexy.metrics on hand-made cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ignite.engine import Engine
from sklearn.metrics import roc_auc_score

from monai_prichexy.metrics import (
    CXR14_LABELS,
    MeanAUC,
    SummaryRow,
    VerificationAUC,
    binary_any_finding_auc,
    mean_auc,
    mean_std,
    patient_pair_weights,
    privacy_closure,
    retrieval_metrics,
    utility_retention,
    verification_auc,
)


# --------------------------------------------------------------------------- verification
class TestVerificationAUC:
    def test_perfect_inverted_random(self):
        y = np.array([0, 0, 1, 1, 0, 1])
        assert verification_auc(y * 2.0 - 1.0, y) == 1.0
        assert verification_auc(1.0 - y, y) == 0.0
        rng = np.random.default_rng(0)
        y = rng.integers(0, 2, 20000)
        assert abs(verification_auc(rng.random(20000), y) - 0.5) < 0.02

    def test_torch_and_column_input(self):
        s = torch.tensor([[0.1], [0.9], [0.4], [0.8]])
        y = torch.tensor([0, 1, 1, 0])
        assert verification_auc(s, y) == pytest.approx(roc_auc_score(y.numpy(), s.numpy()[:, 0]))

    def _dominated_case(self):
        # patient 0 owns 50 positive pairs, all scored below every negative; patients 1..5
        # own one positive each, scored above every negative; every patient has 2 negatives.
        scores, labels, groups = [], [], []
        for p in range(6):
            n_pos = 50 if p == 0 else 1
            scores += [0.4 if p == 0 else 0.6] * n_pos + [0.5, 0.5]
            labels += [1] * n_pos + [0, 0]
            groups += [p] * (n_pos + 2)
        return np.array(scores), np.array(labels), np.array(groups)

    def test_patient_weighting_changes_dominated_case(self):
        s, y, g = self._dominated_case()
        assert verification_auc(s, y, g, weighting="pair") == pytest.approx(5 / 55)
        assert verification_auc(s, y, g, weighting="patient") == pytest.approx(5 / 6)

    def test_patient_weights_sum_per_patient(self):
        s, y, g = self._dominated_case()
        w = patient_pair_weights(y, g)
        for p in range(6):
            assert w[(g == p) & (y == 1)].sum() == pytest.approx(1.0)
            assert w[(g == p) & (y == 0)].sum() == pytest.approx(1.0)

    def test_patient_weighting_equals_pair_when_balanced(self):
        rng = np.random.default_rng(1)
        y = np.tile([1, 1, 0, 0], 10)
        g = np.repeat(np.arange(10), 4)
        s = rng.random(40)
        assert verification_auc(s, y, g, "patient") == pytest.approx(verification_auc(s, y))

    def test_string_groups(self):
        s, y, g = self._dominated_case()
        assert verification_auc(s, y, np.array([f"p{i:08d}" for i in g]), "patient") == pytest.approx(5 / 6)

    @pytest.mark.parametrize(
        "args, kwargs",
        [
            ((np.zeros((4, 2)), [0, 1, 0, 1]), {}),
            ((np.zeros(4), [0, 1, 0]), {}),
            ((np.zeros(4), [0, 1, 2, 1]), {}),
            ((np.zeros(4), [1, 1, 1, 1]), {}),
            ((np.zeros(4), [0, 1, 0, 1]), {"weighting": "patient"}),
            ((np.zeros(4), [0, 1, 0, 1]), {"weighting": "image"}),
            ((np.array([0, np.nan, 1, 1]), [0, 1, 0, 1]), {}),
        ],
    )
    def test_errors(self, args, kwargs):
        with pytest.raises(ValueError):
            verification_auc(*args, **kwargs)


# --------------------------------------------------------------------------- classification
def _multilabel(n=300, c=5, seed=0):
    rng = np.random.default_rng(seed)
    t = (rng.random((n, c)) < 0.3).astype(int)
    p = np.clip(0.35 * t + 0.65 * rng.random((n, c)), 0, 1)
    return p, t


def _hand_auc(score: np.ndarray, y: np.ndarray) -> float:
    """Mann-Whitney: the share of (positive, negative) pairs ranked right, ties counting one half."""
    pos, neg = score[y == 1], score[y == 0]
    wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(wins) / (len(pos) * len(neg))


def _hand_quantile(values: np.ndarray, q: float) -> float:
    """Linear interpolation between order statistics at position q * (n - 1) (numpy's default method)."""
    v = np.sort(values)
    pos = q * (len(v) - 1)
    lo = int(np.floor(pos))
    hi = min(lo + 1, len(v) - 1)
    return float(v[lo] + (pos - lo) * (v[hi] - v[lo]))


def _replay(n: int, n_bootstrap: int, seed: int, statistic) -> np.ndarray:
    """The documented bootstrap, replayed: ``default_rng(seed)``, one ``integers(0, n, n)`` draw
    of image indices (with replacement) per resample; NaN where the statistic is undefined."""
    rng = np.random.default_rng(seed)
    return np.array([statistic(rng.integers(0, n, size=n)) for _ in range(n_bootstrap)])


class TestMeanAUC:
    def test_bootstrap_replayed_by_hand(self):
        """Resamples, their per-resample mean AUC (classes valid in that resample only), the dropped
        resamples and the percentile interval, all recomputed with the same generator."""
        p, t = _multilabel(n=40, c=4, seed=5)
        t[:, 3] = 0
        t[[3, 17], 3] = 1  # two positives: absent from many resamples
        p = np.round(p, 1)  # ties
        res = mean_auc(p, t, label_names=list("abcd"), n_bootstrap=300, seed=11, ci=0.9)

        def mean_of_valid(idx):
            tb, pb = t[idx], p[idx]
            aucs = [_hand_auc(pb[:, c], tb[:, c]) for c in range(4) if 0 < tb[:, c].sum() < len(idx)]
            return np.mean(aucs) if aucs else np.nan

        means = _replay(40, 300, 11, mean_of_valid)
        np.testing.assert_allclose(res.bootstrap_means, means, rtol=0, atol=1e-12)
        assert res.mean == pytest.approx(np.mean([_hand_auc(p[:, c], t[:, c]) for c in range(4)]), abs=1e-12)
        valid = means[np.isfinite(means)]
        assert res.n_bootstrap_valid == len(valid) == 300  # classes a-c are always valid
        assert res.ci == pytest.approx((_hand_quantile(valid, 0.05), _hand_quantile(valid, 0.95)), abs=1e-12)

    def test_bootstrap_drops_resamples_without_a_valid_class(self):
        y = np.zeros((12, 1), int)
        y[5, 0] = 1  # one positive: a resample holds it with probability 1 - (11/12)^12 = 0.65
        score = np.linspace(0, 1, 12)[:, None]
        res = mean_auc(score, y, n_bootstrap=100, seed=2)
        means = _replay(12, 100, 2, lambda idx: _hand_auc(score[idx, 0], y[idx, 0]) if 0 < y[idx, 0].sum() < 12 else np.nan)
        np.testing.assert_array_equal(np.isnan(res.bootstrap_means), np.isnan(means))
        assert res.n_bootstrap_valid == int(np.isfinite(means).sum()) and 40 < res.n_bootstrap_valid < 90
        valid = means[np.isfinite(means)]
        assert res.ci == pytest.approx((_hand_quantile(valid, 0.025), _hand_quantile(valid, 0.975)), abs=1e-12)

    def test_perfect_and_per_class(self):
        p, t = _multilabel()
        res = mean_auc(t.astype(float), t, n_bootstrap=0)
        assert res.mean == 1.0 and res.skipped == [] and res.ci is None
        res = mean_auc(p, t, label_names=list("abcde"), n_bootstrap=0)
        expected = [roc_auc_score(t[:, j], p[:, j]) for j in range(5)]
        assert list(res.per_class) == list("abcde")
        assert list(res.per_class.values()) == pytest.approx(expected)
        assert res.mean == pytest.approx(np.mean(expected))

    def test_absent_classes_reported_not_averaged(self):
        p, t = _multilabel()
        t[:, 1] = 0  # no positive
        t[:, 3] = 1  # no negative
        res = mean_auc(p, t, label_names=list("abcde"), n_bootstrap=0)
        assert res.skipped == ["b", "d"]
        assert set(res.per_class) == {"a", "c", "e"}
        assert res.mean == pytest.approx(np.mean([roc_auc_score(t[:, j], p[:, j]) for j in (0, 2, 4)]))

    def test_default_names(self):
        rng = np.random.default_rng(0)
        t = (rng.random((60, 14)) < 0.5).astype(int)
        assert list(mean_auc(rng.random((60, 14)), t, n_bootstrap=0).per_class) == list(CXR14_LABELS)
        assert list(mean_auc(rng.random((60, 3)), t[:, :3], n_bootstrap=0).per_class) == [
            "class_0",
            "class_1",
            "class_2",
        ]

    def test_bootstrap_ci(self):
        p, t = _multilabel()
        t[:5, 4] = 0
        t[5, 4] = 1
        t[6:, 4] = 0  # one positive: often absent from a resample
        a = mean_auc(torch.as_tensor(p), torch.as_tensor(t), n_bootstrap=200, seed=3)
        b = mean_auc(p, t, n_bootstrap=200, seed=3)
        c = mean_auc(p, t, n_bootstrap=200, seed=4)
        assert a.ci[0] <= a.mean <= a.ci[1]
        assert a.ci == b.ci
        assert c.ci != a.ci
        assert a.n_bootstrap == 200 and a.n_bootstrap_valid == 200
        np.testing.assert_array_equal(a.bootstrap_means, b.bootstrap_means)
        wide = mean_auc(p, t, n_bootstrap=200, seed=3, ci=0.99)
        assert wide.ci[0] <= a.ci[0] and wide.ci[1] >= a.ci[1]

    def test_errors(self):
        p, t = _multilabel()
        with pytest.raises(ValueError):
            mean_auc(p, t[:, :4])
        with pytest.raises(ValueError):
            mean_auc(p, t * 2)
        with pytest.raises(ValueError):
            mean_auc(p, t, label_names=["a"])
        with pytest.raises(ValueError):
            mean_auc(p, t, ci=95)
        with pytest.warns(UserWarning):
            assert np.isnan(mean_auc(p, np.zeros_like(t)).mean)


class TestAnyFinding:
    def test_values(self):
        p, t = _multilabel()
        t[:50] = 0
        res = binary_any_finding_auc(p, t, n_bootstrap=0)
        y = t.max(1)
        assert res.auc == pytest.approx(roc_auc_score(y, p.max(1)))
        assert res.n_positive == y.sum() and res.n_negative == (1 - y).sum()
        res = binary_any_finding_auc(p, t, reduction="noisy_or", n_bootstrap=0)
        assert res.auc == pytest.approx(roc_auc_score(y, 1 - np.prod(1 - p, 1)))
        assert binary_any_finding_auc(t.astype(float), t, n_bootstrap=0).auc == 1.0

    def test_bootstrap(self):
        p, t = _multilabel()
        t[:50] = 0
        a = binary_any_finding_auc(p, t, n_bootstrap=300, seed=1)
        b = binary_any_finding_auc(p, t, n_bootstrap=300, seed=1)
        assert a.ci == b.ci and a.ci[0] <= a.auc <= a.ci[1]

    def test_bootstrap_replayed_by_hand(self):
        p, t = _multilabel(n=30, c=3, seed=2)
        t[:18] = 0  # 18 'No Finding' images
        score, y = p.max(1), t.max(1)
        res = binary_any_finding_auc(p, t, n_bootstrap=250, seed=7)
        aucs = _replay(30, 250, 7, lambda idx: _hand_auc(score[idx], y[idx]) if 0 < y[idx].sum() < 30 else np.nan)
        np.testing.assert_allclose(res.bootstrap_aucs, aucs, rtol=0, atol=1e-12)
        valid = aucs[np.isfinite(aucs)]
        assert res.auc == pytest.approx(_hand_auc(score, y), abs=1e-12)
        assert res.n_bootstrap_valid == len(valid)
        assert res.ci == pytest.approx((_hand_quantile(valid, 0.025), _hand_quantile(valid, 0.975)), abs=1e-12)

    def test_errors(self):
        p, t = _multilabel()
        with pytest.raises(ValueError):
            binary_any_finding_auc(p, np.ones_like(t))
        with pytest.raises(ValueError):
            binary_any_finding_auc(p * 5 - 2, t, reduction="noisy_or")
        with pytest.raises(ValueError):
            binary_any_finding_auc(p, t, reduction="mean")


# --------------------------------------------------------------------------- retrieval
class TestRetrieval:
    def test_embeddings_equal_ids(self):
        ids = np.array([3, 1, 3, 2, 1, 1, 2, 5])
        res = retrieval_metrics(ids.astype(float)[:, None], ids)  # gallery = queries, self excluded
        assert res.map_at_r == 1.0 and res.precision_at_1 == 1.0
        assert res.n_queries == 7 and res.n_queries_without_relevant == 1  # patient 5 has one image
        # anonymized queries vs real gallery in the same order, as torch tensors
        q = torch.as_tensor(ids, dtype=torch.float32)[:, None] + 0.01
        res = retrieval_metrics(q, ids, torch.as_tensor(ids, dtype=torch.float32)[:, None], ids)
        assert (res.map_at_r, res.precision_at_1, res.n_queries) == (1.0, 1.0, 7)

    def test_hand_computed(self):
        gallery_ids = np.array(["A", "A", "B", "B", "A"])
        scores = np.array(
            [
                [0.9, 0.1, 0.8, 0.3, 0.5],  # A: ranks A B A B A, R=3 -> (1 + 2/3) / 3
                [0.2, 0.4, 0.1, 0.3, 0.9],  # B: ranks A A B A B, R=2 -> 0
                [0.1, 0.2, 0.3, 0.4, 0.5],  # C: no relevant item
            ]
        )
        res = retrieval_metrics(None, ["A", "B", "C"], None, gallery_ids, scores=scores, exclude_self=False)
        assert res.map_at_r == pytest.approx((5 / 9 + 0) / 2)
        assert res.precision_at_1 == 0.5
        assert res.n_queries == 2 and res.n_queries_without_relevant == 1
        np.testing.assert_allclose(res.per_query_map_at_r, [5 / 9, 0, np.nan])
        # the first query is the anonymized copy of gallery image 0: exclude it
        # ranks B(.8) A(.5) B A, R=2 -> (1/2)/2
        res = retrieval_metrics(
            None, ["A"], None, gallery_ids, scores=scores[:1], query_source_index=[0]
        )
        assert res.map_at_r == pytest.approx(0.25) and res.precision_at_1 == 0.0
        exclude = np.zeros((1, 5), bool)
        exclude[0, 0] = True
        res2 = retrieval_metrics(None, ["A"], None, gallery_ids, scores=scores[:1], exclude_self=False, exclude=exclude)
        assert res2.map_at_r == res.map_at_r

    def test_euclidean_matches_scores(self):
        rng = np.random.default_rng(0)
        q, g = rng.normal(size=(20, 4)), rng.normal(size=(30, 4))
        qi, gi = rng.integers(0, 5, 20), rng.integers(0, 5, 30)
        d = -np.linalg.norm(q[:, None] - g[None], axis=-1)
        a = retrieval_metrics(q, qi, g, gi, exclude_self=False, chunk_size=7)
        b = retrieval_metrics(None, qi, None, gi, scores=d, exclude_self=False)
        assert a.map_at_r == pytest.approx(b.map_at_r) and a.precision_at_1 == b.precision_at_1
        c = retrieval_metrics(q, qi, g, gi, exclude_self=False, similarity="cosine")
        assert 0.0 <= c.map_at_r <= 1.0

    def test_ties_are_pessimistic(self):
        ids = np.array([0, 0, 1, 1, 2, 2])
        res = retrieval_metrics(np.zeros((6, 3)), ids)
        assert res.map_at_r == 0.0 and res.precision_at_1 == 0.0

    def test_errors(self):
        ids = np.array([0, 0, 1])
        with pytest.raises(ValueError):  # cannot guess the source of each query
            retrieval_metrics(np.zeros((3, 2)), ids, np.zeros((4, 2)), [0, 0, 1, 1])
        with pytest.raises(ValueError):  # ids differ position-wise
            retrieval_metrics(np.zeros((3, 2)), ids, np.zeros((3, 2)), [1, 0, 0])
        with pytest.raises(ValueError):
            retrieval_metrics(np.zeros((3, 2)), ids, np.zeros((3, 5)), ids)
        with pytest.raises(ValueError):
            retrieval_metrics(None, ids, scores=np.zeros((3, 2)))
        with pytest.raises(ValueError):
            retrieval_metrics(np.zeros((3, 2)), ids, scores=np.zeros((3, 3)))
        with pytest.raises(ValueError):
            retrieval_metrics(np.zeros((3, 2)), [0, 1, 2])  # nobody has a second image
        with pytest.raises(ValueError):
            retrieval_metrics(np.zeros((3, 2)), ids, query_source_index=[1, 0, 0])  # wrong patient


# --------------------------------------------------------------------------- summary
class TestSummary:
    def test_paper_numbers(self):
        assert privacy_closure(81.8, 57.7) == pytest.approx(0.7578616, abs=1e-6)
        assert utility_retention(80.5, 76.2) == pytest.approx(0.8590164, abs=1e-6)
        assert privacy_closure(0.818, 0.577, percent=False) == pytest.approx(0.7578616, abs=1e-6)
        assert utility_retention(0.805, 0.762, percent=False) == pytest.approx(0.8590164, abs=1e-6)

    def test_errors_and_warnings(self):
        with pytest.raises(ValueError):
            privacy_closure(81.8, 57.7, percent=False)
        with pytest.raises(ValueError):
            privacy_closure(120.0, 57.7)
        with pytest.raises(ValueError):
            utility_retention(44.9, -3.0)  # out of range still raises, below chance or not
        with pytest.warns(UserWarning) as record:  # fractions given as percent: also "below chance" (0.818 <= 50)
            assert np.isnan(privacy_closure(0.818, 0.577))
        assert any("percent=False" in str(w.message) for w in record)
        assert any("at or below chance" in str(w.message) for w in record)

    @pytest.mark.parametrize(
        "fn, real, anon, percent",
        [
            (utility_retention, 44.9, 53.1, True),  # docs/results/cpu64 any-finding: was (53.1-50)/(44.9-50) = -0.61
            (utility_retention, 50.0, 60.0, True),  # at chance (was a ValueError)
            (utility_retention, 0.449, 0.563, False),
            (privacy_closure, 48.0, 30.0, True),
            (privacy_closure, 0.5, 0.7, False),
        ],
    )
    def test_undefined_at_or_below_chance_is_nan_with_the_reason(self, fn, real, anon, percent):
        with pytest.warns(UserWarning, match="undefined \\(NaN\\): real-image AUC at or below chance") as record:
            value = fn(real, anon, percent=percent)
        assert np.isnan(value)
        assert f"{real:g}" in str(record[0].message)
        above = 50.5 if percent else 0.505  # just above chance the ratio is defined again
        assert fn(above, above, percent=percent) in (0.0, 1.0)

    def test_mean_std(self):
        assert mean_std([1.0, 2.0, 3.0]) == (2.0, 1.0)
        assert mean_std(torch.tensor([1.0, 3.0]), ddof=0) == (2.0, 1.0)
        m, s = mean_std([4.0])
        assert m == 4.0 and np.isnan(s)
        with pytest.raises(ValueError):
            mean_std([])
        with pytest.raises(ValueError):
            mean_std(np.zeros((2, 2)))

    def test_row(self):
        row = SummaryRow("mu=0.01", 57.7, 4.0, 76.2, (75.8, 76.6), closure=0.758, retention=0.859)
        line = row.to_markdown()
        assert line.startswith("| mu=0.01 | 57.7 +- 4.0 | 76.2 [75.8, 76.6] | - | 0.76 | 0.86 |")
        assert SummaryRow.header().count("|") == 2 * line.count("|")
        assert SummaryRow.note([row]) == ""
        undefined = SummaryRow("DP-Pix b=1", 52.5, None, 43.8, closure=0.92, retention=float("nan"))
        assert undefined.to_markdown().endswith("| 0.92 | n/a |")
        assert "real-image AUC at or below chance" in SummaryRow.note([row, undefined])


# --------------------------------------------------------------------------- ignite
def _run(batches, metrics):
    engine = Engine(lambda e, batch: batch)
    for name, metric in metrics.items():
        metric.attach(engine, name)
    return engine.run(batches).metrics


class TestIgnite:
    def test_verification_auc(self):
        rng = np.random.default_rng(0)
        y = rng.integers(0, 2, 90)
        s = rng.random(90) + 0.3 * y
        g = rng.integers(0, 7, 90)
        batches = [
            (torch.as_tensor(s[i : i + 32]).float(), torch.as_tensor(y[i : i + 32]), torch.as_tensor(g[i : i + 32]))
            for i in range(0, 90, 32)
        ]
        out = _run(
            batches,
            {
                "pair": VerificationAUC(output_transform=lambda b: b[:2]),
                "patient": VerificationAUC(weighting="patient"),
            },
        )
        s32 = s.astype(np.float32)
        assert out["pair"] == pytest.approx(verification_auc(s32, y))
        assert out["patient"] == pytest.approx(verification_auc(s32, y, g, "patient"))
        # dict output with string patient ids
        dict_batches = [{"y_pred": b[0], "y": b[1], "groups": [f"p{int(v)}" for v in b[2]]} for b in batches]
        out = _run(dict_batches, {"patient": VerificationAUC(weighting="patient")})
        assert out["patient"] == pytest.approx(verification_auc(s32, y, g, "patient"))

    def test_mean_auc(self):
        p, t = _multilabel(n=96)
        t[:, 2] = 0
        batches = [(torch.as_tensor(p[i : i + 32]).float(), torch.as_tensor(t[i : i + 32])) for i in range(0, 96, 32)]
        out = _run(batches, {"mean_auc": MeanAUC()})
        assert out["mean_auc"] == pytest.approx(mean_auc(p.astype(np.float32), t, n_bootstrap=0).mean)
