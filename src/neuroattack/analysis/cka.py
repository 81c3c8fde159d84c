"""Linear centred kernel alignment (CKA) between a network's features and the recorded sites,
and its interval over stimuli."""

from __future__ import annotations

import statistics

import numpy as np

from neuroattack.analysis.sensitivity import CONFIDENCE

CKA_FORMS = ("debiased", "biased")  # screening.cka: debiased (the default, as Brain-Score's cka since 2026) or biased


def linear_cka(x: np.ndarray, y: np.ndarray, form: str = "debiased") -> float:
    """Linear centred kernel alignment between two (stimuli x units) matrices: 1 for the same
    representation, invariant to isotropic scaling and orthogonal transforms of either.
    `debiased` uses the unbiased HSIC estimator (Song et al. 2012), whose value does not drift
    upward with the number of units relative to stimuli; `biased`, the plug-in estimator
    (Kornblith et al. 2019)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if form == "biased":
        x, y = x - x.mean(axis=0), y - y.mean(axis=0)
        cross = np.linalg.norm(y.T @ x) ** 2
        denominator = np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)
        return float(cross / denominator) if denominator > 0 else float("nan")
    if form != "debiased":
        raise ValueError(f"screening.cka {form!r}: use one of {', '.join(CKA_FORMS)}")
    if len(x) < 4:
        raise ValueError(f"the debiased CKA needs at least 4 stimuli, got {len(x)}; use screening.cka: biased")
    k, l_ = _zero_diagonal(x @ x.T), _zero_diagonal(y @ y.T)
    denominator = np.sqrt(_unbiased_hsic(k, k) * _unbiased_hsic(l_, l_))
    return float(_unbiased_hsic(k, l_) / denominator) if denominator > 0 else float("nan")


def _zero_diagonal(gram: np.ndarray) -> np.ndarray:
    gram = gram.copy()
    np.fill_diagonal(gram, 0.0)
    return gram


def _unbiased_hsic(k: np.ndarray, l_: np.ndarray) -> float:
    """Song et al. (2012)'s unbiased HSIC of two Gram matrices with zeroed diagonals (up to the
    factor 1/(n(n-3)), which cancels in CKA)."""
    n = len(k)
    k_sums, l_sums = k.sum(axis=0), l_.sum(axis=0)
    return float(np.sum(k * l_) + k_sums.sum() * l_sums.sum() / ((n - 1) * (n - 2)) - 2 * (k_sums @ l_sums) / (n - 2))


def cka_interval(x: np.ndarray, y: np.ndarray, form: str = "debiased") -> tuple[float, float, float]:
    """CKA and its jackknife interval over stimuli: the estimate +- z * the delete-one jackknife
    standard error (z for `CONFIDENCE`).

    Not a bootstrap: a stimulus drawn twice would pair with its own copy, whose Gram entry is its
    squared norm off the diagonal, which the debiased form's correction assumes absent (on
    unrelated data the bootstrap values sit far above the estimate). Every jackknife sample holds
    n - 1 distinct stimuli, so it is the same estimator on a smaller sample; CKA is a smooth
    function of (U- or V-) statistics, for which the jackknife variance is consistent (Arvesen 1969).
    The n deletions are computed from the full Gram matrices, O(n^2) in all."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    value = linear_cka(x, y, form)
    if form == "debiased" and len(x) < 5:
        raise ValueError(
            f"the debiased CKA's jackknife needs at least 5 stimuli, got {len(x)}; use screening.cka: biased"
        )
    k, l_ = x @ x.T, y @ y.T
    deleted = _leave_one_out_hsic(k, l_, form)
    scale = np.sqrt(_leave_one_out_hsic(k, k, form) * _leave_one_out_hsic(l_, l_, form))
    with np.errstate(divide="ignore", invalid="ignore"):
        samples = np.where(scale > 0, deleted / scale, np.nan)
    n = len(x)
    error = float(np.sqrt((n - 1) / n * np.sum(np.square(samples - samples.mean()))))
    half_width = statistics.NormalDist().inv_cdf(0.5 + CONFIDENCE / 2) * error
    return value, value - half_width, value + half_width


def _leave_one_out_hsic(k: np.ndarray, l_: np.ndarray, form: str) -> np.ndarray:
    """Per stimulus i, the HSIC (up to a factor common to every HSIC of the same sample size,
    which cancels in CKA) of the Gram matrices with row and column i deleted: the sums the
    estimator needs, less stimulus i's share."""
    if form == "debiased":
        k, l_ = _zero_diagonal(k), _zero_diagonal(l_)
    m = len(k) - 1  # stimuli left
    k_sums, l_sums = k.sum(axis=0), l_.sum(axis=0)
    own_k, own_l = np.diag(k), np.diag(l_)
    products = np.sum(k * l_) - 2 * np.sum(k * l_, axis=0) + own_k * own_l  # sum of k_jq l_jq over j, q != i
    totals_k, totals_l = k_sums.sum() - 2 * k_sums + own_k, l_sums.sum() - 2 * l_sums + own_l
    # sum over j != i of (k_sums_j - k_ij)(l_sums_j - l_ij)
    sums_products = (
        k_sums @ l_sums - k @ l_sums - l_ @ k_sums + np.sum(k * l_, axis=0) - (k_sums - own_k) * (l_sums - own_l)
    )
    if form == "debiased":
        unbiased: np.ndarray = products + totals_k * totals_l / ((m - 1) * (m - 2)) - 2 * sums_products / (m - 2)
        return unbiased
    plug_in: np.ndarray = products - 2 * sums_products / m + totals_k * totals_l / m**2
    return plug_in
