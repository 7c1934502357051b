"""Pure statistical formulas over sufficient statistics (DESIGN.md, "Metrics and the report").

Every function takes plain numbers (means, variances, counts) and returns plain numbers or
small records: no I/O, no data frames. Undefined results (a variant with fewer than two units,
a control mean of zero) come back as NaN, which the report writes as ``null``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

# scipy.special only: scipy.stats costs every report ~1 s of import for one chi-square tail.
from scipy import special as _sp

Interval = tuple[float, float]
NAN_INTERVAL: Interval = (math.nan, math.nan)


@dataclass(frozen=True, slots=True)
class Estimate:
    """A comparison of treatment t against control c: difference, relative lift, p-value."""

    diff: float
    diff_ci: Interval
    lift: float
    lift_ci: Interval
    p_value: float
    diff_se: float


def _ratio(a: float, b: float) -> float:
    return a / b if b != 0 else math.nan


def lift_se(mean_t: float, var_mean_t: float, mean_c: float, var_mean_c: float) -> float:
    """Standard error of lift = m_t/m_c − 1 by the delta method.

    se = sqrt(V_t/m_c² + m_t²·V_c/m_c⁴), where V = Var(m) is the variance of each mean
    (s²/n for a mean of per-unit values). With V = s²/n this is DESIGN.md's
    sqrt(s²_t/(n_t·m_c²) + m_t²·s²_c/(n_c·m_c⁴)).

    References:
        Deng, Knoblich, Lu (2018). Applying the Delta Method in Metric Analytics. KDD, §3.3.
    """
    if mean_c == 0:
        return math.nan
    return math.sqrt(var_mean_t / mean_c**2 + mean_t**2 * var_mean_c / mean_c**4)


def _lift(
    mean_t: float, var_mean_t: float, mean_c: float, var_mean_c: float, z: float
) -> tuple[float, Interval]:
    lift = _ratio(mean_t, mean_c) - 1
    se = lift_se(mean_t, var_mean_t, mean_c, var_mean_c)
    if math.isnan(lift) or math.isnan(se):
        return math.nan, NAN_INTERVAL
    return lift, (lift - z * se, lift + z * se)


def welch(
    mean_t: float,
    var_t: float,
    n_t: int,
    mean_c: float,
    var_c: float,
    n_c: int,
    alpha: float = 0.05,
) -> Estimate:
    """Welch's unequal-variance t-test for a difference of means of per-unit values.

    diff = m_t − m_c; se = sqrt(s²_t/n_t + s²_c/n_c) (sample variances, ddof=1);
    Welch–Satterthwaite df = se⁴ / ((s²_t/n_t)²/(n_t−1) + (s²_c/n_c)²/(n_c−1));
    p = 2·(1 − F_t(|diff/se|; df)); diff_ci = diff ± t_{1−α/2; df}·se.
    The lift and its interval use the delta method (``lift_se``) with z_{1−α/2}.

    References:
        Welch (1947). The generalization of Student's problem when several different
        population variances are involved. Biometrika 34(1–2).
        Satterthwaite (1946). An approximate distribution of estimates of variance
        components. Biometrics Bulletin 2(6).
    """
    z = float(_sp.ndtri(1 - alpha / 2))
    if n_t < 2 or n_c < 2:
        return Estimate(mean_t - mean_c, NAN_INTERVAL, math.nan, NAN_INTERVAL, math.nan, math.nan)
    vt, vc = var_t / n_t, var_c / n_c
    diff = mean_t - mean_c
    se = math.sqrt(vt + vc)
    lift, lift_ci = _lift(mean_t, vt, mean_c, vc, z)
    if se == 0:
        p = 1.0 if diff == 0 else 0.0
        return Estimate(diff, (diff, diff), lift, lift_ci, p, 0.0)
    df = (vt + vc) ** 2 / (vt**2 / (n_t - 1) + vc**2 / (n_c - 1))
    t = diff / se
    p = float(2 * _sp.stdtr(df, -abs(t)))
    half = float(_sp.stdtrit(df, 1 - alpha / 2)) * se
    return Estimate(diff, (diff - half, diff + half), lift, lift_ci, p, se)


def normal_comparison(
    value_t: float, var_value_t: float, value_c: float, var_value_c: float, alpha: float = 0.05
) -> Estimate:
    """z-test of a difference of two independent estimates (used for ratio metrics).

    diff = R_t − R_c; se = sqrt(Var(R_t) + Var(R_c)); p = 2·(1 − Φ(|diff|/se));
    diff_ci = diff ± z_{1−α/2}·se; lift = R_t/R_c − 1 with the delta-method se of ``lift_se``.

    References:
        Deng, Knoblich, Lu (2018). Applying the Delta Method in Metric Analytics. KDD.
    """
    z = float(_sp.ndtri(1 - alpha / 2))
    diff = value_t - value_c
    se = math.sqrt(var_value_t + var_value_c)
    if math.isnan(se):
        return Estimate(diff, NAN_INTERVAL, math.nan, NAN_INTERVAL, math.nan, math.nan)
    lift, lift_ci = _lift(value_t, var_value_t, value_c, var_value_c, z)
    if se == 0:
        return Estimate(diff, (diff, diff), lift, lift_ci, 1.0 if diff == 0 else 0.0, 0.0)
    p = float(2 * _sp.ndtr(-abs(diff) / se))
    return Estimate(diff, (diff - z * se, diff + z * se), lift, lift_ci, p, se)


def srm_p_value(units: Mapping[str, int], expected_share: Mapping[str, float]) -> float:
    """Sample-ratio-mismatch check: chi-square goodness of fit of units per variant.

    χ² = Σ (O_i − E_i)²/E_i with E_i = N·w_i, df = k − 1 over variants with w_i > 0;
    p = P(χ²_{k−1} ≥ χ²) (scipy.special.chdtrc; equal to scipy.stats.chisquare, tested).
    Units seen in a variant of weight 0 (or of no configured variant) give p = 0.

    References:
        Fabijan et al. (2019). Diagnosing Sample Ratio Mismatch in Online Controlled
        Experiments. KDD.
    """
    total = sum(units.values())
    if total == 0:
        return math.nan
    if any(n > 0 and expected_share.get(k, 0.0) <= 0 for k, n in units.items()):
        return 0.0
    keys = [k for k, w in expected_share.items() if w > 0]
    if len(keys) < 2:
        return 1.0
    # every unit is in a variant of positive weight here (above), so Σ E_i = N
    weight = sum(expected_share[k] for k in keys)
    expected = {k: total * expected_share[k] / weight for k in keys}
    chi2 = sum((units.get(k, 0) - e) ** 2 / e for k, e in expected.items())
    return float(_sp.chdtrc(len(keys) - 1, chi2))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment of a family of p-values (NaN stays NaN and is not counted).

    Sorted ascending p_(1) ≤ … ≤ p_(m): adjusted p_(i) = max_{j ≤ i} min(1, (m − j + 1)·p_(j)).

    References:
        Holm (1979). A simple sequentially rejective multiple test procedure.
        Scandinavian Journal of Statistics 6(2).
    """
    idx = sorted(
        (i for i, p in enumerate(p_values) if not math.isnan(p)), key=lambda i: p_values[i]
    )
    m = len(idx)
    out = [math.nan] * len(p_values)
    running = 0.0
    for rank, i in enumerate(idx):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        out[i] = running
    return out


def msprt_p_value(diff: float, var_diff: float, tau2: float) -> float:
    """One look of the normal-mixture mSPRT: p = min(1, 1/Λ).

    Λ = sqrt(V/(V + τ²)) · exp(τ²·diff² / (2·V·(V + τ²))), with V = Var(diff) and τ² the
    variance of the normal mixing distribution over effects. The always-valid p-value after
    several looks is the running minimum of these; it can be checked at every look without
    inflating the type I error.

    References:
        Johari, Koomen, Pekelis, Walsh (2017). Peeking at A/B Tests: Why it matters, and what
        to do about it. KDD. (Also Johari et al. 2022, Operations Research 70(3).)
    """
    if not (var_diff > 0) or not (tau2 > 0) or math.isnan(diff):
        return math.nan
    s = var_diff + tau2
    log_lambda = 0.5 * math.log(var_diff / s) + tau2 * diff * diff / (2 * var_diff * s)
    return 1.0 if log_lambda <= 0 else min(1.0, math.exp(-log_lambda))


def normal_score(p_value: float) -> float:
    """The |z| whose two-sided normal tail probability is ``p_value``: Φ⁻¹(1 − p/2).

    For a z-test this gives back |diff|/se; for Welch's t it is the normal equivalent of |t|
    (smaller than |t| when df is small, equal in the limit). The mSPRT uses it so that one
    look's always-valid p is never below that look's own p (docs/analysts.md).

    The conversion is ours, not Johari et al.'s (who use the plug-in z with large samples):
    it only ever makes a look's evidence weaker, so the mSPRT's guarantee is kept.
    """
    if math.isnan(p_value):
        return math.nan
    return float(-_sp.ndtri(min(1.0, max(0.0, p_value)) / 2))


def cuped_theta(cov_yx: float, var_x: float) -> float:
    """CUPED coefficient θ = cov(Y, X)/Var(X) (0 when X does not vary).

    The adjusted per-unit value is Y − θ·(X − mean(X)); its variance is
    Var(Y) − 2θ·cov(Y, X) + θ²·Var(X) = Var(Y)·(1 − ρ²) at the optimal θ.

    References:
        Deng, Xu, Kohavi, Walker (2013). Improving the Sensitivity of Online Controlled
        Experiments by Utilizing Pre-Experiment Data. WSDM.
    """
    return cov_yx / var_x if var_x > 0 else 0.0


def mde(se: float, alpha: float = 0.05, power: float = 0.8) -> float:
    """Minimal detectable (absolute) effect of a two-sided test: (z_{1−α/2} + z_{power})·se.

    References:
        Kohavi, Tang, Xu (2020). Trustworthy Online Controlled Experiments, ch. 17.
    """
    return float(_sp.ndtri(1 - alpha / 2) + _sp.ndtri(power)) * se
