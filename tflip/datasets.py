"""Toy and small real data sets, generated locally (nothing is downloaded).

- Gulrajani et al.'s toy sets (their `gan_toy.py`): `eight_gaussians`,
  `twenty_five_gaussians`, `swiss_roll`.
- Anil et al.'s pairs (P, Q) with known W1(P, Q) = 1 and known optimal
  critic (appendix G.1): `absolute_value`, `three_cones`, `circular_cone`.
- `digits`: scikit-learn's 8x8 handwritten digits (shipped with the
  package), scaled to [-1, 1].

Every sampler takes `n` and a `seed` (an int or a numpy Generator) and returns
float32 numpy arrays.
"""

import numpy as np

from tflip import _validation


def _rng(seed):
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def _mixture(n, seed, centres, std, scale):
    """`n` samples of equal-weight Gaussians at `centres`, noise `std`, divided by `scale`."""
    n = _validation.positive_int("n", n)
    rng = _rng(seed)
    centres = np.asarray(centres, dtype="float64")
    points = centres[rng.integers(0, len(centres), n)] + std * rng.standard_normal((n, centres.shape[1]))
    return (points / scale).astype("float32")


def eight_gaussians(n, seed=None):
    """Eight Gaussians on a circle: centres 2*(+-1, 0), (0, +-1), (+-1/sqrt2, +-1/sqrt2),
    noise std 0.02, all divided by 1.414 (Gulrajani et al.'s toy code)."""
    s = 1.0 / np.sqrt(2.0)
    centres = 2.0 * np.array([(1, 0), (-1, 0), (0, 1), (0, -1), (s, s), (s, -s), (-s, s), (-s, -s)])
    return _mixture(n, seed, centres, std=0.02, scale=1.414)


def twenty_five_gaussians(n, seed=None):
    """25 Gaussians on the grid 2*{-2..2}^2, noise std 0.05, divided by 2.828
    (Gulrajani et al.'s toy code)."""
    grid = 2.0 * np.array([(x, y) for x in range(-2, 3) for y in range(-2, 3)])
    return _mixture(n, seed, grid, std=0.05, scale=2.828)


def swiss_roll(n, seed=None):
    """scikit-learn's `make_swiss_roll(noise=0.25)`, columns 0 and 2, divided by 7.5
    (Gulrajani et al.'s toy code)."""
    from sklearn.datasets import make_swiss_roll

    n = _validation.positive_int("n", n)
    rng = _rng(seed)
    points = make_swiss_roll(n_samples=n, noise=0.25, random_state=int(rng.integers(2**31 - 1)))[0]
    return (points[:, [0, 2]] / 7.5).astype("float32")


TOY_SETS = {
    "eight_gaussians": eight_gaussians,
    "twenty_five_gaussians": twenty_five_gaussians,
    "swiss_roll": swiss_roll,
}


def toy(name, n, seed=None):
    """Samples `n` points of a toy set by name (a key of `TOY_SETS`)."""
    return TOY_SETS[_validation.one_of("name", name, TOY_SETS)](n, seed)


def _unit_sphere(rng, n, dimension):
    directions = rng.standard_normal((n, dimension))
    return directions / np.linalg.norm(directions, axis=1, keepdims=True)


def absolute_value(n, seed=None):
    """Anil et al.'s 1-D pair: P = delta_0, Q = (delta_-1 + delta_1) / 2.

    W1(P, Q) = 1 and the optimal critic is f(x) = -|x| (up to a constant).

    Returns:
        `(p, q)`, two float32 arrays of shape `(n, 1)`.
    """
    n = _validation.positive_int("n", n)
    rng = _rng(seed)
    return np.zeros((n, 1), "float32"), rng.choice([-1.0, 1.0], size=(n, 1)).astype("float32")


CONE_CENTRES = np.array([(-2.0, 0.0), (0.0, 0.0), (2.0, 0.0)])


def three_cones(n, seed=None):
    """Anil et al.'s three 2-D circular cones: P uniform on the points
    (-2, 0), (0, 0), (2, 0); Q picks one of them uniformly and a uniform
    point on the unit circle around it. W1(P, Q) = 1; the optimal critic is
    three cones of slope 1 centred at the points.

    Returns:
        `(p, q)`, two float32 arrays of shape `(n, 2)`.
    """
    n = _validation.positive_int("n", n)
    rng = _rng(seed)
    p = CONE_CENTRES[rng.integers(0, 3, n)]
    q = CONE_CENTRES[rng.integers(0, 3, n)] + _unit_sphere(rng, n, 2)
    return p.astype("float32"), q.astype("float32")


def circular_cone(n, dimension, seed=None):
    """Anil et al.'s n-dimensional cone: P = delta at the origin, Q uniform on
    the unit sphere of R^dimension. W1(P, Q) = 1; the optimal critic is
    f(x) = -||x||.

    Returns:
        `(p, q)`, two float32 arrays of shape `(n, dimension)`.
    """
    n = _validation.positive_int("n", n)
    dimension = _validation.positive_int("dimension", dimension)
    rng = _rng(seed)
    return np.zeros((n, dimension), "float32"), _unit_sphere(rng, n, dimension).astype("float32")


def digits(image_shape=(8, 8, 1)):
    """scikit-learn's 1797 8x8 digits, pixel values scaled from [0, 16] to [-1, 1].

    Args:
        image_shape: shape of one sample: `(8, 8, 1)` (channels last,
            default) or `(64,)` (flat).

    Returns:
        `(images, labels)`: float32 `(1797,) + image_shape` and int64 `(1797,)`.
    """
    from sklearn.datasets import load_digits

    image_shape = tuple(image_shape)
    if image_shape not in ((8, 8, 1), (64,)):
        raise ValueError(f"`image_shape` must be (8, 8, 1) or (64,), got {image_shape!r}.")
    data = load_digits()
    images = (data.data / 8.0 - 1.0).astype("float32").reshape((-1,) + image_shape)
    return images, data.target.astype("int64")
