"""Small generator / critic factories for model tests."""

import keras


def mlp(inputs, outputs, width=32, depth=2, seed=0):
    layers = [keras.Input((inputs,))]
    for i in range(depth):
        layers.append(keras.layers.Dense(width, "relu", kernel_initializer=keras.initializers.GlorotUniform(seed + i)))
    layers.append(keras.layers.Dense(outputs, kernel_initializer=keras.initializers.GlorotUniform(seed + depth)))
    return keras.Sequential(layers)


def toy_gan(penalty="lp", n_critic=2, seed=0, **kwargs):
    from tflip.models import WGAN

    return WGAN(mlp(2, 2, seed=seed), mlp(2, 1, seed=seed + 10), latent_dim=2, penalty=penalty,
                n_critic=n_critic, **kwargs)


def adam():
    return keras.optimizers.Adam(1e-3, beta_1=0.5, beta_2=0.9)
