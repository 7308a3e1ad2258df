"""Keras layers with a known, enforced Lipschitz constant."""

from tflip.layers.activations import FullSort, GroupSort, MaxMin  # noqa: F401
from tflip.layers.aol import AOLConv2D, AOLDense  # noqa: F401
from tflip.layers.base import LipschitzLayer  # noqa: F401
from tflip.layers.bjorck_dense import BjorckDense  # noqa: F401
from tflip.layers.centering import LayerCentering  # noqa: F401
from tflip.layers.downsampling import InvertibleDownSampling  # noqa: F401
from tflip.layers.linf_dense import LInfBallConstraint, LInfProjectedDense  # noqa: F401
from tflip.layers.orthogonal_conv import OrthogonalConv2D  # noqa: F401
from tflip.layers.pooling import L2NormPooling2D  # noqa: F401
from tflip.layers.residual import LipschitzResidual  # noqa: F401
from tflip.layers.sll import SLLConv2D, SLLDense  # noqa: F401
from tflip.layers.spectral import SpectralNormConv2D, SpectralNormDense  # noqa: F401
from tflip.layers.spectral_conv1d import SpectralNormConv1D  # noqa: F401
from tflip.layers.spectral_transpose import SpectralNormConv2DTranspose  # noqa: F401
