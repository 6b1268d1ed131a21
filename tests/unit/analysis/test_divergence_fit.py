"""The divergence model d(t) = √(αt² + βt + ε²) (Sec. 4.2, Eq. 15): recovering α, β and their
errors, telling diffusion from linear divergence, the Lyapunov bounds (Eq. 5, App. C.5), and
the table of every curve's fit."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from chaosgd.analysis import divergence_fit

from support.fit_tables import divergence_model, exponents_table, synthetic_distances
from support.fits import diffusing_distances

T = np.arange(0, 20_001, 20, dtype=np.float64)


@pytest.mark.parametrize(
    "alpha, beta, eps", [(2e-9, 1e-6, 0.1), (0.0, 4e-7, 1e-3), (5e-10, 0.0, 1.0)]
)
def test_exact_curves_are_recovered(alpha, beta, eps):
    d = divergence_model(T, alpha, beta, eps)
    for nonnegative in (True, False):
        fit = divergence_fit.fit_divergence(T, d, eps, nonnegative=nonnegative)
        assert fit.alpha == pytest.approx(alpha, rel=1e-8, abs=1e-18)
        assert fit.beta == pytest.approx(beta, rel=1e-8, abs=1e-15)
        assert fit.r2 == pytest.approx(1.0, abs=1e-12)
        assert fit.r2_squared == pytest.approx(1.0, abs=1e-12)
        assert np.abs(fit.residuals).max() < 1e-10
        assert fit.n == T.size and fit.constrained == nonnegative


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_noisy_curves_are_recovered(seed):
    rng = np.random.default_rng(seed)
    alpha, beta, eps = 2e-9, 4e-5, 0.1  # drift and diffusion alike at the end
    clean = divergence_model(T, alpha, beta, eps)
    noisy = clean * (1 + 0.02 * rng.standard_normal(T.size))
    fit = divergence_fit.fit_divergence(T, noisy, eps)
    assert fit.alpha == pytest.approx(alpha, rel=0.05)
    assert fit.beta == pytest.approx(beta, rel=0.05)
    assert 0.95 < fit.r2 < 1.0
    np.testing.assert_allclose(fit.residuals, noisy - fit.predict(T, eps), atol=1e-15)
    # the residuals are the noise: about 2 % of the curve, centred
    assert np.std(fit.residuals / clean) == pytest.approx(0.02, rel=0.2)
    assert abs(np.mean(fit.residuals / clean)) < 0.005


def ols_alpha_se(t, d, eps):
    """α and its ordinary least-squares standard error (residuals taken as independent)."""
    scale = t.max()
    design = np.column_stack([(t / scale) ** 2, t / scale])
    target = d**2 - eps**2
    coef = np.linalg.lstsq(design, target, rcond=None)[0]
    res = target - design @ coef
    var = res @ res / (t.size - 2) * np.linalg.inv(design.T @ design)[0, 0]
    return coef[0] / scale**2, np.sqrt(var) / scale**2


def test_a_random_walk_is_not_linear_divergence():
    """Diffusion alone (α = 0) must not come out as α more than 2 standard errors above 0; with
    ordinary least-squares errors it does, in a third of these walks and more."""
    ours, ols = [], []
    for seed in range(20):
        t, d = diffusing_distances(seed)
        fit = divergence_fit.fit_divergence(t, d, 0.1)
        assert fit.beta == pytest.approx(1 / 4000, rel=0.3)
        ours.append(fit.alpha - 2 * fit.alpha_se > 0)
        alpha, se = ols_alpha_se(t, d, 0.1)
        ols.append(alpha - 2 * se > 0)
    assert sum(ours) == 0
    assert sum(ols) >= 6


def test_linear_divergence_stands_out_of_the_diffusion():
    for seed in range(5):
        t, d = diffusing_distances(seed, drift=1.0)
        fit = divergence_fit.fit_divergence(t, d, 0.1)
        assert fit.alpha == pytest.approx(1 / 4000**2, rel=0.3)
        assert fit.alpha - 2 * fit.alpha_se > 0
        assert fit.alpha / fit.alpha_se > 5
    # order does not matter: the noise model walks along t, whatever order the points come in
    shuffled = np.random.default_rng(0).permutation(t.size)
    again = divergence_fit.fit_divergence(t[shuffled], d[shuffled], 0.1)
    assert again.alpha_se == pytest.approx(fit.alpha_se, rel=1e-9)
    assert again.alpha == pytest.approx(fit.alpha, rel=1e-9)
    np.testing.assert_allclose(again.residuals, fit.residuals[shuffled], atol=1e-12)


def test_standard_errors_of_an_exact_curve_are_zero_and_grow_with_the_noise():
    d = divergence_model(T, 2e-9, 1e-6, 0.1)
    fit = divergence_fit.fit_divergence(T, d, 0.1)
    assert fit.alpha_se < 1e-6 * fit.alpha and fit.beta_se < 1e-6 * fit.beta
    rng = np.random.default_rng(0)
    noise = rng.standard_normal(T.size)
    ses = [
        divergence_fit.fit_divergence(T, d * (1 + s * noise), 0.1).alpha_se for s in (0.001, 0.01)
    ]
    assert 0 < ses[0] < ses[1]


def test_constraint_keeps_alpha_beta_non_negative():
    """A perturbation that shrinks (convergent direction) is outside the model: the
    unconstrained fit goes negative, the constrained one stops at the boundary and R² says so."""
    eps = 0.1
    d = eps * np.exp(-T / 5000)
    free = divergence_fit.fit_divergence(T, d, eps, nonnegative=False)
    assert min(free.alpha, free.beta) < 0
    fixed = divergence_fit.fit_divergence(T, d, eps)
    assert fixed.alpha >= 0 and fixed.beta >= 0
    assert fixed.r2 < 0  # worse than the mean: the model cannot follow a shrinking curve
    # with a positive trend the constraint only matters where the data call for it
    d = divergence_model(T, 1e-9, 0.0, eps) + 1e-4 * np.sin(T / 300)
    fixed = divergence_fit.fit_divergence(T, d, eps)
    assert fixed.beta >= 0 and fixed.alpha == pytest.approx(1e-9, rel=0.05)


def test_degenerate_input_is_an_error():
    with pytest.raises(ValueError, match="at least 3 points"):
        divergence_fit.fit_divergence([0, 1], [0.1, 0.2], 0.1)
    with pytest.raises(ValueError, match="distinct non-zero times"):
        divergence_fit.fit_divergence([0, 5, 5], [0.1, 0.2, 0.2], 0.1)
    with pytest.raises(ValueError, match="non-finite"):
        divergence_fit.fit_divergence([0, 1, 2], [0.1, np.nan, 0.2], 0.1)
    with pytest.raises(ValueError, match="differ in length"):
        divergence_fit.fit_divergence([0, 1, 2], [0.1, 0.2], 0.1)
    with pytest.raises(ValueError, match="non-negative"):
        divergence_fit.fit_divergence([0, 1, 2], [0.1, 0.2, 0.3], -0.1)


def test_zero_curve_of_an_unperturbed_member():
    fit = divergence_fit.fit_divergence(T, np.zeros_like(T), 0.0)
    assert fit.alpha == 0 and fit.beta == 0
    assert np.isnan(fit.r2)  # nothing to explain


def test_bounds_on_known_data():
    eps = 0.1
    steps = np.arange(0, 401, 50)
    # at the exact steps 100, 200, 300, 400: inside, above the upper bound, inside, below the lower
    upper = lambda t: np.exp(1e-3 * t) * eps  # noqa: E731
    lower = lambda t: np.exp(-1e-3 * t) * eps  # noqa: E731
    d = np.full(steps.size, eps)
    d[steps == 200] = upper(200) * 1.01
    d[steps == 400] = lower(400) * 0.99
    res = divergence_fit.bounds(
        pd.DataFrame({"step": steps, "distance": d}), exponents_table(), eps
    )
    assert res.n == 4
    assert res.table["step"].tolist() == [100, 200, 300, 400]  # Benettin rows ignored
    np.testing.assert_allclose(res.table["upper"], upper(res.table["step"].to_numpy()), rtol=1e-15)
    np.testing.assert_allclose(res.table["lower"], lower(res.table["step"].to_numpy()), rtol=1e-15)
    assert res.upper_holds == 0.75
    assert res.lower_holds == 0.75
    # with the Benettin rows included their absurd exponents would make both bounds hold at 150
    both = divergence_fit.bounds(
        pd.DataFrame({"step": steps, "distance": d}),
        exponents_table(),
        eps,
        methods=("svd", "svd_deflated", "benettin"),
    )
    assert both.n == 6


def test_bound_margins_on_known_data():
    """The worst log margins: ln(upper / d) and ln(d / lower), where each bound is tightest."""
    eps = 0.1
    steps = np.array([100, 200, 300, 400])
    d = np.exp(1e-3 * steps) * eps * np.array([0.5, 0.9, 0.2, 0.3])  # under the upper bound
    res = divergence_fit.bounds(
        pd.DataFrame({"step": steps, "distance": d}), exponents_table(), eps
    )
    assert res.upper_holds == 1.0 and res.upper_margin == pytest.approx(-np.log(0.9))
    # d / lower = e^{2e-3 t} × factor: smallest at step 300 (0.2 e^0.6; it holds at step 200 only)
    assert res.lower_margin == pytest.approx(np.log(0.2) + 0.6) and res.lower_holds == 0.25
    assert res.lower_log_max == pytest.approx(-0.1)  # λN t at step 100: the bound's largest
    d[1] *= 1.5  # 1.35 × the upper bound at step 200: the margin goes below 0
    res = divergence_fit.bounds(
        pd.DataFrame({"step": steps, "distance": d}), exponents_table(), eps
    )
    assert res.upper_holds == 0.75 and res.upper_margin == pytest.approx(-np.log(1.35))
    # bounds far beyond float range: the margins come from λt, not from the overflowing bounds
    huge = exponents_table().assign(lambda_1=5.0, lambda_N=-5.0)
    res = divergence_fit.bounds(pd.DataFrame({"step": steps, "distance": d}), huge, eps)
    assert res.upper_margin == pytest.approx(500 + np.log(eps) - np.log(d[0]))
    assert res.lower_margin == pytest.approx(np.log(d[0]) + 500 - np.log(eps))


def test_bounds_of_an_unperturbed_member_hold_with_equality():
    """ε = 0: d ≡ 0 = both bounds; the bounds are inclusive."""
    steps = np.arange(0, 401, 100)
    res = divergence_fit.bounds(
        pd.DataFrame({"step": steps, "distance": np.zeros(steps.size)}), exponents_table(), 0.0
    )
    assert res.n == 4 and res.lower_holds == 1.0 and res.upper_holds == 1.0
    assert res.upper_margin == 0.0 and res.lower_margin == 0.0


def test_bounds_without_common_steps_are_nan():
    res = divergence_fit.bounds(
        pd.DataFrame({"step": [0, 7, 13], "distance": [0.1, 0.1, 0.1]}), exponents_table(), 0.1
    )
    assert res.n == 0 and np.isnan(res.lower_holds) and np.isnan(res.upper_holds)
    assert np.isnan(res.upper_margin) and np.isnan(res.lower_margin)


def test_fit_table_without_exponents_fits_and_leaves_the_bounds_unchecked():
    dist, truth = synthetic_distances()
    fits, bounds = divergence_fit.fit_table(dist)
    assert len(fits) == len(truth) and fits["bound_steps"].eq(0).all()
    assert fits[["lower_bound_holds", "upper_bound_holds", "upper_margin"]].isna().all().all()
    assert bounds.empty and list(bounds.columns) == [
        "dtype", "strategy", "eps", "step", "distance", "lower", "upper",
    ]  # fmt: skip
    # the rows are sorted by curve, whatever order the distances come in
    assert list(fits[divergence_fit.GROUP].itertuples(index=False, name=None)) == sorted(truth)
    with pytest.raises(ValueError, match="lacks columns"):
        divergence_fit.fit_table(dist.drop(columns="eps"))
    with pytest.raises(ValueError, match="is empty"):
        divergence_fit.fit_table(dist.iloc[:0])


def test_upper_bound_at_every_step_fails_between_the_readouts():
    # e^{λ1 t}ε with λ1(t) = 0.01 per step; the distance crosses it at steps 3..5 only
    steps = np.arange(0, 9)
    eps = 0.5
    lam = pd.DataFrame({"step": np.arange(1, 9), "lambda_1": 0.01})
    d = 0.8 * eps * np.exp(0.01 * steps)
    crossing = d.copy()
    crossing[3:6] *= 2.0
    for curve, want in ((d, np.log(1 / 0.8)), (crossing, np.log(1 / 1.6))):
        df = pd.DataFrame({"step": steps, "distance": curve})
        margin, n = divergence_fit.upper_bound_steps(df, lam, eps)
        assert n == 8 and margin == pytest.approx(want)  # step 0 left out
    # steps the lambda1 table lacks are not checked; none in common: (NaN, 0)
    margin, n = divergence_fit.upper_bound_steps(
        pd.DataFrame({"step": [20, 30], "distance": [1.0, 2.0]}), lam, eps
    )
    assert n == 0 and np.isnan(margin)
    fits, _ = divergence_fit.fit_table(
        pd.DataFrame(
            {"dtype": "float32", "strategy": "max_chaos", "eps": eps, "step": steps,
             "distance": crossing}
        ),
        lambda1=lam,
    )  # fmt: skip
    assert fits["upper_steps"].tolist() == [8]
    assert fits["upper_margin_steps"].iloc[0] == pytest.approx(np.log(1 / 1.6))
