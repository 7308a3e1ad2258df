"""tflip: Lipschitz-constrained Keras 3 layers and Wasserstein GAN training."""

try:
    import tensorflow as _tf  # noqa: F401
except ImportError as error:  # pragma: no cover - exercised only without TensorFlow
    raise ImportError(
        "tflip needs TensorFlow >= 2.16 with Keras 3, which is not installed. "
        "Install the CPU wheel with `pip install tensorflow-cpu` (or "
        "`pip install tflip[cpu]`), or for NVIDIA GPUs `pip install "
        "'tensorflow[and-cuda]'` (or `pip install tflip[gpu]`)."
    ) from error

from tflip import (  # noqa: E402,F401
    attacks,
    callbacks,
    datasets,
    export,
    layers,
    losses,
    metrics,
    models,
    ops,
    optimizers,
    penalties,
)

__version__ = "0.1.0"
