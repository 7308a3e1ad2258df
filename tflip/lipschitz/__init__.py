"""Certification and spectra: what a network's Lipschitz constant is, and what each layer's linear map does.

- `tflip.lipschitz.bounds`: certified upper bounds over Keras graphs (per
  layer through the `LipschitzLayer` protocol, combined by the graph rules of
  `lipschitz_upper_bound`), empirical lower bounds and input-Jacobian norms.
- `tflip.lipschitz.spectra`: singular-value spectra of the linear maps inside
  Dense- and Conv-like layers, as the monitoring callbacks log them.

Models and callbacks use both; the layers below know nothing of them.
"""

from tflip.lipschitz.bounds import (  # noqa: F401
    activation_lipschitz,
    jacobian_norms,
    layer_lipschitz_bound,
    lipschitz_lower_bound,
    lipschitz_upper_bound,
)
from tflip.lipschitz.spectra import LayerSpectrum, SpectrumAnalyzer, conv_operator, linear_layers  # noqa: F401
