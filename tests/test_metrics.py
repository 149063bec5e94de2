"""Tests of ``dali_aug.train._metrics`` against scikit-learn and hand-computed values.

scikit-learn is a test dependency (the ``test`` extra): it is the reference for AP with ties,
per-class and overall precision/recall/F1 and the instance-based (``average="samples"``) scores.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Callable

import numpy as np
import pytest
import torch
from sklearn.metrics import (
    average_precision_score,
    jaccard_score,
    precision_recall_fscore_support,
)

from dali_aug.train._metrics import accuracy, average_precision, multilabel_metrics


def _sklearn_ap(scores: torch.Tensor, targets: torch.Tensor) -> list[float]:
    s, t = scores.double().numpy(), targets.numpy()
    return [float(average_precision_score(t[:, k], s[:, k])) for k in range(t.shape[1])]


def _random_targets(g: torch.Generator, n: int, c: int, p: float = 0.3) -> torch.Tensor:
    """0/1 targets [n, c] where every label has a positive and a negative."""
    t = (torch.rand((n, c), generator=g) < p).long()
    t[0], t[1] = 1, 0
    return t


# -- accuracy --------------------------------------------------------------------------------
def test_accuracy() -> None:
    logits = torch.tensor([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [5.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    assert accuracy(logits, torch.tensor([0, 0, 0, 2])) == pytest.approx(0.75)
    assert accuracy(logits, torch.tensor([0, 1, 0, 2])) == 1.0
    assert accuracy(logits, torch.tensor([1, 0, 1, 0])) == 0.0
    assert math.isnan(accuracy(logits[:0], torch.tensor([], dtype=torch.int64)))


@pytest.mark.parametrize(
    "logits, labels",
    [
        (torch.zeros(4, 3), torch.zeros(3, dtype=torch.int64)),  # N differs
        (torch.zeros(4), torch.zeros(4, dtype=torch.int64)),  # logits not [N, C]
        (torch.zeros(4, 3), torch.zeros(4, 3)),  # one-hot labels
    ],
)
def test_accuracy_rejects_bad_shapes(logits: torch.Tensor, labels: torch.Tensor) -> None:
    with pytest.raises(ValueError, match=r"argmax\(1\)"):
        accuracy(logits, labels)


def test_accuracy_rejects_nan() -> None:
    with pytest.raises(ValueError, match="learning rate"):
        accuracy(torch.tensor([[0.0, float("nan")]]), torch.tensor([0]))


# -- average precision -----------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_average_precision_matches_sklearn_untied(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    scores = torch.randn((300, 7), generator=g, dtype=torch.float64)
    targets = _random_targets(g, 300, 7, p=0.1 + 0.1 * seed)
    assert scores.unique().numel() == scores.numel()  # no tie at all
    ap = average_precision(scores, targets)
    assert ap.shape == (7,) and ap.dtype == torch.float64
    assert ap.tolist() == pytest.approx(_sklearn_ap(scores, targets), abs=1e-12)


@pytest.mark.parametrize(
    "tie",
    [
        lambda x: x.round(decimals=1),  # about 60 distinct values for 400 rows
        lambda x: x.round(),  # about 7 distinct values: very heavy ties
        lambda x: (3 * x).bfloat16(),  # bf16 logits, as amp evaluation gives them
        lambda x: torch.zeros_like(x),  # one single tie: AP = the positive rate
    ],
    ids=["round1", "round0", "bfloat16", "constant"],
)
def test_average_precision_matches_sklearn_tied(
    tie: Callable[[torch.Tensor], torch.Tensor],
) -> None:
    g = torch.Generator().manual_seed(3)
    scores = tie(torch.randn((400, 6), generator=g))
    targets = _random_targets(g, 400, 6)
    assert scores.unique().numel() < scores.numel() // 2  # heavily tied
    expected = _sklearn_ap(scores, targets)
    assert average_precision(scores, targets).tolist() == pytest.approx(expected, abs=1e-12)
    # the float32 path of multilabel_metrics gives the same per-label AP
    assert multilabel_metrics(scores, targets)["ap"] == pytest.approx(expected, abs=1e-12)


def test_average_precision_four_tied_scores_every_order() -> None:
    """4 tied scores, 2 positives: one threshold with P = 1/2, R = 1, so AP = 1/2 for every
    order (ranking the rows one by one would give 1, 0.5 or 5/12)."""
    scores = torch.full((4,), 0.3)
    orders = set(itertools.permutations([1, 1, 0, 0]))
    assert len(orders) == 6
    for order in orders:
        targets = torch.tensor(order)
        assert average_precision(scores, targets).item() == 0.5, order
        assert average_precision_score(np.array(order), scores.numpy()) == 0.5


def test_average_precision_partial_ties_by_hand() -> None:
    """Scores 3, 2, 2, 2, 1 for targets 0, 1, 0, 1, 1 (P = 3). Thresholds: 3 -> P 0, R 0;
    2 -> TP 2 of 4, P 1/2, R 2/3; 1 -> TP 3 of 5, P 3/5, R 1.
    AP = (2/3)(1/2) + (1/3)(3/5) = 1/3 + 1/5 = 8/15."""
    scores = torch.tensor([3.0, 2.0, 2.0, 2.0, 1.0])
    for perm in itertools.permutations(range(5)):
        idx = torch.tensor(perm)
        targets = torch.tensor([0, 1, 0, 1, 1])[idx]
        assert average_precision(scores[idx], targets).item() == pytest.approx(8 / 15)


def test_average_precision_row_permutation_invariant() -> None:
    g = torch.Generator().manual_seed(4)
    scores = torch.randn((500, 5), generator=g).round(decimals=1)
    targets = _random_targets(g, 500, 5)
    ap = average_precision(scores, targets)
    for _ in range(10):
        perm = torch.randperm(500, generator=g)
        torch.testing.assert_close(
            average_precision(scores[perm], targets[perm]), ap, rtol=0, atol=1e-12
        )


def test_average_precision_shapes_and_undefined_labels() -> None:
    scores = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.5, 0.5]])
    targets = torch.tensor([[1, 0], [0, 0], [1, 0]], dtype=torch.bool)  # bool works too
    ap = average_precision(scores, targets)
    assert ap[0].item() == 1.0 and math.isnan(ap[1].item())  # label 1: no positive
    one = average_precision(scores[:, 0], targets[:, 0])
    assert one.shape == () and one.item() == 1.0
    empty = average_precision(torch.zeros(0, 3), torch.zeros(0, 3))
    assert empty.shape == (3,) and bool(empty.isnan().all())


# -- multilabel_metrics ----------------------------------------------------------------------
#: 4 samples x 3 labels; sigmoid >= 0.5 means logit >= 0.
LOGITS = torch.tensor(
    [
        [2.0, 1.0, 3.0],  # pred {0, 1, 2}
        [1.0, 2.0, -2.0],  # pred {0, 1}
        [-1.0, 1.0, -3.0],  # pred {1}
        [-2.0, -2.0, -1.0],  # pred {} (empty prediction)
    ]
)
TARGETS = torch.tensor(
    [
        [1, 0, 0],  # true {0}
        [1, 1, 0],  # true {0, 1}
        [0, 0, 0],  # true {} (left out of the instance metrics)
        [0, 1, 0],  # true {1}
    ]
)


def test_multilabel_metrics_by_hand() -> None:
    """The values, worked out by hand.

    Per label (TP, FP, FN, TN):
      label 0: true 1 1 0 0, pred 1 1 0 0 -> (2, 0, 0, 2): TPR 1, TNR 1, P 1, F1 1.
               Scores 2, 1, -1, -2 rank both positives first: AP 1.
      label 1: true 0 1 0 1, pred 1 1 1 0 -> (1, 2, 1, 0): TPR 1/2, TNR 0, P 1/3,
               F1 = 2 / (2 + 2 + 1) = 2/5. Scores -> ranks: 2 (+), then 1, 1 tied (-, -),
               then -2 (+): AP = (1/2)(1) + (1/2)(2/4) = 3/4.
      label 2: true 0 0 0 0, pred 1 0 0 0 -> (0, 1, 0, 3): TPR 0 (0/0), TNR 3/4, P 0, F1 0,
               AP undefined (None, left out of mAP).
    mA = [(1 + 1)/2 + (1/2 + 0)/2 + (0 + 3/4)/2] / 3 = (1 + 1/4 + 3/8) / 3 = 13/24.
    mAP = (1 + 3/4) / 2 = 7/8.
    CP = (1 + 1/3 + 0) / 3 = 4/9, CR = (1 + 1/2 + 0) / 3 = 1/2,
    CF1 = 2 (4/9)(1/2) / (4/9 + 1/2) = 8/17 (the mean of per-label F1 would be 7/15).
    OP = (2 + 1 + 0) / (2 + 3 + 1) = 1/2, OR = 3 / (2 + 2 + 0) = 3/4, OF1 = 2 (3/8) / (5/4) = 3/5.

    Per sample (|pred & true|, |pred | true|, |pred|, |true|):
      s0: (1, 3, 3, 1) -> accu 1/3, prec 1/3, recall 1.
      s1: (2, 2, 2, 2) -> 1, 1, 1.
      s2: no true label -> left out.
      s3: (0, 1, 0, 1) -> 0, 0 (empty prediction: precision 0), 0.
    accu = (1/3 + 1 + 0) / 3 = 4/9, prec = 4/9, recall = 2/3,
    f1 = 2 (4/9)(2/3) / (4/9 + 2/3) = 8/15 (the mean of per-sample F1 would be 5/9).
    """
    m = multilabel_metrics(LOGITS, TARGETS)
    expected = {
        "mAP": 7 / 8,
        "mA": 13 / 24,
        "accu": 4 / 9,
        "prec": 4 / 9,
        "recall": 2 / 3,
        "f1": 8 / 15,
        "CP": 4 / 9,
        "CR": 1 / 2,
        "CF1": 8 / 17,
        "OP": 1 / 2,
        "OR": 3 / 4,
        "OF1": 3 / 5,
    }
    assert {k: m[k] for k in expected} == pytest.approx(expected)
    assert m["ap"][:2] == pytest.approx([1.0, 3 / 4]) and m["ap"][2] is None
    assert m["label_f1"] == pytest.approx([1.0, 2 / 5, 0.0])
    assert m["label_recall"] == pytest.approx([1.0, 1 / 2, 0.0])
    assert set(m) == {*expected, "ap", "label_f1", "label_recall"}


def test_multilabel_metrics_is_json_serialisable() -> None:
    m = multilabel_metrics(LOGITS, TARGETS)
    assert all(type(m[k]) is float for k in m if k not in ("ap", "label_f1", "label_recall"))
    assert json.loads(json.dumps(m, allow_nan=False)) == m


@pytest.mark.parametrize("seed", [0, 1])
def test_multilabel_metrics_against_sklearn(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    n, c = 200, 8
    targets = _random_targets(g, n, c, p=0.25)
    targets[2:6] = 0  # some samples without a true label
    logits = torch.randn((n, c), generator=g) + 1.5 * (targets - 0.6)
    logits[6:10] = -5.0  # some samples with an empty prediction
    m = multilabel_metrics(logits, targets)
    y, p = targets.numpy(), (logits >= 0).long().numpy()

    cp, cr, _, _ = precision_recall_fscore_support(y, p, average="macro", zero_division=0)
    assert (m["CP"], m["CR"]) == pytest.approx((cp, cr))
    assert m["CF1"] == pytest.approx(2 * cp * cr / (cp + cr))
    op, or_, of1, _ = precision_recall_fscore_support(y, p, average="micro", zero_division=0)
    assert (m["OP"], m["OR"], m["OF1"]) == pytest.approx((op, or_, of1))
    _, rec, f1, _ = precision_recall_fscore_support(y, p, average=None, zero_division=0)
    assert m["label_f1"] == pytest.approx(f1.tolist())
    assert m["label_recall"] == pytest.approx(rec.tolist())

    kept = y.sum(1) > 0  # instance metrics leave out the samples without a true label
    prec, recall, _, _ = precision_recall_fscore_support(
        y[kept], p[kept], average="samples", zero_division=0
    )
    accu = jaccard_score(y[kept], p[kept], average="samples", zero_division=0)
    assert (m["accu"], m["prec"], m["recall"]) == pytest.approx((accu, prec, recall))
    assert m["f1"] == pytest.approx(2 * prec * recall / (prec + recall))

    ap = _sklearn_ap(logits, targets)
    assert m["ap"] == pytest.approx(ap)
    assert m["mAP"] == pytest.approx(np.mean(ap))

    # mA by hand: per label, (hits among positives / positives + hits among negatives /
    # negatives) / 2
    per_label = []
    for k in range(c):
        pos, neg = y[:, k] == 1, y[:, k] == 0
        per_label.append(((p[pos, k] == 1).mean() + (p[neg, k] == 0).mean()) / 2)
    assert m["mA"] == pytest.approx(float(np.mean(per_label)))


def test_multilabel_metrics_threshold() -> None:
    """sigmoid >= 0.5 is logit >= 0; other thresholds move the cut."""
    targets = torch.tensor([[1], [0]])
    assert multilabel_metrics(torch.tensor([[0.0], [-0.01]]), targets)["label_f1"] == [1.0]
    assert multilabel_metrics(torch.tensor([[-0.01], [-0.02]]), targets)["label_f1"] == [0.0]
    logits = torch.tensor([[2.0], [1.0]])  # sigmoid 0.88, 0.73
    assert multilabel_metrics(logits, targets)["OP"] == 0.5
    assert multilabel_metrics(logits, targets, threshold=0.8)["OP"] == 1.0


def test_multilabel_metrics_perfect_and_worst() -> None:
    g = torch.Generator().manual_seed(5)
    targets = _random_targets(g, 32, 6, p=0.4)
    logits = (2 * targets - 1) * torch.rand((32, 6), generator=g).add(0.5)
    m = multilabel_metrics(logits, targets)
    for key in ("mAP", "mA", "accu", "prec", "recall", "f1", "CP", "CR", "CF1", "OP", "OR"):
        assert m[key] == pytest.approx(1.0), key
    worst = multilabel_metrics(-logits, targets)
    for key in ("mA", "accu", "prec", "recall", "f1", "CF1", "OF1"):
        assert worst[key] == pytest.approx(0.0), key
    assert worst["mAP"] < 0.6


def test_multilabel_metrics_without_defined_sets() -> None:
    """No positive anywhere: mAP and the instance metrics are NaN, the ratios are 0."""
    m = multilabel_metrics(torch.tensor([[1.0, -1.0], [-1.0, -1.0]]), torch.zeros(2, 2))
    for key in ("mAP", "accu", "prec", "recall", "f1"):
        assert math.isnan(m[key]), key
    assert m["ap"] == [None, None]
    assert (m["CP"], m["CR"], m["OP"], m["OR"], m["OF1"]) == (0.0, 0.0, 0.0, 0.0, 0.0)
    # label 0: TPR 0 (0/0), TNR 1/2; label 1: TPR 0, TNR 1
    assert m["mA"] == pytest.approx(((0 + 1 / 2) / 2 + (0 + 1) / 2) / 2)


@pytest.mark.parametrize(
    "logits, targets, match",
    [
        (torch.zeros(4, 3), torch.zeros(4, 2), "same shape"),
        (torch.zeros(4), torch.zeros(4), "2-D"),
        (torch.zeros(2, 2, 2), torch.zeros(2, 2, 2), "2-D"),
        (torch.zeros(0, 3), torch.zeros(0, 3), "at least one sample"),
        (torch.tensor([[0.0, float("nan")]]), torch.zeros(1, 2), "lower the learning rate"),
        (torch.zeros(2, 2), torch.tensor([[0.0, 0.5], [1.0, 0.0]]), "binary"),
        (torch.zeros(2, 2), torch.tensor([[0, 2], [1, 0]]), "binary"),
        (torch.zeros(2, 2), torch.tensor([[0, -1], [1, 0]]), "binary"),
    ],
)
def test_multilabel_metrics_errors(logits: torch.Tensor, targets: torch.Tensor, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        multilabel_metrics(logits, targets)


@pytest.mark.parametrize("threshold", [-0.1, 1.5, float("nan")])
def test_multilabel_metrics_rejects_threshold(threshold: float) -> None:
    with pytest.raises(ValueError, match="threshold"):
        multilabel_metrics(torch.zeros(2, 2), torch.zeros(2, 2), threshold=threshold)


@pytest.mark.parametrize(
    "scores, targets, match",
    [
        (torch.zeros(4, 3), torch.zeros(3, 4), "same shape"),
        (torch.zeros(2, 2, 2), torch.zeros(2, 2, 2), "1-D or 2-D"),
        (torch.tensor([0.0, float("nan")]), torch.tensor([1, 0]), "amp"),
        (torch.zeros(2), torch.tensor([0.3, 1.0]), "binary"),
    ],
)
def test_average_precision_errors(scores: torch.Tensor, targets: torch.Tensor, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        average_precision(scores, targets)


def test_metrics_on_device(device: str) -> None:
    """The same values on the data's device as on the CPU."""
    g = torch.Generator().manual_seed(6)
    logits = torch.randn((300, 5), generator=g).round(decimals=1)
    targets = _random_targets(g, 300, 5)
    ap = average_precision(logits.to(device), targets.to(device))
    assert ap.device.type == device
    torch.testing.assert_close(ap.cpu(), average_precision(logits, targets), rtol=0, atol=1e-12)
    on_device = multilabel_metrics(logits.to(device), targets.to(device))
    on_cpu = multilabel_metrics(logits, targets)
    assert on_device.keys() == on_cpu.keys()
    for key, value in on_cpu.items():
        assert on_device[key] == pytest.approx(value), key
