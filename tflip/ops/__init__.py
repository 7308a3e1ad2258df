"""Pure TensorFlow math behind the layers: norms, projections, orthonormalization, sorting."""
