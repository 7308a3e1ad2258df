"""The penalty registry is the one source of names, weights and tunable ranges.

`get`, the CLI, the tuner and the docs agree with it.
"""

import re
from pathlib import Path

import keras_tuner
import pytest

import tflip.tuner
from tflip import penalties
from tflip.cli import build_parser

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_every_registered_name_builds_its_class_with_the_constructor_arguments():
    for name, entry in penalties.REGISTRY.items():
        values = {parameter.name: parameter.default for parameter in entry.hyperparameters}
        if entry.weighted:
            values[penalties.WEIGHT.name] = 2.5
        penalty = penalties.get(name, seed=3, **entry.constructor_arguments(values))
        assert type(penalty) is entry.penalty_class and penalty.seed == 3
        assert (getattr(penalty, "weight", None) == 2.5) == entry.weighted
        assert penalties.get(entry.penalty_class.__name__) is not None
    alp = penalties.REGISTRY["alp"].constructor_arguments(
        {"alp_epsilon_low": 0.2, "alp_epsilon_high": 3.0, "alp_power_iterations": 2})
    assert alp == {"epsilon": (0.2, 3.0), "power_iterations": 2}


def test_get_maps_none_to_no_penalty_and_rejects_arguments_without_a_penalty():
    assert penalties.get("none") is None and penalties.get(None) is None
    with pytest.raises(ValueError, match="need a penalty"):
        penalties.get("none", weight=1.0)
    with pytest.raises(ValueError, match="'clip'"):
        penalties.get("xp")
    with pytest.raises(ValueError, match="has no `weight`"):
        penalties.REGISTRY["maxal"].constructor_arguments({penalties.WEIGHT.name: 1.0})
    with pytest.raises(ValueError, match="no hyperparameters"):
        penalties.REGISTRY["gp"].constructor_arguments({"alp_epsilon_low": 0.1})


def test_cli_and_tuner_offer_exactly_the_registered_penalties():
    demo = build_parser()._subparsers._group_actions[0].choices["demo"]
    choices = next(action.choices for action in demo._actions if action.dest == "penalty")
    assert set(choices) == set(penalties.NAMES) | {penalties.NONE}
    assert set(tflip.tuner.PENALTIES) == set(penalties.NAMES) | {penalties.NONE}


def test_tuner_registers_each_penalty_hyperparameter_with_its_registry_range():
    hypermodel = tflip.tuner.WassersteinCriticHyperModel(2, (TWO, TWO), penalties=tflip.tuner.PENALTIES)
    hp = keras_tuner.HyperParameters()
    hypermodel.build_penalty(hp)
    registered = {parameter.name: parameter for parameter in hp.space}
    expected = [penalties.WEIGHT] + [p for entry in penalties.REGISTRY.values() for p in entry.hyperparameters]
    for parameter in expected:
        found = registered[parameter.name]
        assert (found.min_value, found.max_value, found.default) == (parameter.low, parameter.high, parameter.default)
        assert isinstance(found, keras_tuner.engine.hyperparameters.Int) == parameter.integer
    weighted = {name for name, entry in penalties.REGISTRY.items() if entry.weighted}
    assert set(registered[penalties.WEIGHT.name].conditions[0].values) == weighted


TWO = [[0.0, 0.0], [1.0, 1.0]]


def _table_row(page, name):
    rows = [line for line in (DOCS / page).read_text().splitlines() if line.startswith(f"| `{name}` |")]
    assert len(rows) == 1, f"{page}: one table row for `{name}` expected, found {len(rows)}"
    return rows[0].split("|")[1:-1]


def test_the_tuner_guide_states_the_registry():
    names = "|".join(penalties.NAMES)
    _, values, _ = _table_row("tuner.md", "penalty")
    assert set(re.findall(rf"`({names}|{penalties.NONE})`", values)) == set(penalties.NAMES) | {penalties.NONE}
    parameters = [(penalties.WEIGHT, {n for n, e in penalties.REGISTRY.items() if e.weighted})] + [
        (parameter, {name}) for name, entry in penalties.REGISTRY.items() for parameter in entry.hyperparameters
    ]
    for parameter, active in parameters:
        _, values, when = _table_row("tuner.md", parameter.name)
        scale = "int range" if parameter.integer else "log range"
        assert f"{scale} `({parameter.low:g}, {parameter.high:g})`" in values, parameter.name
        assert set(re.findall(rf"\b({names})\b", when)) == active, parameter.name


def test_the_api_page_lists_every_name():
    page = (DOCS / "api" / "penalties.md").read_text()
    listed = re.search(r"resolved by `get` \(([^)]*)\)", page).group(1)
    assert re.findall(r'"(\w+)"', listed) == list(penalties.NAMES)


def test_penalty_space_restricts_registry_ranges_and_names_bad_ones():
    space = tflip.tuner.PenaltySpace(["alp"], {"penalty_weight": 4.0, "alp_power_iterations": (1, 2)})
    assert space.ranges["penalty_weight"] == (4.0, 4.0) and space.ranges["alp_power_iterations"] == (1, 2)
    assert space.ranges["alp_epsilon_low"] == penalties.REGISTRY["alp"].hyperparameters[0].range
    penalty = space.build(keras_tuner.HyperParameters(), seed=5)
    assert type(penalty) is penalties.AdversarialLipschitzPenalty and penalty.weight == 4.0 and penalty.seed == 5
    with pytest.raises(ValueError, match="Unknown penalty hyperparameters"):
        tflip.tuner.PenaltySpace(["gp"], {"weight": 1.0})
    with pytest.raises(ValueError, match="`alp_power_iterations`"):
        tflip.tuner.PenaltySpace(["alp"], {"alp_power_iterations": -1})
