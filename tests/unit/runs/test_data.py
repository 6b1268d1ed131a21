"""A run's data and initial model follow its dataset's image side and its model's depth."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from chaosgd.engine.models import ResidualBlock, flat_params, num_params
from chaosgd.planning.run_settings import RunSettings
from chaosgd.planning.vocab import ARCHITECTURES
from chaosgd.runs.artifacts import UnreadableFile
from chaosgd.runs.data import initial_model, load_data, recorded_model

from support.runs import TRAIN_BASE

CPU = torch.device("cpu")


def settings(**changes) -> RunSettings:
    return RunSettings(**{**TRAIN_BASE, **changes})


@pytest.mark.parametrize("depth, side", [(8, 16), (14, 28)])
def test_the_initial_resnet_has_the_configured_depth(depth, side):
    s = settings(model="resnet", hidden=2, depth=depth, image_side=side, spectrum=False)
    model = initial_model(s, "float32", CPU)
    assert num_params(model) == ARCHITECTURES["resnet"].n_params(2, side=side, depth=depth)
    # 6n + 2 layers: a stem, three stages of n blocks of two convolutions, the classifier
    blocks = [m for m in model.modules() if isinstance(m, ResidualBlock)]
    assert len(blocks) == 3 * (depth - 2) // 6
    assert model(torch.zeros(3, 1, side, side)).shape == (3, 10)
    # the seed fixes it, as for the paper's networks
    assert torch.equal(flat_params(model), flat_params(initial_model(s, "float32", CPU)))


def test_a_resnet_without_a_depth_is_the_default_one():
    s = settings(model="resnet", hidden=2, spectrum=False)
    assert s.depth == ARCHITECTURES["resnet"].depth == 20
    assert num_params(initial_model(s, "float32", CPU)) == ARCHITECTURES["resnet"].n_params(2)


def test_the_initial_mlp_takes_the_images_pixels():
    model = initial_model(settings(image_side=28), "float64", CPU)
    first = next(model.parameters())
    assert first.shape == (20, 784) and first.dtype == torch.float64
    assert num_params(model) == 15910  # 784-20-10, the MLP of the paper's text
    assert next(initial_model(settings(), "float32", CPU).parameters()).shape == (20, 256)


def test_the_recorded_model_is_the_runs():
    s = settings(model="resnet", hidden=2, depth=8, image_side=28, spectrum=False)
    assert num_params(recorded_model(s.as_dict())) == num_params(initial_model(s, "float32", CPU))
    # a run.json made before the image side and depth were settings: 16×16, the paper's MLP
    old = {k: v for k, v in settings().as_dict().items() if k not in ("image_side", "depth")}
    assert num_params(recorded_model(old)) == 5350


def test_a_dataset_of_another_side_than_the_runs_is_refused(fmnist_pt):
    s = settings(train_size=16, test_size=16)
    assert load_data(fmnist_pt, s, CPU).train_x.shape == (16, 1, 16, 16)
    with pytest.raises(UnreadableFile, match="expected float N×1×28×28"):
        load_data(fmnist_pt, dataclasses.replace(s, image_side=28), CPU)
