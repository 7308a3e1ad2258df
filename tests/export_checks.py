"""Helpers of the export tests: walking nested models, running an exported `.keras` file without tflip."""

import json
import os
import subprocess
import sys

import keras
import numpy as np


def all_layers(model):
    """Every layer of `model` and of the models nested in it (at any depth)."""
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from all_layers(layer)


def outputs_in_fresh_process(model, x, tmp_path):
    """`model` saved as `.keras`, loaded and called on `x` in a new Python process that never imports tflip."""
    path = tmp_path / "plain.keras"
    model.save(path)
    np.save(tmp_path / "x.npy", x)
    script = (
        "import sys, json, numpy as np, keras\n"
        f"m = keras.models.load_model({str(path)!r})\n"
        "assert 'tflip' not in sys.modules\n"
        f"print(json.dumps(np.asarray(m(np.load({str(tmp_path / 'x.npy')!r}))).tolist()))\n"
    )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return np.array(json.loads(out.stdout.strip().splitlines()[-1]))
