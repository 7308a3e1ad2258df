"""ExactWasserstein callback: logs the exact W1 every N epochs."""

import numpy as np
import pytest

from tests.models.helpers import adam, toy_gan
from tflip.callbacks import ExactWasserstein
from tflip.datasets import eight_gaussians
from tflip.metrics import wasserstein1_exact


def test_logs_every_n_epochs_and_matches_direct_computation():
    gan = toy_gan("lp")
    gan.compile(adam(), adam())
    real = eight_gaussians(200, seed=1)
    monitor = ExactWasserstein(real, every_n_epochs=2, seed=7)
    history = gan.fit(eight_gaussians(128, seed=0), batch_size=64, epochs=4, verbose=0, callbacks=[monitor])
    assert [epoch for epoch, _ in monitor.values] == [1, 3]
    expected = wasserstein1_exact(gan.generate(200, seed=7), real)
    assert monitor.values[-1][1] == pytest.approx(expected, rel=1e-6)
    assert np.isclose(history.history["w1_exact"][-1], expected)


def test_bad_arguments():
    with pytest.raises(ValueError, match="`every_n_epochs`"):
        ExactWasserstein(np.zeros((4, 2)), every_n_epochs=0)
    with pytest.raises(ValueError, match="`real`"):
        ExactWasserstein(np.zeros((0, 2)))
