"""A diverging run fails its job naming the run, the step and the setting to change, and writes
nothing: no NaN or inf reaches a Parquet file that the figures and claims would read."""

from __future__ import annotations

import pytest
import torch

from chaosgd import lyapunov
from chaosgd.engine.models import flat_params
from chaosgd.runs import run_outputs, trainer

from support.runs import TRAIN_BASE, lyap_args, run_cli

# 6 steps of batch 8 on 48 images: the smallest run that diverges gradually at a learning rate
# of 3·10⁴ (its parameters and batch losses stay finite for the first steps)
TINY = dict(TRAIN_BASE, hidden=4, train_size=48, test_size=48, epochs=1, spectrum=False)


def settings(**changes) -> trainer.RunSettings:
    return trainer.RunSettings(**{**TINY, **changes})


def error(capsys) -> str:
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, lines
    return lines[0]


def test_update_norm_overflow_fails_with_the_setting_to_change(tmp_path, fmnist_pt, capsys):
    """Loss, gradient and parameters are still finite at step 4, but the float32 norm of the
    update overflows: the probe's run that exited 0 with inf in steps.parquet."""
    rc, out = run_cli(settings(run_id="exploding", lr=3e4), fmnist_pt, tmp_path / "run")
    message = error(capsys)
    assert rc == 1
    assert "run exploding: non-finite update_norm (inf) at step 4 (epoch 0)" in message
    assert "lower training.lr (now 30000" in message
    assert not any(p.exists() for p in out.values())


def test_momentum_is_named_too(tmp_path, fmnist_pt, capsys):
    rc, _ = run_cli(settings(lr=3e4, momentum=0.9), fmnist_pt, tmp_path / "run")
    assert rc == 1 and "or momentum (now 0.9)" in error(capsys)


def test_evaluation_overflow_fails(tmp_path, fmnist_pt, capsys):
    """In float64 at 10⁵ every step's numbers stay finite; the full training-set loss after the
    last step does not (some image's loss overflows): epochs.parquet would hold inf."""
    rc, out = run_cli(settings(lr=1e5, dtype="float64"), fmnist_pt, tmp_path / "run")
    message = error(capsys)
    assert rc == 1
    assert "non-finite training-set loss (evaluation) (inf) at step 6" in message
    assert "lower training.lr (now 100000" in message
    assert not any(p.exists() for p in out.values())


def test_non_finite_gradient_fails_before_the_update(fmnist_pt, monkeypatch):
    job = trainer.Trainer(settings(), fmnist_pt, progress=False)
    before = flat_params(job.model).clone()
    monkeypatch.setattr(trainer, "_flat_grad", lambda model: torch.tensor([1.0, float("nan")]))
    x, y = job.data.train_x[:8], job.data.train_y[:8]
    with pytest.raises(trainer.TrainingError, match="non-finite gradient at step 0"):
        job.train_step(x, y)
    assert torch.equal(flat_params(job.model), before)
    assert not job.rows  # nothing recorded


@pytest.mark.slow
def test_the_lyapunov_stage_fails_the_same_way(tmp_path, fmnist_pt, capsys):
    s = settings(run_id="exploding", lr=3e4, spectrum=True)
    out = {name: tmp_path / name for name in run_outputs.OUTPUTS + tuple(lyapunov.LYAP_OUTPUTS)}
    args = s.to_args() + ["--data", str(fmnist_pt), "--no-progress"] + lyap_args(readouts=2)
    args += [a for k, p in out.items() for a in (f"--out-{k}", str(p))]
    assert lyapunov.main(args) == 1
    assert "run exploding: non-finite update_norm (inf) at step 4" in error(capsys)
    assert not any(p.exists() for p in out.values())
