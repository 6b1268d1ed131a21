"""The block Lanczos engine on explicit symmetric matrices, against ``torch.linalg.eigh``."""

import pytest
import torch

from chaosgd.engine.block_lanczos import BlockLanczos, gaussian, project_out


def _matrix(n: int, seed: int, spectrum=None) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=torch.float64))
    lam = torch.linspace(-1.0, 3.0, n, dtype=torch.float64) if spectrum is None else spectrum
    return (q * lam) @ q.T


def _run(h: torch.Tensor, b: int, steps: int, capacity: int, seed: int = 0) -> BlockLanczos:
    gen = torch.Generator().manual_seed(seed)
    start = gaussian(b, h.shape[0], h, gen)
    lanczos = BlockLanczos(lambda x: x @ h, start, capacity, gen)
    for _ in range(steps):
        lanczos.expand()
    return lanczos


def test_the_invariant_holds_and_residuals_are_exact():
    h = _matrix(60, 1)
    lanczos = _run(h, b=4, steps=5, capacity=40)
    u = lanczos.u
    assert torch.allclose(u @ u.T, torch.eye(u.shape[0], dtype=torch.float64), atol=1e-12)
    assert torch.allclose(u @ h @ u.T, lanczos.t, atol=1e-12)
    theta, y, res = lanczos.ritz()
    x = lanczos.combine(y)
    # the residual the recurrence reports without a product equals the one a product measures
    measured = (x @ h - theta[:, None] * x).norm(dim=1)
    assert torch.allclose(res, measured, atol=1e-10)


def test_the_whole_space_gives_the_exact_spectrum():
    h = _matrix(24, 2)
    lanczos = _run(h, b=3, steps=8, capacity=24)
    theta, _, res = lanczos.ritz()
    assert torch.allclose(theta, torch.linalg.eigvalsh(h), atol=1e-12)
    assert float(res.max()) < 1e-10


def test_extreme_ritz_values_converge_to_the_ends_and_lie_inside():
    # outliers a clear gap beyond a dense bulk, as a network's curvature has
    spectrum = torch.cat([torch.tensor([-3.0, 6.0]), torch.linspace(-1.0, 3.0, 198)])
    h = _matrix(200, 3, spectrum.to(torch.float64))
    exact = torch.linalg.eigvalsh(h)
    lanczos = _run(h, b=4, steps=20, capacity=120)
    theta, _, res = lanczos.ritz()
    # Ritz values interlace: never beyond the spectrum's ends
    assert float(theta.min()) >= float(exact.min()) - 1e-12
    assert float(theta.max()) <= float(exact.max()) + 1e-12
    assert abs(float(theta.max() - exact.max())) < 1e-8
    assert abs(float(theta.min() - exact.min())) < 1e-8


def test_a_thick_restart_keeps_the_invariant():
    h = _matrix(80, 4)
    lanczos = _run(h, b=4, steps=6, capacity=40)
    theta, y, _ = lanczos.ritz()
    keep = torch.cat([torch.arange(4), torch.arange(theta.numel() - 4, theta.numel())])
    lanczos.restart(theta, y, keep)
    assert lanczos.restarts == 1 and lanczos.size == 8
    for _ in range(4):
        lanczos.expand()
    u = lanczos.u
    assert torch.allclose(u @ u.T, torch.eye(u.shape[0], dtype=torch.float64), atol=1e-11)
    assert torch.allclose(u @ h @ u.T, lanczos.t, atol=1e-11)


@pytest.mark.parametrize("rank", [5, 12])
def test_an_invariant_subspace_is_continued_by_fresh_directions(rank):
    # a low-rank operator: the Krylov space closes after one block step; the basis must keep
    # growing orthonormal (and find the zero eigenvalues) instead of dividing by a vanished norm
    spectrum = torch.zeros(50, dtype=torch.float64)
    spectrum[:rank] = torch.linspace(1.0, 2.0, rank, dtype=torch.float64)
    h = _matrix(50, 5, spectrum)
    lanczos = _run(h, b=rank, steps=4, capacity=50)
    u = lanczos.u
    assert torch.allclose(u @ u.T, torch.eye(u.shape[0], dtype=torch.float64), atol=1e-10)
    theta, _, _ = lanczos.ritz()
    assert abs(float(theta.max()) - 2.0) < 1e-10


def test_project_out_leaves_the_complement():
    gen = torch.Generator().manual_seed(6)
    basis, _ = torch.linalg.qr(torch.randn(30, 5, generator=gen, dtype=torch.float64))
    x = torch.randn(3, 30, generator=gen, dtype=torch.float64)
    y = project_out(x, basis.T)
    assert float((y @ basis).abs().max()) < 1e-14
    assert torch.allclose(project_out(x, basis.T[:0]), x)
