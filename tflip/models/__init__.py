"""Keras models for Wasserstein training: `WGAN` and `WassersteinCritic`."""

from tflip.models.mlp import lipschitz_mlp, relu_mlp  # noqa: F401
from tflip.models.resnet import resnet_critic, resnet_generator  # noqa: F401
from tflip.models.wasserstein_critic import WassersteinCritic  # noqa: F401
from tflip.models.wgan import WGAN  # noqa: F401
