"""The eigensolvers' types (chaosgd.engine.eigenpairs): a block basis against its dense matrix."""

import pytest
import torch

from chaosgd.engine import models

from support.engine import image_batch

pytestmark = pytest.mark.usefixtures("one_thread")


def test_basis_products_along_rows_equal_the_dense_basis():
    """Sᵀ A and A + α S C through the blocks equal the products with the explicit N×d matrix S."""
    model = models.build_model("mlp", hidden=6)
    x, y = image_batch(8, seed=1)
    basis = models.hessian_range_basis(model, x, y)
    n, d = basis.n, basis.dim
    s = basis.expand(torch.eye(d, dtype=torch.float64)).T  # N×d
    assert float((s.T @ s - torch.eye(d, dtype=torch.float64)).abs().max()) <= 1e-13
    g = torch.Generator().manual_seed(0)
    a = torch.randn(n, 7, generator=g, dtype=torch.float64)
    c = torch.randn(d, 7, generator=g, dtype=torch.float64)
    assert float((basis.rows_project(a) - s.T @ a).abs().max()) <= 1e-13
    want = a - 0.3 * (s @ c)
    basis.rows_expand_add_(a, c, -0.3)
    assert float((a - want).abs().max()) <= 1e-13
    assert basis.apply_cost() == 6 * 256 * basis.blocks[0][3].shape[1] + (n - 6 * 256)
