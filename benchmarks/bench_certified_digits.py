"""Certified L2 classification of the 8x8 digits with each tflip convolution family, beside deel-lip 1.5.

The same small convolutional classifier (two stages of two 3x3 convolutions
with 16 and 32 channels, MaxMin, 2x2 L2-norm pooling after each stage, a
dense layer of 64 and a linear layer of 10) is built from each family:

- `spectral`: SpectralNormConv2D / SpectralNormDense (largest singular value 1);
- `aol`: AOLConv2D / AOLDense (Prach and Lampert 2022, rescaled, no iteration);
- `orthogonal`: OrthogonalConv2D (BCOP, circular padding) / BjorckDense;
- `sll`: each stage an AOLConv2D (channel change) then SLLConv2D blocks
  (Araujo et al. 2023, residual, their own ReLU), head SLLDense + AOLDense,

and trained with the multiclass HKR loss (`tflip.losses.MulticlassHKR`) and
with the offset cross-entropy (`tflip.losses.OffsetCrossEntropy`), Adam with
a cosine decay. deel-lip 1.5's own layers (SpectralConv2D, SpectralDense,
GroupSort2, ScaledL2NormPooling2D, its MulticlassHKR; the offset
cross-entropy written in plain TF) build the network of the same size,
trained the same way on the same split in a second process with the peer
interpreter (`benchmarks/peer_certified_digits.py`, TF 2.15).

Certificates, computed by the same code for both libraries from test logits:

- `generic`: margin / (sqrt(2) L) with L the certified constant of the whole
  network: `tflip.lipschitz.lipschitz_upper_bound(model)` for tflip; for
  deel-lip the product of the exact operator norms of the layers of its
  `vanilla_export` (explicit-matrix SVD), since its nominal L = 1 rests on
  approximate iterations (the nominal value is reported too);
- `pairwise`: `tflip.metrics.pairwise_certified_radius` with the last
  layer's kernel and the certified constant of the network without it
  (never smaller than `generic`; the headline numbers).

Certified accuracy at eps (L2, pixels in [0, 1]) = fraction of test images
classified correctly with a certified radius above eps. For tflip the
certified points are also attacked with L2 PGD at each eps: none may break.

Data: scikit-learn's 1797 digits, pixels in [0, 1], the fixed stratified
split of `repro_anil_robustness.load_digits` (1347 training, 450 test).

Seeds: with `--seeds N` every (family, loss) and each deel-lip run is trained
N times, from different initialization and shuffling seeds on the same split
(seed index 0 keeps the seeds of the single-seed runs). The summary gives the
mean and standard deviation over seeds of each (family, loss); the comparison
picks tflip's best family on the mean and counts the seeds in which it beats
deel-lip's run of the same seed index.

Run: python benchmarks/bench_certified_digits.py [--smoke] [--seeds N] [--out DIR] [--no-peer]
"""

import json
import os
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from repro_anil_robustness import load_digits  # noqa: E402
from reproduction import reproduction_parser, run_costs, write_results  # noqa: E402

import tflip.layers as tflip_layers  # noqa: E402
from tflip.attacks import pgd  # noqa: E402
from tflip.callbacks import PowerIterationRefresh  # noqa: E402
from tflip.lipschitz import lipschitz_upper_bound  # noqa: E402
from tflip.losses import MulticlassHKR, OffsetCrossEntropy  # noqa: E402
from tflip.metrics import certified_radius, pairwise_certified_radius, prediction_margins  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUT = os.path.join(HERE, "results", "certified_digits")
PEER_SCRIPT = os.path.join(HERE, "peer_certified_digits.py")
EPSILONS = (0.1, 0.25, 0.5)
# Seed index s adds SEED_STRIDE * s to every run's seed: index 0 keeps the single-seed runs' seeds (10 * family +
# loss for tflip, loss for deel-lip), and the stride keeps the indices' seeds apart.
SEED_STRIDE = 1000
CURVE = tuple(np.round(np.linspace(0.0, 1.0, 41), 4))

LOSSES = (
    {"name": "hkr", "kind": "hkr", "alpha": 50.0, "margin": 1.0},
    {"name": "offset_ce", "kind": "offset_ce", "offset": 1.0, "temperature": 8.0},
)
FULL = {"stages": (16, 32), "convs_per_stage": 2, "dense": 64, "epochs": 60, "batch": 64, "learning_rate": 3e-3,
        "pgd_steps": 20, "train_samples": None, "test_samples": None}
SMOKE = {"stages": (4, 8), "convs_per_stage": 1, "dense": 8, "epochs": 1, "batch": 64, "learning_rate": 3e-3,
         "pgd_steps": 2, "train_samples": 128, "test_samples": 64}

# family -> the tflip layers it needs
FAMILY_LAYERS = {
    "spectral": ("SpectralNormConv2D", "SpectralNormDense"),
    "aol": ("AOLConv2D", "AOLDense"),
    "orthogonal": ("OrthogonalConv2D", "BjorckDense"),
    "sll": ("SLLConv2D", "SLLDense", "AOLConv2D", "AOLDense"),
}


def available_families():
    """Families whose layers (and L2NormPooling2D) are in `tflip.layers` at this commit, and the others."""
    present, missing = [], []
    for family, names in FAMILY_LAYERS.items():
        ok = all(hasattr(tflip_layers, n) for n in names + ("L2NormPooling2D",))
        (present if ok else missing).append(family)
    return present, missing


def build_classifier(family, config):
    """The benchmark's classifier built from one family's layers (see the module docstring)."""
    L = tflip_layers
    conv = {
        "spectral": lambda f: L.SpectralNormConv2D(f, 3, padding="same"),
        "aol": lambda f: L.AOLConv2D(f, 3, padding="same"),
        "orthogonal": lambda f: L.OrthogonalConv2D(f, 3),
        "sll": lambda f: L.AOLConv2D(f, 3, padding="same"),
    }[family]
    dense = {"spectral": L.SpectralNormDense, "aol": L.AOLDense, "orthogonal": L.BjorckDense, "sll": L.AOLDense}[family]
    layers = [keras.Input((8, 8, 1))]
    for filters in config["stages"]:
        layers += [conv(filters), L.MaxMin()]
        for _ in range(config["convs_per_stage"] - 1):
            if family == "sll":
                layers.append(L.SLLConv2D(filters, 3))
            else:
                layers += [conv(filters), L.MaxMin()]
        layers.append(L.L2NormPooling2D(2))
    layers.append(keras.layers.Flatten())
    if family == "sll":
        layers.append(L.SLLDense(config["dense"]))
    else:
        layers += [dense(config["dense"]), L.MaxMin()]
    layers.append(dense(10))
    return keras.Sequential(layers, name=f"{family}_classifier")


def make_loss(spec):
    if spec["kind"] == "hkr":
        return MulticlassHKR(alpha=spec["alpha"], margin=spec["margin"])
    return OffsetCrossEntropy(offset=spec["offset"], temperature=spec["temperature"])


def train(model, spec, train_data, config, seed):
    keras.utils.set_random_seed(seed)
    steps = config["epochs"] * -(-len(train_data[1]) // config["batch"])
    schedule = keras.optimizers.schedules.CosineDecay(config["learning_rate"], steps, alpha=0.05)
    model.compile(keras.optimizers.Adam(schedule), loss=make_loss(spec))
    start = time.perf_counter()
    # The refresh converges the power-iteration vectors of spectral layers at the start and end of training
    # (one step per batch lags a moving kernel); it leaves layers without power iteration alone.
    model.fit(*train_data, batch_size=config["batch"], epochs=config["epochs"], shuffle=True, verbose=0,
              callbacks=[PowerIterationRefresh()])
    return time.perf_counter() - start


def certificates(logits, labels, lipschitz, last_kernel, backbone_lipschitz):
    """Radii of the generic and pairwise certificates, and certified accuracies on `EPSILONS` and `CURVE`."""
    margins = prediction_margins(logits, labels)
    radii = {
        "generic": certified_radius(margins, lipschitz).numpy(),
        "pairwise": pairwise_certified_radius(logits, labels, last_kernel, backbone_lipschitz).numpy(),
    }
    out = {"clean_accuracy": float(np.mean(margins.numpy() > 0))}
    for name, r in radii.items():
        out[name] = {f"{e}": float(np.mean(r > e)) for e in EPSILONS}
        out[f"{name}_curve"] = [float(np.mean(r > e)) for e in CURVE]
    return out, radii


def evaluate_tflip(model, test_data, config):
    x, y = test_data
    logits = model.predict(x, batch_size=512, verbose=0)
    lipschitz = lipschitz_upper_bound(model)
    backbone = keras.Model(model.inputs, model.layers[-2].output)
    backbone_lipschitz = lipschitz_upper_bound(backbone)
    result, radii = certificates(logits, y, lipschitz, model.layers[-1], backbone_lipschitz)
    result.update(lipschitz_upper_bound=lipschitz, backbone_lipschitz_upper_bound=backbone_lipschitz)
    # Soundness check: L2 PGD on the certified points must never change their prediction.
    broken = {}
    for eps in EPSILONS:
        certified = radii["pairwise"] > eps
        if not np.any(certified):
            broken[f"{eps}"] = 0
            continue
        adversarial = pgd(model, x[certified], y[certified], epsilon=eps, step_size=2.5 * eps / config["pgd_steps"],
                          steps=config["pgd_steps"], norm=2, random_start=True, seed=0)
        predictions = np.argmax(model.predict(adversarial, batch_size=512, verbose=0), axis=1)
        broken[f"{eps}"] = int(np.sum(predictions != y[certified]))
    result["certified_but_broken_by_pgd"] = broken
    return result


def tflip_seed(family, loss_index, seed_index):
    """The init and shuffling seed of one tflip run (fixed by the family's name, not by which families run)."""
    return 10 * list(FAMILY_LAYERS).index(family) + loss_index + SEED_STRIDE * seed_index


def run_peer(config, train_data, test_data, workdir, seeds=1):
    """Trains deel-lip's networks in the peer interpreter, `seeds` times each; returns its results or why not."""
    peer_python = os.environ.get("PEER_PY", "/tmp/tflip_peer_venv/bin/python")
    if not os.path.exists(peer_python):
        return {"unavailable": f"no peer interpreter at {peer_python} (source /work/shared/tools/peer_env.sh)"}
    data_path = os.path.join(workdir, "digits_split.npz")
    np.savez(data_path, x_train=train_data[0], y_train=train_data[1], x_test=test_data[0], y_test=test_data[1])
    config_path = os.path.join(workdir, "peer_config.json")
    peer_config = {key: config[key] for key in ("stages", "convs_per_stage", "dense", "epochs", "batch",
                                                  "learning_rate")}
    peer_config.update(input_shape=[8, 8, 1], losses=list(LOSSES), seeds=[SEED_STRIDE * s for s in range(seeds)])
    with open(config_path, "w") as handle:
        json.dump(peer_config, handle)
    out_path = os.path.join(workdir, "peer_results.json")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run([peer_python, PEER_SCRIPT, data_path, config_path, out_path], capture_output=True,
                          text=True, env=env)
    if done.returncode != 0:
        return {"unavailable": "peer run failed: " + done.stderr[-2000:]}
    with open(out_path) as handle:
        return json.load(handle)


def evaluate_peer(peer, labels, learning_rate):
    """Certificates of deel-lip's runs from their test logits and exported bounds, by the code used for tflip."""
    results = []
    for r in peer["results"]:
        seed = r.get("seed", 0)
        if "failed" in r:
            print(f"deel-lip {r['loss']} [seed {seed}]: no certificate ({r['failed']})")
            continue
        if r["learning_rate"] != learning_rate:
            # The peer retries a non-finite run at a lower rate: say so, tflip had no such second chance.
            print(f"deel-lip {r['loss']} [seed {seed}]: trained at learning rate {r['learning_rate']:g}, "
                  f"not {learning_rate:g}")
        logits = np.asarray(r["logits"], np.float32)
        result, _ = certificates(logits, labels, r["lipschitz_numeric"], np.asarray(r["last_kernel"], np.float32),
                                 r["backbone_lipschitz_numeric"])
        nominal, _ = certificates(logits, labels, 1.0, np.asarray(r["last_kernel"], np.float32), 1.0)
        result.update(
            family="deel-lip", loss=r["loss"], seed=seed, train_seconds=r["train_seconds"],
            parameters=r["parameters"],
            learning_rate=r["learning_rate"],
            lipschitz_upper_bound=r["lipschitz_numeric"],
            backbone_lipschitz_upper_bound=r["backbone_lipschitz_numeric"],
            layer_norms=r["layer_norms"], nominal_lipschitz_1={"generic": nominal["generic"],
                                                               "pairwise": nominal["pairwise"]},
            export_max_abs_difference=r["export_max_abs_difference"])
        results.append(result)
    return results


def _mean_std(values):
    """Mean and sample standard deviation (None for a single value) of a list of numbers."""
    values = np.asarray(values, np.float64)
    return float(np.mean(values)), (float(np.std(values, ddof=1)) if len(values) > 1 else None)


def aggregate(results):
    """One row per (family, loss), in the order of `results`: means and standard deviations over its seeds.

    Each row has `seeds` (the seed indices it averages), `clean_accuracy` / `clean_accuracy_std`, `pairwise` /
    `pairwise_std` and `generic` / `generic_std` (dicts over the eps), the mean `pairwise_curve`, and the mean
    `lipschitz_upper_bound` and `train_seconds`. A standard deviation is None for a single seed.
    """
    groups = {}
    for r in results:
        groups.setdefault((r["family"], r["loss"]), []).append(r)
    rows = []
    for (family, loss), runs in groups.items():
        row = {"family": family, "loss": loss, "seeds": [r.get("seed", 0) for r in runs]}
        row["clean_accuracy"], row["clean_accuracy_std"] = _mean_std([r["clean_accuracy"] for r in runs])
        for certificate in ("pairwise", "generic"):
            stats = {f"{e}": _mean_std([r[certificate][f"{e}"] for r in runs]) for e in EPSILONS}
            row[certificate] = {eps: mean for eps, (mean, _) in stats.items()}
            row[f"{certificate}_std"] = {eps: std for eps, (_, std) in stats.items()}
        row["pairwise_curve"] = np.mean([r["pairwise_curve"] for r in runs], axis=0).tolist()
        row["lipschitz_upper_bound"] = float(np.mean([r["lipschitz_upper_bound"] for r in runs]))
        row["train_seconds"] = float(np.mean([r["train_seconds"] for r in runs]))
        rows.append(row)
    return rows


def plot(rows, path, seeds=1):
    """Pairwise certified accuracy against eps, one panel per loss, of the (seed-mean) rows of `aggregate`."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(11, 4.2), dpi=100)
    FigureCanvasAgg(figure)
    for panel, spec in enumerate(LOSSES):
        axes = figure.add_subplot(1, len(LOSSES), panel + 1)
        for i, r in enumerate(r for r in rows if r["loss"] == spec["name"]):
            style = "--" if r["family"] == "deel-lip" else "-"
            axes.plot(CURVE, r["pairwise_curve"], style, color=f"C{i}", label=r["family"])
        for eps in EPSILONS:
            axes.axvline(eps, color="0.85", lw=0.8, zorder=0)
        axes.set_xlabel("L2 radius eps (pixels in [0, 1])")
        axes.set_ylabel("certified test accuracy" + (f" (mean of {seeds} seeds)" if seeds > 1 else ""))
        axes.set_ylim(0.0, 1.0)
        axes.set_title(f"8x8 digits, {spec['name']} (pairwise certificate)", fontsize=10)
        axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path)


def comparison(results, rows):
    """Best tflip family vs deel-lip at each eps (pairwise certificate), per loss and over both losses.

    Both sides are chosen on their seed means (`rows` from `aggregate`); `seeds_won` counts the seeds in which
    the chosen tflip (family, loss) beats the chosen deel-lip loss's run of the same seed index, out of
    `seeds_compared` seeds that both have.
    """
    runs = {(r["family"], r["loss"], r.get("seed", 0)): r for r in results}
    verdict = {}
    for loss in [s["name"] for s in LOSSES] + ["any"]:
        ours = [r for r in rows if r["family"] != "deel-lip" and loss in ("any", r["loss"])]
        peer = [r for r in rows if r["family"] == "deel-lip" and loss in ("any", r["loss"])]
        if not ours or not peer:
            continue
        table = {}
        for eps in [f"{e}" for e in EPSILONS]:
            best = max(ours, key=lambda r: r["pairwise"][eps])
            peer_best = max(peer, key=lambda r: r["pairwise"][eps])
            shared = sorted(set(best["seeds"]) & set(peer_best["seeds"]))
            won = sum(runs[(best["family"], best["loss"], s)]["pairwise"][eps]
                      > runs[("deel-lip", peer_best["loss"], s)]["pairwise"][eps] for s in shared)
            table[eps] = {"tflip_best": best["pairwise"][eps], "tflip_best_std": best["pairwise_std"][eps],
                          "tflip_family": f"{best['family']}/{best['loss']}",
                          "deel_lip": peer_best["pairwise"][eps], "deel_lip_std": peer_best["pairwise_std"][eps],
                          "deel_lip_loss": peer_best["loss"],
                          "tflip_wins": best["pairwise"][eps] > peer_best["pairwise"][eps],
                          "seeds_won": int(won), "seeds_compared": len(shared)}
        verdict[loss] = table
    return verdict


def _percent(mean, std):
    """`mean` in percent, with `± std` when there is a standard deviation."""
    return f"{100 * mean:.1f}" + ("" if std is None else f" ± {100 * std:.1f}")


def format_table(rows):
    """Markdown table of the rows of `aggregate`: seed means, with ± the standard deviation over several seeds."""
    lines = ["| family | loss | seeds | clean | " + " | ".join(f"cert. {e}" for e in EPSILONS)
             + " | generic cert. " + " / ".join(f"{e}" for e in EPSILONS) + " | L bound | train s |",
             "|" + " --- |" * (len(EPSILONS) + 7)]
    for r in rows:
        cells = [_percent(r["pairwise"][f"{e}"], r["pairwise_std"][f"{e}"]) for e in EPSILONS]
        generic = " / ".join(_percent(r["generic"][f"{e}"], r["generic_std"][f"{e}"]) for e in EPSILONS)
        lines.append(f"| {r['family']} | {r['loss']} | {len(r['seeds'])} | "
                     f"{_percent(r['clean_accuracy'], r['clean_accuracy_std'])} | " + " | ".join(cells)
                     + f" | {generic} | {r['lipschitz_upper_bound']:.4f} | {r['train_seconds']:.0f} |")
    return "\n".join(lines)


def main(argv=None):
    parser = reproduction_parser(__doc__, DEFAULT_OUT, "tiny networks, one epoch, no PGD to speak of (tests)")
    parser.add_argument("--no-peer", action="store_true", help="skip deel-lip (second process)")
    parser.add_argument("--families", default=None, help="comma-separated subset of " + ",".join(FAMILY_LAYERS))
    parser.add_argument("--epochs", type=int, default=None, help="override the number of training epochs")
    parser.add_argument("--seeds", type=int, default=1,
                        help="train every (family, loss) and deel-lip this many times (seed indices 0..N-1)")
    parser.add_argument("--reuse-tflip", action="store_true",
                        help="take the tflip results from OUT/results.json and only (re)run deel-lip")
    args = parser.parse_args(argv)
    if args.seeds < 1:
        parser.error("--seeds must be at least 1")
    config = dict(SMOKE if args.smoke else FULL)
    if args.epochs is not None:
        config["epochs"] = args.epochs
    tf.get_logger().setLevel("ERROR")  # one model per family and loss: Keras' retracing warnings are expected
    os.makedirs(args.out, exist_ok=True)
    start, cpu_start = time.perf_counter(), time.process_time()
    train_data, test_data = load_digits(0)
    train_data = (train_data[0].reshape(-1, 8, 8, 1), train_data[1])
    test_data = (test_data[0].reshape(-1, 8, 8, 1), test_data[1])
    if config["train_samples"]:
        train_data = tuple(a[: config["train_samples"]] for a in train_data)
        test_data = tuple(a[: config["test_samples"]] for a in test_data)

    present, missing = available_families()
    if args.families:
        wanted = args.families.split(",")
        unknown = set(wanted) - set(FAMILY_LAYERS)
        if unknown:
            parser.error(f"--families: unknown {sorted(unknown)}")
        present = [f for f in present if f in wanted]
    for family in missing:
        print(f"{family}: not available yet")

    results = []
    if args.reuse_tflip:
        with open(os.path.join(args.out, "results.json")) as handle:
            results = [r for r in json.load(handle)["results"] if r["family"] != "deel-lip"]
        for r in results:
            r.setdefault("seed", 0)  # results files from before --seeds hold seed index 0 only
        present = []
    # Seed-major order: a run cut short has already printed whole seeds of every family.
    for seed_index in range(args.seeds):
        for family in present:
            for j, spec in enumerate(LOSSES):
                seed = tflip_seed(family, j, seed_index)
                keras.utils.set_random_seed(seed)
                model = build_classifier(family, config)
                seconds = train(model, spec, train_data, config, seed=seed)
                result = evaluate_tflip(model, test_data, config)
                result.update(family=family, loss=spec["name"], seed=seed_index, train_seconds=seconds,
                              parameters=int(model.count_params()))
                results.append(result)
                print(f"tflip {family} / {spec['name']} [seed {seed_index}]: clean "
                      f"{100 * result['clean_accuracy']:.1f}%, certified "
                      + ", ".join(f"{e}: {100 * result['pairwise'][f'{e}']:.1f}%" for e in EPSILONS)
                      + f", L <= {result['lipschitz_upper_bound']:.4f} [{seconds:.0f} s]", flush=True)

    peer = {"unavailable": "--no-peer"} if args.no_peer else None
    if peer is None:
        with tempfile.TemporaryDirectory() as workdir:
            peer = run_peer(config, train_data, test_data, workdir, seeds=args.seeds)
    if "unavailable" in peer:
        print(f"deel-lip: {peer['unavailable'][:300]}")
        peer_versions = None
    else:
        results += evaluate_peer(peer, test_data[1], config["learning_rate"])
        peer_versions = {"tensorflow": peer["tensorflow"], "deel_lip": peer["deel_lip"]}

    rows = aggregate(results)
    # With --reuse-tflip the tflip rows hold the seeds of the reused file, whatever --seeds says.
    seeds_run = max((len(row["seeds"]) for row in rows), default=args.seeds)
    table = format_table(rows)
    print(table)
    verdict = comparison(results, rows)
    for loss, by_eps in verdict.items():
        for eps, row in by_eps.items():
            print(f"{loss} eps {eps}: tflip best {_percent(row['tflip_best'], row['tflip_best_std'])}% "
                  f"({row['tflip_family']}) vs deel-lip {_percent(row['deel_lip'], row['deel_lip_std'])}% "
                  f"({row['deel_lip_loss']}): {'tflip ahead' if row['tflip_wins'] else 'deel-lip ahead or tied'} "
                  f"on the mean, tflip ahead in {row['seeds_won']} of {row['seeds_compared']} seeds")
    pictures = {}
    if results:
        plot(rows, os.path.join(args.out, "certified_accuracy.png"), seeds=seeds_run)
        pictures["certified_accuracy"] = "certified_accuracy.png"
    summary = {
        "command": "python benchmarks/bench_certified_digits.py" + (" --smoke" if args.smoke else "")
        + (f" --seeds {args.seeds}" if args.seeds > 1 else ""),
        "mode": "smoke" if args.smoke else "full",
        "reused_tflip_results": args.reuse_tflip,
        "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in config.items()},
        "seeds": seeds_run,
        "seed_stride": SEED_STRIDE,
        "losses": list(LOSSES),
        "epsilons": list(EPSILONS),
        "curve_epsilons": [float(e) for e in CURVE],
        "train_samples": int(len(train_data[1])),
        "test_samples": int(len(test_data[1])),
        "families_missing": missing,
        "peer": peer.get("unavailable", peer_versions),
        "peer_failures": {f"{r['loss']}/seed {r.get('seed', 0)}": r["failed"]
                          for r in peer.get("results", []) if "failed" in r},
        "results": results,
        "summary": rows,
        "comparison": verdict,
        "table": table,
        "pictures": pictures,
        **run_costs(start, cpu_start),
    }
    write_results(args.out, summary)
    return summary


if __name__ == "__main__":
    main()
