"""Evaluation metrics: top-1 accuracy, tie-exact average precision, multi-label metrics.

Pure torch on any device, vectorised over samples and labels (no Python loop over either).

* :func:`average_precision` matches scikit-learn's ``average_precision_score``
  (``sklearn/metrics/_ranking.py``), ties included: tied scores form one threshold, and
  ``AP = sum_n (R_n - R_{n-1}) P_n`` over the distinct thresholds, so the result does not
  depend on the row order.
* :func:`multilabel_metrics` gives the pedestrian-attribute metrics of Li et al., "A Richly
  Annotated Dataset for Pedestrian Attribute Recognition" (RAP, arXiv:1603.07054), used by the
  PETA and PA-100K papers (label-based ``mA``; instance-based ``accu``, ``prec``, ``recall``,
  ``f1``), and the MS-COCO metrics of ML-GCN (Chen et al., arXiv:1904.03582; its
  ``AveragePrecisionMeter.evaluation``) and ASL (Ridnik et al., arXiv:2009.14119): ``mAP``,
  ``CP``, ``CR``, ``CF1``, ``OP``, ``OR``, ``OF1``.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["accuracy", "average_precision", "multilabel_metrics"]


def _check_no_nan(logits: torch.Tensor, fn: str) -> None:
    if logits.is_floating_point() and bool(torch.isnan(logits).any()):
        raise ValueError(
            f"{fn}: the logits contain NaN (training diverged); lower the learning rate, "
            "or check mixed precision (amp=torch.float16 overflows where bfloat16 does not)"
        )


def _check_pair(
    scores: torch.Tensor, targets: torch.Tensor, fn: str, dims: tuple[int, ...]
) -> None:
    """Checks the dimensions, the shapes, NaN scores and 0/1 targets."""
    names = " or ".join(f"{d}-D" for d in dims)
    if scores.dim() not in dims:
        raise ValueError(f"{fn}: the scores must be {names}, got shape {tuple(scores.shape)}")
    if scores.shape != targets.shape:
        raise ValueError(
            f"{fn}: the scores {tuple(scores.shape)} and the targets {tuple(targets.shape)} "
            "must have the same shape [N, C] (one multi-hot row per sample)"
        )
    _check_no_nan(scores, fn)
    if not bool(((targets == 0) | (targets == 1)).all()):
        bad = targets[(targets != 0) & (targets != 1)].flatten()[:3].tolist()
        raise ValueError(
            f"{fn}: the targets must be binary (0/1 multi-hot), got values such as {bad}; "
            "evaluate on hard labels, not mixed or smoothed ones"
        )


def _ratio(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """``num / den`` for counts with ``0 <= num <= den``; 0/0 gives 0."""
    return num / den.clamp(min=1)


def _harmonic(p: float, r: float) -> float:
    """``2pr / (p + r)``: 0 where both are 0, NaN where either is NaN."""
    return 2 * p * r / (p + r) if p + r != 0 else 0.0


def accuracy(logits: torch.Tensor, labels: torch.Tensor, *, k: int = 1) -> float:
    """Top-k accuracy of single-label logits (top-1 by default).

    Args:
        logits: class scores.
        labels: class indices.
        k: a sample counts when its label is among its ``k`` highest logits.

    Returns:
        The fraction of samples whose label is among their ``k`` highest logits; NaN for an
        empty batch.

    Raises:
        ValueError: for shapes other than ``[N, C]`` and ``[N]``, or NaN logits.

    Shape:
        logits ``[N, C]``, labels ``[N]``.
    """
    if logits.dim() != 2 or labels.dim() != 1 or len(labels) != len(logits):
        raise ValueError(
            f"accuracy: expects logits [N, C] and class indices [N], got {tuple(logits.shape)} "
            f"and {tuple(labels.shape)}; for one-hot or soft labels pass labels.argmax(1)"
        )
    if len(labels) == 0:
        return float("nan")
    _check_no_nan(logits, "accuracy")
    if k == 1:
        return float((logits.argmax(1) == labels).double().mean())
    top = logits.topk(min(k, logits.shape[1]), dim=1).indices
    return float((top == labels.view(-1, 1)).any(1).double().mean())


def average_precision(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Average precision per label, exactly as scikit-learn's ``average_precision_score``.

    Each distinct score is one threshold ``n`` (tied samples enter together);
    ``AP = sum_n (R_n - R_{n-1}) P_n`` with precision ``P_n`` and recall ``R_n`` of the samples
    scoring at least that threshold. Because ties are grouped, the result does not depend on
    the order of the rows. Scores are compared in float64, which holds every float16, bfloat16
    and float32 value exactly, so ties are those of the input dtype.

    Args:
        scores: any monotone score (logits or probabilities), higher meaning positive.
        targets: 0/1 (or bool) relevance, one column per label.

    Returns:
        float64 AP per label on the scores' device; NaN for a label without a positive
        (scikit-learn warns there and returns a meaningless value).

    Raises:
        ValueError: for mismatched shapes, inputs not 1-D or 2-D, NaN scores or non-binary
            targets.

    Shape:
        scores and targets ``[N, C]`` -> ``[C]``; ``[N]`` -> ``[]`` (a 0-dim tensor).

    Example:
        >>> average_precision(torch.tensor([1.0, 1.0, 1.0, 1.0]), torch.tensor([1, 0, 1, 0]))
        tensor(0.5000, dtype=torch.float64)
    """
    _check_pair(scores, targets, "average_precision", (1, 2))
    one_label = scores.dim() == 1
    s = (scores.unsqueeze(1) if one_label else scores).double()
    t = (targets.unsqueeze(1) if one_label else targets).double()
    n, c = s.shape
    positives = t.sum(0)
    if n == 0:
        ap = torch.full((c,), float("nan"), dtype=torch.float64, device=s.device)
        return ap[0] if one_label else ap
    s_sorted, order = torch.sort(s, dim=0, descending=True)
    t_sorted = t.gather(0, order)
    rank = torch.arange(n, device=s.device).unsqueeze(1).expand(n, c)
    precision = t_sorted.cumsum(0) / (rank + 1)
    # the last row of each run of tied scores is the threshold; spread its precision over the
    # run with a reverse running minimum of "index of the run's end" (n elsewhere)
    is_end = torch.ones_like(s_sorted, dtype=torch.bool)
    is_end[:-1] = s_sorted[:-1] != s_sorted[1:]
    end = torch.where(is_end, rank, n).flip(0).cummin(0).values.flip(0)
    # sum over thresholds of (positives entering there / P) * P_n
    ap = (t_sorted * precision.gather(0, end)).sum(0) / positives
    ap = torch.where(positives > 0, ap, torch.full_like(ap, float("nan")))
    return ap[0] if one_label else ap


def multilabel_metrics(
    logits: torch.Tensor, targets: torch.Tensor, *, threshold: float = 0.5
) -> dict[str, Any]:
    """Multi-label metrics at ``sigmoid(logits) >= threshold``, plus the threshold-free mAP.

    Pedestrian-attribute metrics (Li et al., RAP; PETA; PA-100K):

    * ``mA``: mean over labels of ``(TPR + TNR) / 2``.
    * ``accu``, ``prec``, ``recall``: means over samples of ``|pred & true| / |pred | true|``,
      ``|pred & true| / |pred|`` and ``|pred & true| / |true|``.
    * ``f1``: ``2 * prec * recall / (prec + recall)`` from the averaged ``prec`` and
      ``recall``, as those papers report it.

    MS-COCO metrics (ML-GCN, ASL):

    * ``mAP``: mean of :func:`average_precision` over the labels with a positive.
    * ``CP``, ``CR``: per-label precision and recall averaged over labels;
      ``CF1 = 2 * CP * CR / (CP + CR)`` (not the mean of per-label F1).
    * ``OP``, ``OR``, ``OF1``: overall precision, recall and F1 of the summed TP, FP, FN.

    Per-label lists: ``ap`` (None where a label has no positive), ``label_f1``,
    ``label_recall`` (the TPR).

    Empty sets. The papers define none of these cases; the choices are ours, following the
    authors' reference code where it exists:

    * Per-label ratios (TPR, TNR, label precision and F1, so ``mA``, ``CP``, ``CR``): 0/0 is
      0 and every label counts, as in ML-GCN's code (a label never predicted has precision 0)
      and scikit-learn's ``zero_division=0``. A label without a positive thus has TPR 0 and
      recall 0; ``mAP`` alone leaves it out.
    * Instance-based metrics: a sample with no true label is left out of ``accu``, ``prec``
      and ``recall`` (its recall is undefined), as in the RAP authors' code
      (``attribute_evaluate_lidw`` in dangweili/pedestrian-attribute-recognition-pytorch). A
      sample with true labels but an empty prediction counts with precision 0 (and
      ``accu`` = ``recall`` = 0). Jia et al.'s "Rethinking of pedestrian attribute
      recognition" code instead keeps every sample with 0/0 = 0; the two differ only on
      samples without a true label. With no sample left, the four are NaN.
    * ``OP``/``OR``: 0 when nothing is predicted / nothing is true; an F1 is 0 when its
      precision and recall are both 0.

    Args:
        logits: raw scores (before the sigmoid).
        targets: 0/1 (or bool) multi-hot labels.
        threshold: the sigmoid probability at and above which a label is predicted; 0.5
            is a logit of 0, ML-GCN's ``scores >= 0``.

    Returns:
        Python floats ``mAP``, ``mA``, ``accu``, ``prec``, ``recall``, ``f1``, ``CP``,
        ``CR``, ``CF1``, ``OP``, ``OR``, ``OF1`` (``mAP`` is NaN when no label has a
        positive) and JSON-serialisable lists ``ap``, ``label_f1``, ``label_recall`` of
        length ``C``.

    Raises:
        ValueError: for inputs not 2-D, mismatched shapes, no samples or labels, NaN logits,
            non-binary targets or a threshold outside [0, 1].

    Shape:
        logits and targets ``[N, C]``.
    """
    _check_pair(logits, targets, "multilabel_metrics", (2,))
    if logits.numel() == 0:
        raise ValueError(
            f"multilabel_metrics: needs at least one sample and one label, got shape "
            f"{tuple(logits.shape)}"
        )
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(
            f"multilabel_metrics: threshold is a sigmoid probability in [0, 1], got {threshold}"
        )
    pred = logits.double().sigmoid() >= threshold
    true = targets.bool()
    hit = pred & true

    # per label
    tp = hit.sum(0).double()
    n_pred = pred.sum(0).double()
    n_true = true.sum(0).double()
    n_neg = len(true) - n_true
    tn = n_neg - (n_pred - tp)
    tpr = _ratio(tp, n_true)
    label_prec = _ratio(tp, n_pred)
    label_f1 = _ratio(2 * tp, n_pred + n_true)
    ap = average_precision(logits, targets)

    # per sample
    inter = hit.sum(1).double()
    kept = true.any(1)
    inst = torch.stack(
        [
            _ratio(inter, (pred | true).sum(1).double()),
            _ratio(inter, pred.sum(1).double()),
            _ratio(inter, true.sum(1).double()),
        ]
    )[:, kept].mean(1)  # NaN when no sample is kept

    scalars = torch.stack(
        [
            ap.nanmean(),
            ((tpr + _ratio(tn, n_neg)) / 2).mean(),
            *inst,
            label_prec.mean(),
            tpr.mean(),
            _ratio(tp.sum(), n_pred.sum()),
            _ratio(tp.sum(), n_true.sum()),
        ]
    ).tolist()  # one transfer from the device
    m_ap, m_a, accu, prec, recall, cp, cr, op, or_ = scalars
    return {
        "mAP": m_ap,
        "mA": m_a,
        "accu": accu,
        "prec": prec,
        "recall": recall,
        "f1": _harmonic(prec, recall),
        "CP": cp,
        "CR": cr,
        "CF1": _harmonic(cp, cr),
        "OP": op,
        "OR": or_,
        "OF1": _harmonic(op, or_),
        "ap": [None if a != a else a for a in ap.tolist()],  # NaN -> None for JSON
        "label_f1": label_f1.tolist(),
        "label_recall": tpr.tolist(),
    }
