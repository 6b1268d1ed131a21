"""Fits stage: recovering α, β of d(t) = √(αt² + βt + ε²), the Lyapunov bounds, the CLI."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from chaosgd import fits

T = np.arange(0, 20_001, 20, dtype=np.float64)


def model(t, alpha, beta, eps):
    return np.sqrt(alpha * t**2 + beta * t + eps**2)


@pytest.mark.parametrize(
    "alpha, beta, eps", [(2e-9, 1e-6, 0.1), (0.0, 4e-7, 1e-3), (5e-10, 0.0, 1.0)]
)
def test_exact_curves_are_recovered(alpha, beta, eps):
    d = model(T, alpha, beta, eps)
    for nonnegative in (True, False):
        fit = fits.fit_divergence(T, d, eps, nonnegative=nonnegative)
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
    clean = model(T, alpha, beta, eps)
    noisy = clean * (1 + 0.02 * rng.standard_normal(T.size))
    fit = fits.fit_divergence(T, noisy, eps)
    assert fit.alpha == pytest.approx(alpha, rel=0.05)
    assert fit.beta == pytest.approx(beta, rel=0.05)
    assert 0.95 < fit.r2 < 1.0
    np.testing.assert_allclose(fit.residuals, noisy - fit.predict(T, eps), atol=1e-15)
    # the residuals are the noise: about 2 % of the curve, centred
    assert np.std(fit.residuals / clean) == pytest.approx(0.02, rel=0.2)
    assert abs(np.mean(fit.residuals / clean)) < 0.005


def diffusing_distances(seed, drift=0.0, n_dim=2000, total=4000, every=10, eps=0.1):
    """‖θ_B − θ_A‖ of a perturbation ε that diffuses (a Gaussian random walk in ``n_dim``
    dimensions, d² growing by ≈ 1 over ``total`` steps) and drifts by ``drift`` per ``total``
    steps: the paper's model with α = (drift / total)², β ≈ 1 / total (Sec. 4.2, Eq. 15)."""
    rng = np.random.default_rng(seed)
    t = np.arange(0, total + 1, every, dtype=np.float64)
    steps = rng.standard_normal((t.size - 1, n_dim)) * np.sqrt(every / (n_dim * total))
    walk = np.vstack([np.zeros(n_dim), np.cumsum(steps, axis=0)])
    walk[:, 0] += eps
    walk[:, 1] += drift * t / total
    return t, np.linalg.norm(walk, axis=1)


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
        fit = fits.fit_divergence(t, d, 0.1)
        assert fit.beta == pytest.approx(1 / 4000, rel=0.3)
        ours.append(fit.alpha - 2 * fit.alpha_se > 0)
        alpha, se = ols_alpha_se(t, d, 0.1)
        ols.append(alpha - 2 * se > 0)
    assert sum(ours) == 0
    assert sum(ols) >= 6


def test_linear_divergence_stands_out_of_the_diffusion():
    for seed in range(5):
        t, d = diffusing_distances(seed, drift=1.0)
        fit = fits.fit_divergence(t, d, 0.1)
        assert fit.alpha == pytest.approx(1 / 4000**2, rel=0.3)
        assert fit.alpha - 2 * fit.alpha_se > 0
        assert fit.alpha / fit.alpha_se > 5
    # order does not matter: the noise model walks along t, whatever order the points come in
    shuffled = np.random.default_rng(0).permutation(t.size)
    again = fits.fit_divergence(t[shuffled], d[shuffled], 0.1)
    assert again.alpha_se == pytest.approx(fit.alpha_se, rel=1e-9)
    assert again.alpha == pytest.approx(fit.alpha, rel=1e-9)
    np.testing.assert_allclose(again.residuals, fit.residuals[shuffled], atol=1e-12)


def test_standard_errors_of_an_exact_curve_are_zero_and_grow_with_the_noise():
    d = model(T, 2e-9, 1e-6, 0.1)
    fit = fits.fit_divergence(T, d, 0.1)
    assert fit.alpha_se < 1e-6 * fit.alpha and fit.beta_se < 1e-6 * fit.beta
    rng = np.random.default_rng(0)
    noise = rng.standard_normal(T.size)
    ses = [fits.fit_divergence(T, d * (1 + s * noise), 0.1).alpha_se for s in (0.001, 0.01)]
    assert 0 < ses[0] < ses[1]


def test_constraint_keeps_alpha_beta_non_negative():
    """A perturbation that shrinks (convergent direction) is outside the model: the
    unconstrained fit goes negative, the constrained one stops at the boundary and R² says so."""
    eps = 0.1
    d = eps * np.exp(-T / 5000)
    free = fits.fit_divergence(T, d, eps, nonnegative=False)
    assert min(free.alpha, free.beta) < 0
    fixed = fits.fit_divergence(T, d, eps)
    assert fixed.alpha >= 0 and fixed.beta >= 0
    assert fixed.r2 < 0  # worse than the mean: the model cannot follow a shrinking curve
    # with a positive trend the constraint only matters where the data call for it
    d = model(T, 1e-9, 0.0, eps) + 1e-4 * np.sin(T / 300)
    fixed = fits.fit_divergence(T, d, eps)
    assert fixed.beta >= 0 and fixed.alpha == pytest.approx(1e-9, rel=0.05)


def test_degenerate_input_is_an_error():
    with pytest.raises(ValueError, match="at least 3 points"):
        fits.fit_divergence([0, 1], [0.1, 0.2], 0.1)
    with pytest.raises(ValueError, match="distinct non-zero times"):
        fits.fit_divergence([0, 5, 5], [0.1, 0.2, 0.2], 0.1)
    with pytest.raises(ValueError, match="non-finite"):
        fits.fit_divergence([0, 1, 2], [0.1, np.nan, 0.2], 0.1)
    with pytest.raises(ValueError, match="differ in length"):
        fits.fit_divergence([0, 1, 2], [0.1, 0.2], 0.1)
    with pytest.raises(ValueError, match="non-negative"):
        fits.fit_divergence([0, 1, 2], [0.1, 0.2, 0.3], -0.1)


def test_zero_curve_of_an_unperturbed_member():
    fit = fits.fit_divergence(T, np.zeros_like(T), 0.0)
    assert fit.alpha == 0 and fit.beta == 0
    assert np.isnan(fit.r2)  # nothing to explain


def exponents_table():
    """Exact readouts at 100..400 and Benettin estimates between them (absurd on purpose)."""
    return pd.DataFrame(
        {
            "step": [50, 100, 150, 200, 300, 400],
            "method": ["benettin", "svd", "benettin", "svd", "svd_deflated", "svd"],
            "lambda_1": [9.0, 1e-3, 9.0, 1e-3, 1e-3, 1e-3],
            "lambda_N": [-9.0, -1e-3, -9.0, -1e-3, -1e-3, -1e-3],
        }
    )


def test_bounds_on_known_data():
    eps = 0.1
    steps = np.arange(0, 401, 50)
    # at the exact steps 100, 200, 300, 400: inside, above the upper bound, inside, below the lower
    upper = lambda t: np.exp(1e-3 * t) * eps  # noqa: E731
    lower = lambda t: np.exp(-1e-3 * t) * eps  # noqa: E731
    d = np.full(steps.size, eps)
    d[steps == 200] = upper(200) * 1.01
    d[steps == 400] = lower(400) * 0.99
    res = fits.bounds(pd.DataFrame({"step": steps, "distance": d}), exponents_table(), eps)
    assert res.n == 4
    assert res.table["step"].tolist() == [100, 200, 300, 400]  # Benettin rows ignored
    np.testing.assert_allclose(res.table["upper"], upper(res.table["step"].to_numpy()), rtol=1e-15)
    np.testing.assert_allclose(res.table["lower"], lower(res.table["step"].to_numpy()), rtol=1e-15)
    assert res.upper_holds == 0.75
    assert res.lower_holds == 0.75
    # with the Benettin rows included their absurd exponents would make both bounds hold at 150
    both = fits.bounds(
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
    res = fits.bounds(pd.DataFrame({"step": steps, "distance": d}), exponents_table(), eps)
    assert res.upper_holds == 1.0 and res.upper_margin == pytest.approx(-np.log(0.9))
    # d / lower = e^{2e-3 t} × factor: smallest at step 300 (0.2 e^0.6; it holds at step 200 only)
    assert res.lower_margin == pytest.approx(np.log(0.2) + 0.6) and res.lower_holds == 0.25
    assert res.lower_log_max == pytest.approx(-0.1)  # λN t at step 100: the bound's largest
    d[1] *= 1.5  # 1.35 × the upper bound at step 200: the margin goes below 0
    res = fits.bounds(pd.DataFrame({"step": steps, "distance": d}), exponents_table(), eps)
    assert res.upper_holds == 0.75 and res.upper_margin == pytest.approx(-np.log(1.35))
    # bounds far beyond float range: the margins come from λt, not from the overflowing bounds
    huge = exponents_table().assign(lambda_1=5.0, lambda_N=-5.0)
    res = fits.bounds(pd.DataFrame({"step": steps, "distance": d}), huge, eps)
    assert res.upper_margin == pytest.approx(500 + np.log(eps) - np.log(d[0]))
    assert res.lower_margin == pytest.approx(np.log(d[0]) + 500 - np.log(eps))


def test_bounds_of_an_unperturbed_member_hold_with_equality():
    """ε = 0: d ≡ 0 = both bounds; the bounds are inclusive."""
    steps = np.arange(0, 401, 100)
    res = fits.bounds(
        pd.DataFrame({"step": steps, "distance": np.zeros(steps.size)}), exponents_table(), 0.0
    )
    assert res.n == 4 and res.lower_holds == 1.0 and res.upper_holds == 1.0
    assert res.upper_margin == 0.0 and res.lower_margin == 0.0


def test_bounds_without_common_steps_are_nan():
    res = fits.bounds(
        pd.DataFrame({"step": [0, 7, 13], "distance": [0.1, 0.1, 0.1]}), exponents_table(), 0.1
    )
    assert res.n == 0 and np.isnan(res.lower_holds) and np.isnan(res.upper_holds)
    assert np.isnan(res.upper_margin) and np.isnan(res.lower_margin)


def synthetic_distances():
    rows = []
    truth = {}
    rng = np.random.default_rng(0)
    steps = np.arange(0, 401, 10)
    for dtype in ("float32", "float64"):
        for k, strategy in enumerate(("max_chaos", "random")):
            for eps in (0.01, 0.1):
                alpha, beta = (k + 1) * 1e-7, (k + 1) * eps * 1e-4
                truth[(dtype, strategy, eps)] = (alpha, beta)
                d = model(steps, alpha, beta, eps) * (1 + 1e-3 * rng.standard_normal(steps.size))
                for s, v in zip(steps, d):
                    rows.append(
                        {
                            "dtype": dtype,
                            "strategy": strategy,
                            "eps": eps,
                            "step": s,
                            "distance": v,
                            "distance_along": v / 2,
                            "loss": 1.0,
                            "acc": 0.5,
                        }
                    )
    df = pd.DataFrame(rows)
    df["step"] = df["step"].astype(np.int64)
    return df.sample(frac=1.0, random_state=0), truth  # shuffled: the stage must not rely on order


FIT_COLUMNS = {
    "dtype": "str",
    "strategy": "str",
    "eps": "float64",
    "alpha": "float64",
    "beta": "float64",
    "alpha_se": "float64",
    "beta_se": "float64",
    "r2": "float64",
    "r2_squared": "float64",
    "n": "int64",
    "constrained": "bool",
    "final_distance": "float64",
    "lower_bound_holds": "float64",
    "upper_bound_holds": "float64",
    "bound_steps": "int64",
    "upper_margin": "float64",
    "lower_margin": "float64",
    "lower_log_max": "float64",
}
BOUND_COLUMNS = {
    "dtype": "str",
    "strategy": "str",
    "eps": "float64",
    "step": "int64",
    "distance": "float64",
    "lower": "float64",
    "upper": "float64",
}


def test_cli_end_to_end(tmp_path):
    dist, truth = synthetic_distances()
    dist.to_parquet(tmp_path / "distances.parquet", index=False)
    exponents_table().to_parquet(tmp_path / "exponents.parquet", index=False)
    out_fits, out_bounds = tmp_path / "out" / "fits.parquet", tmp_path / "out" / "bounds.parquet"
    rc = fits.main(
        [
            "--distances",
            str(tmp_path / "distances.parquet"),
            "--exponents",
            str(tmp_path / "exponents.parquet"),
            "--out-fits",
            str(out_fits),
            "--out-bounds",
            str(out_bounds),
        ]
    )
    assert rc == 0
    f = pd.read_parquet(out_fits)
    b = pd.read_parquet(out_bounds)
    assert {c: str(t) for c, t in f.dtypes.items()} == FIT_COLUMNS
    assert {c: str(t) for c, t in b.dtypes.items()} == BOUND_COLUMNS
    assert len(f) == 8 and not f.duplicated(["dtype", "strategy", "eps"]).any()
    for row in f.itertuples():
        alpha, beta = truth[(row.dtype, row.strategy, row.eps)]
        assert row.alpha == pytest.approx(alpha, rel=0.05)
        assert row.beta == pytest.approx(beta, rel=0.1)
        assert row.n == 41 and row.bound_steps == 4
        assert 0 < row.alpha_se < row.alpha / 2 and 0 < row.beta_se
        # d grows faster than e^{1e-3 t} ε only for the steep curves
        assert 0 <= row.upper_bound_holds <= 1 and row.lower_bound_holds == 1.0
        assert (row.upper_margin >= 0) == (row.upper_bound_holds == 1.0)
        assert row.lower_margin > 0 and row.lower_log_max == pytest.approx(-0.1)
    assert len(b) == 8 * 4 and sorted(b.step.unique()) == [100, 200, 300, 400]
    last = dist[dist.step == 400].set_index(["dtype", "strategy", "eps"])["distance"]
    got = f.set_index(["dtype", "strategy", "eps"])["final_distance"]
    pd.testing.assert_series_equal(got.sort_index(), last.sort_index(), check_names=False)


def test_cli_errors(tmp_path, capsys):
    dist, _ = synthetic_distances()
    dist = dist[dist.step < 20]  # two points per curve
    dist.to_parquet(tmp_path / "distances.parquet", index=False)
    exponents_table().to_parquet(tmp_path / "exponents.parquet", index=False)
    out = tmp_path / "out" / "fits.parquet"
    rc = fits.main(
        [
            "--distances",
            str(tmp_path / "distances.parquet"),
            "--exponents",
            str(tmp_path / "exponents.parquet"),
            "--out-fits",
            str(out),
        ]
    )
    assert rc == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and "at least 3 points" in err[0]
    assert not out.exists()
    rc = fits.main(
        [
            "--distances",
            str(tmp_path / "missing.parquet"),
            "--exponents",
            str(tmp_path / "exponents.parquet"),
            "--out-fits",
            str(out),
        ]
    )
    assert rc == 1 and not out.exists()
