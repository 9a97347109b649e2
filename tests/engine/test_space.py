"""Search spaces expand deterministically and flatten to dotted keys."""

from __future__ import annotations

import pytest

from runfleet import GridSearch, List, RandomSearch, Range
from runfleet.engine.space import SpaceError, flatten
from runfleet.fit import ConfigError, LoraConfig, ModelConfig, SFTConfig


def demo_space() -> GridSearch:
    return GridSearch(ModelConfig(
        model_name=List(["a", "b"]),
        peft_config=List([LoraConfig(r=8, target_modules=["q_proj", "v_proj"]),
                          LoraConfig(r=List([16, 32]), target_modules="all-linear")]),
        training_args=SFTConfig(learning_rate=List([1e-3, 1e-4]), max_steps=128)),
        trainer="sft")


def test_grid_is_the_product_in_a_fixed_order() -> None:
    configs = [flatten(c) for c in demo_space().expand()]
    assert len(configs) == 2 * 3 * 2
    assert [(c["model_name"], c["peft_config.r"], c["training_args.learning_rate"])
            for c in configs[:6]] == [("a", 8, 1e-3), ("a", 8, 1e-4), ("a", 16, 1e-3),
                                      ("a", 16, 1e-4), ("a", 32, 1e-3), ("a", 32, 1e-4)]
    assert configs[0]["peft_config.target_modules"] == ["q_proj", "v_proj"]
    assert [flatten(c) for c in demo_space().expand()] == configs


def test_random_search_is_seeded_and_respects_ranges() -> None:
    space = {"lr": Range(1e-5, 1e-2, log=True), "bs": Range(2, 8, dtype=int),
             "opt": List(["adam", "sgd"])}
    a = RandomSearch(space, num_runs=20, seed=3).expand()
    assert a == RandomSearch(space, num_runs=20, seed=3).expand()
    assert a != RandomSearch(space, num_runs=20, seed=4).expand()
    assert all(1e-5 <= c["lr"] <= 1e-2 and 2 <= c["bs"] <= 8 and isinstance(c["bs"], int)
               for c in a)
    assert {c["opt"] for c in a} == {"adam", "sgd"}


def test_bad_spaces_fail_with_the_key_named() -> None:
    with pytest.raises(SpaceError, match=r"training_args\.learning_rate is a Range"):
        GridSearch(ModelConfig(model_name="m", training_args=SFTConfig(
            learning_rate=Range(1e-4, 1e-3)))).expand()
    with pytest.raises(SpaceError, match="lo < hi"):
        Range(1.0, 0.5)
    with pytest.raises(SpaceError, match="lo > 0"):
        Range(0.0, 1.0, log=True)
    with pytest.raises(SpaceError, match="at least one"):
        List([])
    with pytest.raises(ConfigError, match=r"unknown argument 'learning_rat'.*learning_rate"):
        SFTConfig(learning_rat=1e-3)


def test_model_config_item_and_attribute_access() -> None:
    config = demo_space().expand()[0]
    assert config.model_name == config["model_name"] == "a"
    assert config.peft_config.r == 8
    with pytest.raises(AttributeError):
        config.model_name = "b"
