"""Rebuilding from a build config is a no-op on built models (Keras Tuner reloads checkpoints so)."""

import warnings

import numpy as np

import tflip
from tests.models.helpers import mlp, toy_gan


def test_build_from_config_on_built_models_keeps_weights():
    for model in (toy_gan("lp"), tflip.models.WassersteinCritic(mlp(2, 1))):
        assert model.built
        before = [np.asarray(w).copy() for w in model.weights]
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            model.build_from_config(model.get_build_config())
        assert len(model.weights) == len(before)
        for a, b in zip(before, model.weights):
            np.testing.assert_array_equal(a, np.asarray(b))
