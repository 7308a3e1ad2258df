"""Keras callbacks for Lipschitz and Wasserstein training."""

from tflip.callbacks.bjorck import BjorckTightening  # noqa: F401
from tflip.callbacks.level_sets import CriticLevelSets  # noqa: F401
from tflip.callbacks.power_iteration import PowerIterationRefresh  # noqa: F401
from tflip.callbacks.sample_grid import SampleGrid  # noqa: F401
from tflip.callbacks.spectrum import SpectrumLogger  # noqa: F401
from tflip.callbacks.summary import SummaryCallback  # noqa: F401
from tflip.callbacks.wasserstein import ExactWasserstein  # noqa: F401
