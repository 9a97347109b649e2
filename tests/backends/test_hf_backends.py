"""The HF/TRL backends driven directly (no worker, no controller): what is particular to
them (adapter slots on a shared base, data formats, DPO and GRPO numerics). The contract
every backend keeps (chunk equivalence, stop and resume, warm starts, state round trips,
close after a failure) is in ``test_conformance.py``.
"""

from __future__ import annotations

import copy
import math
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from runfleet.backends.hf import DatasetFormatError, DPOBackend, GRPOBackend, SFTBackend, slots
from runfleet.backends.hf.data import check_columns, sft_tokens
from runfleet.backends.hf.slots import shared_base
from runfleet.demo import build_demo_model, build_tiny_llama, load_model, pretrain, train_tokenizer
from runfleet.engine.backend import NonFiniteLossError, WorkerResources
from runfleet.engine.backend import backend_class as backend_for
from runfleet.engine.spec import RunSpec
from runfleet.fit import LoraConfig, ModelConfig, SFTConfig
from runfleet.fit.metrics import bleu, rouge_l, rouge_l_and_bleu
from tests.backends.conftest import state_tensors
from tests.backends.hf_configs import (
    NUM_TRAIN,
    dpo_config,
    grpo_config,
    lora,
    make_spec,
    resources_for,
    sft_config,
)

# -- helpers ----------------------------------------------------------------------------------

def train_chunk(spec: RunSpec, res: WorkerResources, state: dict[str, Any] | None,
                start: int, end: int, evaluate: bool = False
                ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """What the worker does for one chunk: open, steps, (eval), state, close."""
    backend = backend_for(spec.trainer)(spec, res)
    backend.open(state)
    try:
        metrics = [backend.train_step(s, spec.plan.batch_indices(s)) for s in range(start, end)]
        if evaluate:
            assert backend.evaluate()
        return metrics, backend.state()
    finally:
        backend.close()


def train_alone(spec: RunSpec, res: WorkerResources) -> tuple[list[float], dict[str, Any]]:
    metrics, state = train_chunk(spec, res, None, 0, spec.plan.total_steps)
    return [m["loss"] for m in metrics], state


def train_interleaved(spec: RunSpec, other: RunSpec, res: WorkerResources
                      ) -> tuple[list[float], dict[str, Any]]:
    """``spec`` chunk by chunk, with a chunk of ``other`` before each, all on ``res``."""
    losses: list[float] = []
    state: dict[str, Any] | None = None
    other_state: dict[str, Any] | None = None
    for (start, end), (o_start, o_end) in zip(spec.plan.chunks, other.plan.chunks):
        _, other_state = train_chunk(other, res, other_state, o_start, o_end, evaluate=True)
        metrics, state = train_chunk(spec, res, state, start, end, evaluate=True)
        losses += [m["loss"] for m in metrics]
    assert state is not None
    return losses, state


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.mark.parametrize("uses_lora", [True, False], ids=["lora", "full"])
def test_resuming_leaves_the_given_state_unchanged(uses_lora: bool, tiny_model: str,
                                                   instructions: Any, preferences: Any) -> None:
    # the worker keeps states in a host RAM cache: a retry or a warm clone reads them again
    spec = make_spec("sft", sft_config(tiny_model, lora() if uses_lora else None), steps=4)
    res = resources_for("sft", instructions, preferences)
    _, state = train_chunk(spec, res, None, 0, 2)
    kept = copy.deepcopy(state)
    losses_first, _ = train_chunk(spec, res, state, 2, 4)
    losses_again, _ = train_chunk(spec, res, state, 2, 4)
    assert losses_first == losses_again
    for part in ("weights", "optimizer"):
        flat_kept, flat_now = state_tensors(kept[part]), state_tensors(state[part])
        assert len(flat_kept) == len(flat_now) > 0
        assert all(torch.equal(a, b) for a, b in zip(flat_kept, flat_now))


def test_lora_runs_leave_base_weights_untouched(tiny_model: str, instructions: Any,
                                                preferences: Any) -> None:
    res = resources_for("sft", instructions, preferences)
    original = AutoModelForCausalLM.from_pretrained(tiny_model).state_dict()
    full = make_spec("sft", sft_config(tiny_model, None), run_id="full", steps=2)
    train_chunk(full, res, None, 0, 2)  # leaves its own weights in the shared module
    for rank in (4, 8):  # two LoRA structures: two adapter slots stay on the module
        config = sft_config(tiny_model, lora(rank))
        train_chunk(make_spec("sft", config, run_id=f"lora{rank}", steps=2), res, None, 0, 2)

    base = shared_base(res, config)
    assert len(base.slots) == 2
    under_adapters = {k.replace(".base_layer.", "."): v for k, v in base.model.state_dict().items()
                      if "lora_" not in k}
    assert_same_weights(original, under_adapters)
    # full fine-tuning gets the plain module back
    plain = shared_base(res, sft_config(tiny_model, None))
    assert plain is base and base.peft is None and not base.slots
    assert not any("lora" in name for name, _ in base.model.named_modules())
    assert_same_weights(original, base.model.state_dict())


def test_failed_run_without_close_does_not_leak_its_adapter(
        tiny_model: str, instructions: Any, preferences: Any) -> None:
    res = resources_for("sft", instructions, preferences)
    spec = make_spec("sft", sft_config(tiny_model, lora()), steps=2)
    SFTBackend(spec, res).open(None)  # never closed, as if the run crashed
    losses, _ = train_alone(spec, res)
    assert losses == train_alone(spec, resources_for("sft", instructions, preferences))[0]


# -- adapter slots ---------------------------------------------------------------------------
def dora() -> LoraConfig:
    # DoRA's magnitude vector is not re-initialised by PEFT's reset: its slot is re-created
    return LoraConfig(r=4, lora_alpha=8, lora_dropout=0.1, target_modules=["q_proj", "v_proj"],
                      use_dora=True)


def with_modules_to_save() -> LoraConfig:
    # a whole trained copy of o_proj, which the other run's LoRA wraps: it needs the base alone
    return LoraConfig(r=4, target_modules=["q_proj"], modules_to_save=["o_proj"])


# trainer, config, adapter, batch size, and whether each slot left on the worker is
# re-initialised in place (sorted): DoRA and modules_to_save slots are re-created instead
SLOT_CASES = {
    "sft": ("sft", sft_config, lora, 4, [True, True]),
    "sft-dora": ("sft", sft_config, dora, 4, [False, True]),
    "sft-modules-to-save": ("sft", sft_config, with_modules_to_save, 4, [False]),
    "dpo": ("dpo", dpo_config, lora, 4, [True, True]),
    "grpo": ("grpo", grpo_config, lora, 2, [True, True]),
}


@pytest.mark.parametrize("case", list(SLOT_CASES))
def test_lora_runs_of_two_structures_share_a_worker_exactly(
        case: str, tiny_model: str, instructions: Any, preferences: Any) -> None:
    trainer, make_config, adapter, batch, resettable = SLOT_CASES[case]
    config = make_config(tiny_model, adapter())
    other_config = make_config(tiny_model, lora(8), lr=1e-2)  # a second slot on the base
    alone = make_spec(trainer, config, chunks=1, batch_size=batch)
    losses_alone, state_alone = train_alone(
        alone, resources_for(trainer, instructions, preferences))

    res = resources_for(trainer, instructions, preferences)
    chunked = make_spec(trainer, config, chunks=4, batch_size=batch)
    other = make_spec(trainer, other_config, run_id="other", chunks=4, seed=5, batch_size=batch)
    losses_chunked, state_chunked = train_interleaved(chunked, other, res)

    assert max(abs(a - b) for a, b in zip(losses_alone, losses_chunked)) <= 1e-6
    assert_same_weights(state_alone["weights"], state_chunked["weights"])
    slots = shared_base(res, config).slots.values()
    assert sorted(s.resettable for s in slots) == resettable


@pytest.mark.parametrize("adapter", [lora, dora], ids=["lora", "dora"])
def test_a_fresh_run_starts_alike_in_a_reused_or_a_new_slot(
        adapter: Any, tiny_model: str, instructions: Any, preferences: Any) -> None:
    spec = make_spec("sft", sft_config(tiny_model, adapter()), steps=3)
    res = resources_for("sft", instructions, preferences)
    # a run of the same structure trains the slot first, then the fresh run takes it over
    train_alone(make_spec("sft", sft_config(tiny_model, adapter(), lr=1e-2), run_id="before",
                          steps=3, seed=9), res)
    reused_losses, reused = train_alone(spec, res)
    new_losses, new = train_alone(spec, resources_for("sft", instructions, preferences))
    assert reused_losses == new_losses
    assert_same_weights(reused["weights"], new["weights"])


@pytest.mark.parametrize("limit", [1, 2, 8], ids=["one-slot", "evicting", "resident"])
def test_only_the_active_slot_trains(limit: int, tiny_model: str, instructions: Any,
                                     preferences: Any, monkeypatch: pytest.MonkeyPatch
                                     ) -> None:
    monkeypatch.setattr(slots, "MAX_ADAPTER_SLOTS", limit)
    res = resources_for("dpo", instructions, preferences)
    ranks = (4, 8, 16, 4)
    for opened, rank in enumerate(ranks, start=1):
        spec = make_spec("dpo", dpo_config(tiny_model, lora(rank)), run_id=f"r{rank}")
        backend = DPOBackend(spec, res)
        backend.open(None)
        model, run = backend.run.model, backend.run
        trainable = [p for p in model.parameters() if p.requires_grad]
        assert [id(p) for p in trainable] == [id(p) for p in run.params]
        assert [id(p) for p in run.optimizer.param_groups[0]["params"]] == [
            id(p) for p in run.params]
        assert {tuple(p.shape) for p in run.params} >= {(rank, 32)}
        # the reference policy (all adapters off) hands training back to this slot only
        backend.train_step(0, spec.plan.batch_indices(0))
        assert [id(p) for p in model.parameters() if p.requires_grad] == [
            id(p) for p in run.params]
        backend.close()
        assert len(shared_base(res, spec.config).slots) == min(limit, len(set(ranks[:opened])))


def test_lora_options_that_would_change_the_shared_base_are_refused(
        tiny_model: str, instructions: Any, preferences: Any) -> None:
    res = resources_for("sft", instructions, preferences)
    for options, message in [({"init_lora_weights": "pissa"}, "rewrites the base"),
                             ({"bias": "all"}, "trains the base model's biases")]:
        config = sft_config(tiny_model, LoraConfig(r=4, target_modules=["q_proj"], **options))
        with pytest.raises(ValueError, match=message):
            SFTBackend(make_spec("sft", config), res).open(None)


# -- warm and cold starts (clones) ------------------------------------------------------------
def warm(state: dict[str, Any]) -> dict[str, Any]:
    """What the worker passes a warm clone: the parent's state, marked."""
    return {**state, "warm_start": True}


@pytest.mark.parametrize("uses_lora", [True, False], ids=["lora", "full"])
def test_warm_start_continues_from_the_parents_weights(
        uses_lora: bool, tiny_model: str, instructions: Any, preferences: Any) -> None:
    no_dropout = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules="all-linear")
    adapter = no_dropout if uses_lora else None
    res = resources_for("sft", instructions, preferences)
    parent = make_spec("sft", sft_config(tiny_model, adapter), run_id="parent", steps=8)
    _, parent_state = train_chunk(parent, res, None, 0, 4)
    kept = copy.deepcopy(parent_state)
    child = make_spec("sft", sft_config(tiny_model, adapter, lr=1e-2), run_id="child",
                      steps=8, seed=3)
    first = child.plan.batch_indices(0)
    # the parent's loss on the child's first batch, with the weights the child starts from
    parent_next = SFTBackend(parent, res)
    parent_next.open(parent_state)
    parent_loss = parent_next.train_step(4, first)["loss"]
    parent_next.close()

    backend = SFTBackend(child, res)
    backend.open(warm(parent_state))
    after_open = torch.get_rng_state()
    step = backend.train_step(0, first)
    optimizer = backend.run.optimizer
    backend.close()

    assert math.isfinite(parent_loss)
    assert abs(step["loss"] - parent_loss) <= 0.05 * parent_loss
    assert step["loss"] == pytest.approx(parent_loss, abs=1e-6)  # the same weights exactly
    # the parent's Adam moments go on (step 4 -> 5), at the child's own learning rate
    assert all(int(s["step"]) == 5 for s in optimizer.state.values())
    assert optimizer.param_groups[0]["initial_lr"] == 1e-2
    # a fresh schedule (warmup from 0 at step 0) and fresh RNG from the child's seed
    fresh = SFTBackend(child, resources_for("sft", instructions, preferences))
    fresh.open(None)
    fresh_step = fresh.train_step(0, first)
    fresh.close()
    assert step["learning_rate"] == fresh_step["learning_rate"] == 0.0
    torch.manual_seed(3)
    assert torch.equal(after_open, torch.get_rng_state())
    # the parent's cached state is untouched (other clones and retries read it again)
    for part in ("weights", "optimizer"):
        assert all(torch.equal(a, b) for a, b in zip(state_tensors(kept[part]),
                                                     state_tensors(parent_state[part])))


def test_cold_start_equals_a_fresh_run(tiny_model: str, instructions: Any,
                                       preferences: Any) -> None:
    res = resources_for("sft", instructions, preferences)
    parent = make_spec("sft", sft_config(tiny_model, lora()), run_id="parent", steps=4)
    train_alone(parent, res)  # leaves its trained adapter slot on the worker
    child = make_spec("sft", sft_config(tiny_model, lora(), lr=1e-2), run_id="child", steps=4)
    cold, _ = train_alone(child, res)
    fresh, _ = train_alone(child, resources_for("sft", instructions, preferences))
    assert cold[0] == fresh[0] and cold == fresh


def test_warm_start_with_another_adapter_shape_is_refused(
        tiny_model: str, instructions: Any, preferences: Any) -> None:
    res = resources_for("sft", instructions, preferences)
    parent = make_spec("sft", sft_config(tiny_model, lora(4)), run_id="parent", steps=4)
    _, state = train_chunk(parent, res, None, 0, 2)
    child = make_spec("sft", sft_config(tiny_model, lora(8)), run_id="child", steps=4)
    with pytest.raises(ValueError, match=r"warm start needs the parent's adapter shapes: "
                                         r".*lora_A\.weight is \[4, 32\] there, \[8, 32\] here"):
        SFTBackend(child, res).open(warm(state))
    full_child = make_spec("sft", sft_config(tiny_model, None), run_id="full", steps=4)
    with pytest.raises(ValueError, match="the parent's state is lora weights"):
        SFTBackend(full_child, res).open(warm(state))


# -- DPO and GRPO ---------------------------------------------------------------------------
@pytest.mark.parametrize("uses_lora", [True, False], ids=["lora", "full"])
def test_dpo_trains_and_evaluates(uses_lora: bool, tiny_model: str, instructions: Any,
                                  preferences: Any) -> None:
    spec = make_spec("dpo", dpo_config(tiny_model, lora() if uses_lora else None), steps=3)
    backend = DPOBackend(spec, resources_for("dpo", instructions, preferences))
    backend.open(None)
    steps = [backend.train_step(s, spec.plan.batch_indices(s)) for s in range(3)]
    evaluation = backend.evaluate()
    backend.close()
    keys = {"loss", "learning_rate", "grad_norm", "rewards/chosen", "rewards/rejected",
            "rewards/accuracies", "rewards/margins"}
    for metrics in steps:
        assert keys <= metrics.keys()
        assert all(math.isfinite(v) for v in metrics.values())
    # the policy starts as the reference: log-sigmoid(0)
    assert steps[0]["loss"] == pytest.approx(math.log(2), abs=1e-5)
    assert {"eval_loss", "eval_rewards/accuracies"} <= evaluation.keys()
    assert math.isfinite(evaluation["eval_loss"])


def test_reference_policy_leaves_the_model_mode_as_it_was(
        tiny_model: str, instructions: Any, preferences: Any) -> None:
    backend = DPOBackend(make_spec("dpo", dpo_config(tiny_model, lora())),
                         resources_for("dpo", instructions, preferences))
    backend.open(None)
    model = backend.run.model
    for training in (True, False):
        model.train(training)
        with backend.run.reference() as reference:
            assert reference is model and not model.training
        assert model.training is training
    backend.close()


@pytest.mark.parametrize("uses_lora", [True, False], ids=["lora", "full"])
def test_grpo_trains_and_evaluates(uses_lora: bool, tiny_model: str, instructions: Any,
                                   preferences: Any) -> None:
    config = grpo_config(tiny_model, lora() if uses_lora else None, beta=0.1)
    spec = make_spec("grpo", config, steps=3, batch_size=2)
    backend = GRPOBackend(spec, resources_for("grpo", instructions, preferences))
    backend.open(None)
    steps = [backend.train_step(s, spec.plan.batch_indices(s)) for s in range(3)]
    evaluation = backend.evaluate()
    backend.close()
    keys = {"loss", "learning_rate", "grad_norm", "reward", "reward_std",
            "completion_length", "kl", "rewards/reward_short", "rewards/reward_exact"}
    for metrics in steps:
        assert keys <= metrics.keys()
        assert all(math.isfinite(v) for v in metrics.values())
        assert 1 <= metrics["completion_length"] <= 6
    assert steps[0]["kl"] == pytest.approx(0.0, abs=1e-6)  # the policy starts as the reference
    assert math.isfinite(evaluation["eval_reward"])


def test_grpo_without_reward_funcs_fails_before_training(
        tiny_model: str, instructions: Any, preferences: Any) -> None:
    config = grpo_config(tiny_model, lora())
    no_rewards = config.with_values({**config.as_dict(), "reward_funcs": None})
    backend = GRPOBackend(make_spec("grpo", no_rewards, batch_size=2),
                          resources_for("grpo", instructions, preferences))
    with pytest.raises(ValueError, match="reward_funcs"):
        backend.open(None)


# -- evaluation -----------------------------------------------------------------------------
def test_compute_metrics_on_generations(tiny_model: str, instructions: Any,
                                        preferences: Any) -> None:
    config = sft_config(tiny_model, lora(), compute_metrics=rouge_l_and_bleu)
    spec = make_spec("sft", config, steps=2)
    backend = SFTBackend(spec, resources_for("sft", instructions, preferences))
    backend.open(None)
    backend.train_step(0, spec.plan.batch_indices(0))
    first, second = backend.evaluate(), backend.evaluate()
    backend.close()
    assert {"eval_loss", "eval_rougeL", "eval_bleu"} <= first.keys()
    assert first == second  # greedy and RNG-isolated
    assert 0.0 <= first["eval_rougeL"] <= 1.0 and 0.0 <= first["eval_bleu"] <= 100.0


def test_evaluate_without_eval_dataset_is_empty(tiny_model: str, instructions: Any) -> None:
    res = WorkerResources(device="cpu", train_dataset=instructions.select(range(NUM_TRAIN)),
                          eval_dataset=None, create_model_fn=load_model)
    backend = SFTBackend(make_spec("sft", sft_config(tiny_model, lora()), steps=2), res)
    backend.open(None)
    assert backend.evaluate() == {}
    backend.close()


def test_ready_made_text_metrics() -> None:
    assert rouge_l(["the cat sat"], ["the cat sat"]) == {"rougeL": 1.0}
    assert bleu(["elppa", "7"], ["elppa", "7"])["bleu"] == pytest.approx(100.0)
    assert rouge_l_and_bleu([], []) == {"rougeL": 0.0, "bleu": 0.0}
    with pytest.raises(ValueError, match="2 predictions but 1 references"):
        rouge_l(["a", "b"], ["a"])


# -- faults ---------------------------------------------------------------------------------
def test_nan_loss_raises_a_clear_error(tiny_model: str, instructions: Any,
                                       preferences: Any) -> None:
    def poisoned(config: Any) -> tuple[Any, Any]:
        model, tokenizer = load_model(config)
        with torch.no_grad():
            model.get_input_embeddings().weight.fill_(float("nan"))
        return model, tokenizer

    res = resources_for("sft", instructions, preferences, create_model_fn=poisoned)
    spec = make_spec("sft", sft_config(tiny_model, lora()), run_id="bad", steps=2)
    backend = SFTBackend(spec, res)
    backend.open(None)
    with pytest.raises(NonFiniteLossError, match=r"run bad \(sft\): loss is nan at step 0"):
        backend.train_step(0, spec.plan.batch_indices(0))


def test_wrong_dataset_columns_fail_before_training(tiny_model: str, instructions: Any,
                                                    preferences: Any) -> None:
    spec = make_spec("dpo", dpo_config(tiny_model, lora()))
    res = resources_for("sft", instructions, preferences)  # prompt/completion, not pairs
    with pytest.raises(DatasetFormatError, match="prompt, chosen and rejected"):
        DPOBackend(spec, res).open(None)
    with pytest.raises(DatasetFormatError, match="prompt\\+completion, messages or text"):
        check_columns(preferences.remove_columns(["prompt"]), "sft",
                      sft_config(tiny_model, None), SimpleNamespace(dataset_text_field="text"))


def test_unsupported_sft_options_are_refused(tiny_model: str, instructions: Any,
                                             preferences: Any) -> None:
    config = ModelConfig(model_name=tiny_model, training_args=SFTConfig(packing=True))
    backend = SFTBackend(make_spec("sft", config), resources_for("sft", instructions, preferences))
    with pytest.raises(ValueError, match="packing"):
        backend.open(None)


# -- data formats ---------------------------------------------------------------------------
def test_sft_formats_mask_what_is_not_trained(tiny_model: str, instructions: Any,
                                              preferences: Any) -> None:
    tok = AutoTokenizer.from_pretrained(tiny_model)
    eos = tok.eos_token_id

    ids, mask = sft_tokens({"prompt": "Add 2 and 2\nAnswer:", "completion": " 4"}, tok, eos, None)
    prompt_len = len(tok("Add 2 and 2\nAnswer:").input_ids)
    assert ids[0] == tok.bos_token_id and ids[-1] == eos
    assert mask == [0] * prompt_len + [1] * (len(ids) - prompt_len)
    assert tok.decode(ids[prompt_len:], skip_special_tokens=True) == " 4"

    res = resources_for("sft", instructions, preferences)
    args = SFTConfig(completion_only_loss=False, per_device_train_batch_size=4)
    backend = SFTBackend(make_spec("sft", ModelConfig(model_name=tiny_model,
                                                      training_args=args)), res)
    backend.open(None)
    assert all(backend.train_rows[0][1])  # the prompt is trained on too
    backend.close()

    ids, mask = sft_tokens({"text": "hello"}, tok, eos, None)
    assert ids[-1] == eos and all(mask)

    ids, _ = sft_tokens({"q": "x"}, tok, eos, lambda row: f"Q: {row['q']}")
    assert tok.decode(ids, skip_special_tokens=True) == "Q: x"

    chat = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]
    ids, mask = sft_tokens({"messages": chat}, tok, eos, None)
    assert tok.decode(ids) == "<s>user: hi\nassistant: yo</s>" and all(mask)

    ids, mask = sft_tokens({"prompt": chat[:1], "completion": chat[1:]}, tok, eos, None)
    trained = [t for t, m in zip(ids, mask) if m]
    assert tok.decode(trained) == " yo</s>"


# -- demo model helpers ---------------------------------------------------------------------
def test_tiny_model_round_trips_through_from_pretrained(tmp_path: Any) -> None:
    tok = train_tokenizer(["Reverse the word: apple", "elppa", "Add 3 and 4", "7"] * 8,
                          vocab_size=300)
    path = build_tiny_llama(tmp_path / "m", tok, hidden_size=32, num_layers=1, num_heads=2)
    again = build_tiny_llama(tmp_path / "m2", tok, hidden_size=32, num_layers=1, num_heads=2)
    model, loaded_tok = load_model(ModelConfig(model_name=path))

    text = "Reverse the word: apple"
    assert loaded_tok(text).input_ids == tok(text).input_ids
    assert loaded_tok.decode(loaded_tok(text).input_ids, skip_special_tokens=True) == text
    assert (loaded_tok.pad_token, loaded_tok.bos_token, loaded_tok.eos_token) == (
        "<pad>", "<s>", "</s>")
    assert loaded_tok.chat_template == tok.chat_template
    assert model.config.vocab_size == len(tok) <= 300
    assert_same_weights(model.state_dict(),
                        AutoModelForCausalLM.from_pretrained(again).state_dict())
    with pytest.raises(ValueError, match="vocab_size"):
        train_tokenizer(["x"], vocab_size=100)


def test_demo_model_is_pretrained_deterministically(tmp_path: Any) -> None:
    rng_before = torch.get_rng_state()
    first = build_demo_model(tmp_path / "a", hidden_size=32, pretrain_steps=4)
    second = build_demo_model(tmp_path / "b", hidden_size=32, pretrain_steps=4)
    assert torch.equal(torch.get_rng_state(), rng_before)  # the caller's RNG is untouched
    model, tokenizer = load_model(ModelConfig(model_name=first))
    assert_same_weights(model.state_dict(),
                        AutoModelForCausalLM.from_pretrained(second).state_dict())
    assert len(tokenizer) == model.config.vocab_size == 512


def test_pretrain_lowers_the_loss(tiny_model: str, instructions: Any) -> None:
    model, tokenizer = load_model(ModelConfig(model_name=tiny_model))
    losses = pretrain(model, tokenizer, list(instructions["prompt"][:16]), steps=12, lr=1e-2)
    assert len(losses) == 12 and losses[-1] < losses[0]
