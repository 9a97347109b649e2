"""HF/TRL trainer backends: ``trainer="sft" | "dpo" | "grpo"`` on transformers causal LMs.

We own the training loop. TRL's trainers own data order and training state, which would
break chunk equivalence, so we only take their *configs*: the run's ``training_args``
(a TRL ``SFTConfig`` / ``DPOConfig`` / ``GRPOConfig``) gives learning rate, batch sizes,
accumulation, clipping, schedule, ``max_length``, DPO ``beta``, GRPO sampling settings;
``peft_config`` (a ``peft.LoraConfig``, or None for full fine-tuning) gives the adapter.

Every backend follows the recipe of :mod:`runfleet.backends.base`:

- ``open``: build the TRL config; take the worker's shared base model (loaded once per
  model name, see :class:`SharedBase`); put the run on it (:class:`RunModel`: its LoRA
  structure's adapter slot, or the run's full weights) with its optimizer and LR schedule;
  restore the saved state, RNG last (or, for a warm clone, start from the parent's weights
  and optimizer state with a fresh schedule and RNG);
- ``train_step``: forward/backward the step's examples in ``gradient_accumulation_steps``
  micro-batches, check the loss is finite, clip, step;
- ``evaluate``: eval loss (SFT, DPO) or reward (GRPO) in eval mode with the RNG put back
  afterwards, plus ``compute_metrics`` on greedy generations;
- ``state`` / ``close``: CPU copies of adapter or weights, optimizer, schedule and RNG;
  then leave the adapter slot (or the run's weights) for the next run to overwrite.

Swaps are cheap because PEFT's adapter injection happens once per LoRA structure per
worker: the runs of one structure take turns in one adapter slot, copying their tensors in
and out (:class:`AdapterSlot`).

Exactness: a fresh run seeds, then initialises its adapter slot in place the same way
whether the slot is new or reused; a resumed run restores adapter, optimizer, schedule and
finally RNG; evaluation never moves the training RNG; the engine chooses the examples.
So a run swapped on and off a worker every chunk computes the same steps as a run trained
in one go (bit for bit on CPU).

Dataset formats (TRL's standard ones): SFT ``prompt``/``completion`` (loss on the completion
only), ``messages`` (chat template), ``text`` (``dataset_text_field``), or any row with
``formatting_func(row) -> str``; DPO ``prompt``/``chosen``/``rejected``; GRPO ``prompt``
(other columns reach the reward functions as keyword lists). Prompts and completions may
be strings or lists of chat messages.

What each trainer honours beyond the common settings: SFT ``max_length``,
``completion_only_loss``, ``dataset_text_field`` (``packing`` and ``assistant_only_loss``
are refused); DPO ``beta``, ``label_smoothing``, ``max_length`` (sigmoid loss only); GRPO
``num_generations``, ``max_completion_length``, ``temperature``, ``top_p``, ``top_k``,
``beta``, ``scale_rewards``, ``reward_weights``. For GRPO every index of a step is one
prompt; each prompt's group of completions is sampled with the run's RNG and trained in one
on-policy update (so PPO clipping, ``epsilon`` and ``loss_type`` do not apply), one group
per backward pass. Precision is the model's own dtype, as ``create_model_fn`` loaded it.
"""

from __future__ import annotations

import copy
import math
import os
import tempfile
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from runfleet.backends.base import (
    Backend,
    NonFiniteLossError,
    WorkerResources,
    cpu_copy,
    register,
    rng_state,
    seed_everything,
    set_rng_state,
)
from runfleet.backends.optim import (
    clip_and_step,
    load_optimizer_state,
    make_optimizer,
    make_scheduler,
)
from runfleet.engine.spec import RunSpec

MAX_EVAL_GENERATIONS = 16  # eval prompts generated for compute_metrics / GRPO eval_reward
DEFAULT_MAX_NEW_TOKENS = 32
_UNUSED_OUTPUT_DIR = os.path.join(tempfile.gettempdir(), "runfleet-unused")

Tokens = tuple[list[int], list[int]]  # token ids, and 1 where the token is trained on


class DatasetFormatError(ValueError):
    """A dataset lacks the columns its trainer needs; the message says which."""


# -- the shared base model ----------------------------------------------------------------
@dataclass
class AdapterSlot:
    """One LoRA structure resident on the shared base: an adapter that the runs with this
    structure take turns in. Swapping a run in copies its saved tensors into the slot; a
    fresh run re-initialises the slot in place (PEFT's adapter injection costs far more
    than a chunk's swap may)."""

    name: str  # the PEFT adapter name
    init: Any  # the config's ``init_lora_weights``
    tensors: dict[str, torch.Tensor]  # saved-state key (no adapter name) -> the slot's tensor
    params: list[torch.Tensor]  # trainable while active, in module order (optimizer order)
    layers: list[Any]  # the LoRA layers holding the slot, in module order
    resettable: bool  # fresh init by ``reset_lora_parameters``, else by creating it again
    alone: bool  # wraps whole modules (``modules_to_save``): no other slot beside it

    def reinitialise(self, seed: int) -> None:
        """Seed, then initialise every LoRA layer of the slot in module order, as PEFT does
        when it creates the adapter: the same weights whether the slot is new or reused."""
        seed_everything(seed)
        with torch.no_grad():
            for layer in self.layers:
                layer.reset_lora_parameters(self.name, self.init)


@dataclass
class SharedBase:
    """A base model loaded once per worker per model name, shared by the runs on it.

    ``pristine`` is a CPU copy of the base weights, taken before the first full fine-tuning
    run writes its own weights into the module (``dirty``); LoRA runs put it back first.
    LoRA runs stay on the module between runs as adapter slots (``peft`` wraps ``model``
    while there are any), one per distinct LoRA structure; full fine-tuning, and the
    references computed from the base, remove them first (:meth:`drop_adapters`).
    Invariant: while there are slots, the base weights are pristine.
    """

    model: Any
    tokenizer: Any
    pad_id: int
    eos_id: int
    pristine: dict[str, torch.Tensor] | None = None
    dirty: bool = False
    reference: Any = None  # frozen pristine copy (GRPO full fine-tuning with a KL term)
    peft: Any = None  # the PeftModel wrapping ``model`` while it holds adapter slots
    slots: dict[str, AdapterSlot] = field(default_factory=dict)  # by structure, LRU first
    slots_made: int = 0

    def ensure_pristine_copy(self) -> None:
        """Keep a CPU copy of the base weights before anything overwrites them."""
        if self.pristine is None:
            self.pristine = cpu_copy(self.model.state_dict())

    def restore_pristine(self) -> None:
        """Put the base weights back if a full fine-tuning run left its own in the module."""
        if self.dirty:
            assert self.pristine is not None
            self.model.load_state_dict(self.pristine)
            self.dirty = False

    def drop_adapters(self) -> None:
        """Remove every adapter slot: ``model`` is the plain base model again."""
        if self.peft is not None:
            self.peft.unload()
            self.peft = None
            self.slots.clear()

    def lora_slot(self, cfg: Any, seed: int | None) -> AdapterSlot:
        """The active adapter slot for the built ``peft.LoraConfig`` ``cfg``, created on
        first use; re-initialised from ``seed`` for a fresh run (None: the caller loads
        saved tensors into it). Only the slot's parameters are trainable afterwards."""
        self.restore_pristine()
        key = slot_key(cfg)
        slot = self.slots.pop(key, None)
        if slot is not None and seed is not None and not slot.resettable:
            self._delete(slot)  # its creation is its initialisation: create it again
            slot = None
        if slot is None:
            if _needs_base_alone(cfg) or any(s.alone for s in self.slots.values()):
                self.drop_adapters()  # PEFT cannot put these beside adapters of others
            elif len(self.slots) >= MAX_ADAPTER_SLOTS:
                self._delete(self.slots.pop(next(iter(self.slots))))  # least recently used
            slot = self._create(cfg, seed)
        self.slots[key] = slot  # most recently used last
        if not self._only_trainable(slot):
            self.peft.set_adapter(slot.name)
            if not self._only_trainable(slot):
                raise RuntimeError(f"PEFT left parameters outside adapter {slot.name} "
                                   "trainable; the run would train the shared base")
        if seed is not None and slot.resettable:
            slot.reinitialise(seed)
        for param in slot.params:  # a run that failed mid-step leaves its gradients
            param.grad = None
        return slot

    def _only_trainable(self, slot: AdapterSlot) -> bool:
        trainable = [p for p in self.peft.parameters() if p.requires_grad]
        return len(trainable) == len(slot.params) and all(
            a is b for a, b in zip(trainable, slot.params))

    def _create(self, cfg: Any, seed: int | None) -> AdapterSlot:
        import peft
        from peft.tuners.lora import LoraLayer

        # no adapter name may be a substring of another (PEFT strips ".<name>" from keys)
        name = f"slot{self.slots_made}_"
        self.slots_made += 1
        try:
            self._inject(name, cfg, seed)
        except Exception:
            beside_others = bool(self.slots)
            self.drop_adapters()  # PEFT may have injected part of it
            if not beside_others:
                raise
            self._inject(name, cfg, seed)  # once more, on the plain base
        by_key = peft.get_peft_model_state_dict(
            self.peft, state_dict=self.peft.state_dict(keep_vars=True), adapter_name=name,
            save_embedding_layers=False)
        tensors: dict[str, torch.Tensor] = dict(by_key)
        params = [p for p in self.peft.parameters() if p.requires_grad]
        layers = [m for m in self.peft.modules() if isinstance(m, LoraLayer)
                  and (name in m.lora_A or name in m.lora_embedding_A)]
        saved = {id(t) for t in tensors.values()}
        if not all(id(p) in saved for p in params):
            self.drop_adapters()
            raise ValueError(f"{_describe(cfg)} trains parameters that PEFT does not save "
                             "with the adapter, so runs could not be swapped exactly")
        init = cfg.init_lora_weights
        plain_lora = all(".lora_A." in k or ".lora_B." in k or ".lora_embedding_" in k
                         for k in tensors)
        resettable = (plain_lora and len(saved) == len(params)
                      and (init is True or (isinstance(init, str) and init.lower() == "gaussian"))
                      and not any(name in getattr(m, "lora_variant", {}) for m in layers))
        return AdapterSlot(name, init, tensors, params, layers, resettable,
                           alone=_needs_base_alone(cfg))

    def _inject(self, name: str, cfg: Any, seed: int | None) -> None:
        import peft

        if seed is not None:
            seed_everything(seed)  # creation draws random numbers
        cfg = copy.deepcopy(cfg)  # PEFT keeps the config and fills in fields
        with quiet_deprecations():
            if self.peft is None:
                self.peft = peft.get_peft_model(self.model, cfg, adapter_name=name)
            else:
                self.peft.add_adapter(name, cfg)
                self.peft.set_adapter(name)

    def _delete(self, slot: AdapterSlot) -> None:
        if self.slots:
            self.peft.delete_adapter(slot.name)
        else:
            self.drop_adapters()


MAX_ADAPTER_SLOTS = 8  # distinct LoRA structures kept on one base (adapter memory is small)

# Inits that rewrite the base weights (PiSSA and kin subtract the adapter from them, LoftQ
# quantises them): the base is shared by every run on the worker, so they cannot be used.
_BASE_REWRITING_INITS = ("pissa", "corda", "olora", "loftq", "lora_ga")


def _needs_base_alone(cfg: Any) -> bool:
    """Whether the adapter wraps whole modules, which PEFT cannot do beside other adapters."""
    return bool(cfg.modules_to_save or cfg.trainable_token_indices)


def check_lora_config(cfg: Any) -> None:
    """Refuse LoRA options that would change the shared base model for the other runs."""
    init = cfg.init_lora_weights
    if isinstance(init, str) and init.lower().startswith(_BASE_REWRITING_INITS):
        raise ValueError(f"LoraConfig(init_lora_weights={init!r}) rewrites the base model's "
                         "weights, which runfleet shares between runs; use True or 'gaussian'")
    if cfg.bias != "none":
        raise ValueError(f"LoraConfig(bias={cfg.bias!r}) trains the base model's biases, which "
                         "runfleet shares between runs; use bias='none' (or lora_bias=True)")
    if cfg.layer_replication:
        raise ValueError("LoraConfig(layer_replication=...) changes the base model's layers, "
                         "which runfleet shares between runs")


def slot_key(cfg: Any) -> str:
    """The LoRA structure of a built ``peft.LoraConfig``: runs with equal keys can share an
    adapter slot. Every field counts except those PEFT fills in from the base model."""
    fields = {k: v for k, v in cfg.to_dict().items()
              if k not in ("base_model_name_or_path", "revision")}
    return _canonical(fields)


def _canonical(value: Any) -> str:
    if isinstance(value, dict):
        items = sorted((str(k), _canonical(v)) for k, v in value.items())
        return "{" + ", ".join(f"{k}: {v}" for k, v in items) + "}"
    if isinstance(value, (set, frozenset)):
        return "{" + ", ".join(sorted(_canonical(v) for v in value)) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_canonical(v) for v in value) + "]"
    return repr(getattr(value, "value", value))  # enums by value


def _describe(cfg: Any) -> str:
    return f"LoraConfig(r={cfg.r}, target_modules={cfg.target_modules!r})"


def load_adapter(slot: AdapterSlot, weights: dict[str, torch.Tensor], *, warm_start: bool,
                 run_id: str) -> None:
    """Copy saved adapter tensors into ``slot`` in place; raise ValueError naming what
    does not fit (keys or shapes) before changing anything."""
    missing = [k for k in slot.tensors if k not in weights]
    unexpected = [k for k in weights if k not in slot.tensors]
    shapes = [f"{_short_key(k)} is {list(weights[k].shape)} there, {list(t.shape)} here"
              for k, t in slot.tensors.items() if k in weights and weights[k].shape != t.shape]
    if missing or unexpected or shapes:
        problems = shapes[:2] + [f"{what} {[_short_key(k) for k in keys[:3]]}"
                                 for what, keys in (("missing", missing),
                                                    ("unexpected", unexpected)) if keys]
        detail = "; ".join(problems) + (f" (and {len(shapes) - 2} more shapes)"
                                        if len(shapes) > 2 else "")
        if warm_start:
            raise ValueError(f"warm start needs the parent's adapter shapes: {detail} "
                             f"(run {run_id}; clone it cold to change the adapter)")
        raise ValueError(f"run {run_id}: saved adapter does not fit the model: {detail}")
    with torch.no_grad():
        for key, tensor in slot.tensors.items():
            tensor.copy_(weights[key])


def _short_key(key: str) -> str:
    return key.removeprefix("base_model.model.")


def shared_base(resources: WorkerResources, config: Any) -> SharedBase:
    """The worker's base model for ``config.model_name``, loading it on first use. For full
    fine-tuning the module comes without adapter slots: the run and the references
    computed from the base (DPO, GRPO) need the plain model."""
    key = ("hf.base", config["model_name"])
    base: SharedBase | None = resources.cache.get(key)
    if base is None:
        model, tokenizer = resources.create_model_fn(config)
        if tokenizer.eos_token_id is None:
            raise ValueError(f"the tokenizer of {config['model_name']!r} has no EOS token")
        pad = tokenizer.pad_token_id
        base = SharedBase(model.to(resources.device), tokenizer,
                          pad_id=tokenizer.eos_token_id if pad is None else pad,
                          eos_id=tokenizer.eos_token_id)
        resources.cache[key] = base
    if config["peft_config"] is None:
        base.drop_adapters()
    return base


def training_args(spec: RunSpec) -> Any:
    """The run's TRL config, built (wrappers) or as given (real TRL objects)."""
    import trl

    args = spec.config["training_args"]
    with quiet_deprecations():
        if args is None:
            default = {"sft": trl.SFTConfig, "dpo": trl.DPOConfig, "grpo": trl.GRPOConfig}
            return default[spec.trainer](output_dir=_UNUSED_OUTPUT_DIR, report_to="none",
                                         bf16=False, save_strategy="no")
        return args.build(output_dir=_UNUSED_OUTPUT_DIR) if hasattr(args, "build") else args


@contextmanager
def quiet_deprecations() -> Iterator[None]:
    """Hide FutureWarnings that transformers raises on its own defaults (and on peft's use
    of renamed attributes): they are not the user's to fix."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        yield


class RunModel:
    """One run on the shared base: its LoRA adapter slot (or its full weights in the
    module), optimizer over the trainable parameters in module order, and LR schedule.

    ``state`` is None for a fresh run, a saved state to resume, or a parent's state with
    ``"warm_start": True`` (a warm clone): then the run starts from the parent's weights and
    optimizer state with its own fresh LR schedule and RNG seeded from ``spec.seed``.
    """

    def __init__(self, spec: RunSpec, args: Any, base: SharedBase,
                 state: dict[str, Any] | None) -> None:
        lora = spec.config["peft_config"]
        self.base, self.args = base, args
        self.is_lora = lora is not None
        warm = bool(state is not None and state.get("warm_start"))
        kind = "lora" if self.is_lora else "full"
        if state is not None and state["kind"] != kind:
            whose = "the parent's" if warm else "saved"
            raise ValueError(f"run {spec.run_id}: {whose} state is {state['kind']} weights, "
                             f"but the config asks for {kind} fine-tuning")
        if self.is_lora:
            cfg = lora.build() if hasattr(lora, "build") else lora
            check_lora_config(cfg)
            self.slot = base.lora_slot(cfg, seed=spec.seed if state is None else None)
            if state is not None:
                load_adapter(self.slot, state["weights"], warm_start=warm, run_id=spec.run_id)
            self.model = base.peft
            self.params = self.slot.params
        else:
            base.drop_adapters()
            base.ensure_pristine_copy()
            if state is not None:
                base.model.load_state_dict(state["weights"])
            else:
                base.restore_pristine()
                seed_everything(spec.seed)  # dropout draws random numbers
            base.dirty = True
            self.model = base.model
            self.model.requires_grad_(True)
            self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = make_optimizer(self.params, args)
        self.scheduler = make_scheduler(self.optimizer, args, spec.plan.total_steps)
        if state is not None:
            load_optimizer_state(self.optimizer, state["optimizer"], warm_start=warm)
        if warm:
            seed_everything(spec.seed)  # a run of its own: fresh schedule (above) and RNG
        elif state is not None:
            self.scheduler.load_state_dict(state["scheduler"])
            set_rng_state(state["rng"])  # last, so nothing above moves it
        self.model.train()

    def step(self) -> tuple[float, float]:
        """Clip, step optimizer and schedule; return (grad_norm, learning rate used)."""
        return clip_and_step(self.params, self.optimizer, self.scheduler, self.args.max_grad_norm)

    @contextmanager
    def reference(self) -> Iterator[Any]:
        """The reference policy in eval mode without gradients: the base with the adapter
        disabled (LoRA) or a frozen pristine copy (full fine-tuning)."""
        with torch.no_grad():
            if self.is_lora:
                with eval_mode(self.model), self.model.disable_adapter():
                    yield self.model
            else:
                yield frozen_reference(self.base)

    def state(self) -> dict[str, Any]:
        """CPU copies of the trainable weights, optimizer, schedule and RNG."""
        weights = self.slot.tensors if self.is_lora else self.model.state_dict()
        return {"kind": "lora" if self.is_lora else "full", "weights": cpu_copy(weights),
                "optimizer": cpu_copy(self.optimizer.state_dict()),
                "scheduler": self.scheduler.state_dict(), "rng": rng_state()}

    def close(self) -> None:
        """Take the run off the base: its adapter slot stays for the next run of the same
        structure (which overwrites it), or the module's weights are frozen (the next run
        replaces them)."""
        self.optimizer.zero_grad(set_to_none=True)
        if not self.is_lora:
            self.model.requires_grad_(False)
        del self.optimizer, self.scheduler, self.params, self.model


def frozen_reference(base: SharedBase) -> Any:
    """A frozen eval-mode copy of the pristine base (made once per worker and model)."""
    if base.reference is None:
        ref = copy.deepcopy(base.model)
        if base.dirty:
            assert base.pristine is not None
            ref.load_state_dict(base.pristine)
        base.reference = ref.requires_grad_(False).eval()
    return base.reference


# -- text to tokens -------------------------------------------------------------------------
def _is_chat(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(m, dict) and "role" in m for m in value)


def render_chat(tokenizer: Any, messages: list[dict[str, Any]],
                add_generation_prompt: bool = False) -> str:
    """Messages as text: the tokenizer's chat template, else ``role: content`` lines."""
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(messages, tokenize=False,
                                             add_generation_prompt=add_generation_prompt)
        return str(text)
    lines = [f"{m['role']}: {m['content']}" for m in messages]
    return "\n".join(lines) + ("\nassistant:" if add_generation_prompt else "")


def _encode(tokenizer: Any, text: str, special: bool) -> list[int]:
    return list(tokenizer(text, add_special_tokens=special)["input_ids"])


def prompt_ids(tokenizer: Any, prompt: Any) -> list[int]:
    """Token ids of a prompt (a string, or chat messages opening an assistant turn)."""
    if _is_chat(prompt):  # the template writes its own special tokens
        return _encode(tokenizer, render_chat(tokenizer, prompt, True), special=False)
    return _encode(tokenizer, str(prompt), special=True)


def prompt_completion_tokens(tokenizer: Any, prompt: Any, completion: Any, eos: int) -> Tokens:
    """Prompt then completion ids (ending with EOS), trained on the completion only."""
    head = prompt_ids(tokenizer, prompt)
    if _is_chat(prompt) or _is_chat(completion):
        before = render_chat(tokenizer, _as_chat(prompt), True)
        whole = render_chat(tokenizer, _as_chat(prompt) + _as_chat(completion, "assistant"))
        text = whole[len(before):] if whole.startswith(before) else _content(completion)
    else:
        text = str(completion)
    tail = _encode(tokenizer, text, special=False)
    if not tail or tail[-1] != eos:
        tail.append(eos)
    return head + tail, [0] * len(head) + [1] * len(tail)


def _as_chat(value: Any, role: str = "user") -> list[dict[str, Any]]:
    return list(value) if _is_chat(value) else [{"role": role, "content": str(value)}]


def _content(value: Any) -> str:
    """The text of a completion: a string, or the content of its last message."""
    return str(value[-1]["content"]) if _is_chat(value) else str(value)


def sft_tokens(row: dict[str, Any], tokenizer: Any, eos: int,
               formatting_func: Callable[[dict[str, Any]], str] | None,
               text_field: str = "text") -> Tokens:
    """One SFT row as token ids and a loss mask (see the module docstring for formats)."""
    if formatting_func is not None:
        ids = _encode(tokenizer, formatting_func(row), special=True)
    elif "prompt" in row and "completion" in row:
        return prompt_completion_tokens(tokenizer, row["prompt"], row["completion"], eos)
    elif "messages" in row:
        templated = bool(getattr(tokenizer, "chat_template", None))
        ids = _encode(tokenizer, render_chat(tokenizer, row["messages"]), special=not templated)
    else:
        ids = _encode(tokenizer, str(row[text_field]), special=True)
    if not ids or ids[-1] != eos:
        ids.append(eos)
    return ids, [1] * len(ids)


def check_columns(dataset: Any, trainer: str, config: Any, args: Any) -> None:
    """Raise :class:`DatasetFormatError` unless ``dataset`` has what ``trainer`` needs."""
    if dataset is None:
        raise DatasetFormatError(f"trainer {trainer!r} needs a train dataset")
    columns = set(dataset.column_names)
    if trainer == "sft":
        text_field = getattr(args, "dataset_text_field", "text")
        ok = (config["formatting_func"] is not None or {"prompt", "completion"} <= columns
              or "messages" in columns or text_field in columns)
        need = f"prompt+completion, messages or {text_field} (or a formatting_func)"
    elif trainer == "dpo":
        ok, need = {"prompt", "chosen", "rejected"} <= columns, "prompt, chosen and rejected"
    else:
        ok, need = "prompt" in columns, "prompt"
    if not ok:
        raise DatasetFormatError(f"the {trainer.upper()} dataset needs the columns {need}; "
                                 f"it has {sorted(columns)}")


class TokenCache:
    """Rows of one dataset turned into tokens once per worker, lazily by index."""

    def __init__(self, dataset: Any, tokenize: Callable[[dict[str, Any]], Any]) -> None:
        self.dataset, self.tokenize = dataset, tokenize
        self.done: dict[int, Any] = {}

    def __getitem__(self, index: int) -> Any:
        if index not in self.done:
            self.done[index] = self.tokenize(self.dataset[index])
        return self.done[index]

    def __len__(self) -> int:
        return len(self.dataset)


def token_cache(resources: WorkerResources, key: tuple[Any, ...], dataset: Any,
                tokenize: Callable[[dict[str, Any]], Any]) -> TokenCache:
    """The worker's :class:`TokenCache` under ``key`` (which must name the dataset)."""
    full_key = ("hf.tokens", *key, id(dataset))
    cache: TokenCache | None = resources.cache.get(full_key)
    if cache is None or cache.dataset is not dataset:
        cache = resources.cache[full_key] = TokenCache(dataset, tokenize)
    return cache


def function_key(func: Callable[..., Any] | None) -> str | None:
    """A cache key for a user function that survives pickling: workers unpickle a new
    function object with every task, so identity would miss the cache every chunk."""
    if func is None:
        return None
    import hashlib

    import cloudpickle

    return hashlib.sha256(cloudpickle.dumps(func)).hexdigest()


def collate(examples: Sequence[Tokens], max_length: int | None, pad: int,
            device: str) -> dict[str, torch.Tensor]:
    """Right-padded ``input_ids``, ``attention_mask`` and ``loss_mask`` (truncated)."""
    cut = [(ids[:max_length], mask[:max_length]) if max_length else (ids, mask)
           for ids, mask in examples]
    width = max(len(ids) for ids, _ in cut)
    input_ids = torch.full((len(cut), width), pad, dtype=torch.long)
    attention = torch.zeros((len(cut), width), dtype=torch.long)
    loss_mask = torch.zeros((len(cut), width), dtype=torch.long)
    for row, (ids, mask) in enumerate(cut):
        input_ids[row, :len(ids)] = torch.tensor(ids)
        attention[row, :len(ids)] = 1
        loss_mask[row, :len(ids)] = torch.tensor(mask)
    return {"input_ids": input_ids.to(device), "attention_mask": attention.to(device),
            "loss_mask": loss_mask.to(device)}


# -- shared numerics ------------------------------------------------------------------------
def token_logps(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor
                ) -> torch.Tensor:
    """``log p(token t | tokens before t)`` for t = 1..T-1, shape ``[batch, T-1]``."""
    logits = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits
    logits = logits[:, :-1].float()
    return -F.cross_entropy(logits.transpose(1, 2), input_ids[:, 1:], reduction="none")


def masked_logps(model: Any, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor,
                                                                      torch.Tensor]:
    """(token log-probs, mask of trained tokens), both ``[batch, T-1]``."""
    logps = token_logps(model, batch["input_ids"], batch["attention_mask"])
    return logps, batch["loss_mask"][:, 1:].to(logps.dtype)


def micro_batches(indices: Sequence[int], parts: int) -> list[list[int]]:
    """``indices`` cut into at most ``parts`` contiguous micro-batches."""
    size = math.ceil(len(indices) / max(int(parts), 1))
    return [list(indices[i:i + size]) for i in range(0, len(indices), size)]


def check_finite(value: torch.Tensor | float, what: str, step: int, spec: RunSpec) -> None:
    """Raise :class:`NonFiniteLossError` if ``value`` is NaN or infinite."""
    number = float(value.detach()) if isinstance(value, torch.Tensor) else float(value)
    if not math.isfinite(number):
        raise NonFiniteLossError(
            f"run {spec.run_id} ({spec.trainer}): {what} is {number} at step {step}; "
            "training diverged (try a lower learning_rate or check the data)")


@contextmanager
def eval_mode(model: Any) -> Iterator[None]:
    """``model`` in eval mode (no dropout), then back in the mode it was in."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


@contextmanager
def evaluating(model: Any) -> Iterator[None]:
    """Eval mode, no gradients, and the RNG state put back afterwards, so evaluating
    never changes what training does next."""
    saved = rng_state()
    try:
        with eval_mode(model), torch.no_grad():
            yield
    finally:
        set_rng_state(saved)


def generate(model: Any, base: SharedBase, prompt: list[int], device: str, *, num: int = 1,
             **settings: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """``num`` completions of one prompt: ids ``[num, C]`` and a mask over each completion
    up to and including its first EOS. ``settings`` are ``GenerationConfig`` fields."""
    from transformers import GenerationConfig

    config = GenerationConfig(pad_token_id=base.pad_id, eos_token_id=base.eos_id,
                              num_return_sequences=num, **settings)
    input_ids = torch.tensor([prompt], device=device)
    with torch.no_grad():
        out = model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
                             generation_config=config)
    completion = out[:, len(prompt):]
    is_eos = (completion == base.eos_id).long()
    after_eos = (is_eos.cumsum(dim=1) - is_eos) > 0
    return completion, (~after_eos).long()


def decode(tokenizer: Any, ids: torch.Tensor, mask: torch.Tensor) -> list[str]:
    """Completion texts without special tokens."""
    return [str(tokenizer.decode(row[m.bool()].tolist(), skip_special_tokens=True))
            for row, m in zip(ids, mask)]


def eval_generation_settings(config: Any, max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
                             ) -> dict[str, Any]:
    """Greedy decoding with ``config.generation_kwargs`` (default ``max_new_tokens``:
    32, or GRPO's ``max_completion_length``)."""
    kwargs = dict(config["generation_kwargs"] or {})
    return {"max_new_tokens": max_new_tokens, **kwargs, "do_sample": False}


def reference_text(row: dict[str, Any]) -> tuple[Any, str] | None:
    """(prompt, reference completion) of an eval row, or None when it has no reference."""
    if "prompt" in row:
        for column in ("completion", "chosen", "reference", "answer", "solution"):
            if row.get(column) is not None:
                return row["prompt"], _content(row[column])
        return None
    messages: Any = row.get("messages")
    if _is_chat(messages) and len(messages) > 1 and messages[-1]["role"] == "assistant":
        return messages[:-1], str(messages[-1]["content"])
    return None


def generation_metrics(model: Any, base: SharedBase, dataset: Any, config: Any,
                       device: str) -> dict[str, float]:
    """``compute_metrics(predictions, references)`` on greedy completions of the first
    eval rows that have a reference, keys prefixed with ``eval_``."""
    compute = config["compute_metrics"]
    if compute is None or dataset is None:
        return {}
    predictions, references = [], []
    for index in range(len(dataset)):
        pair = reference_text(dataset[index])
        if pair is None:
            continue
        ids, mask = generate(model, base, prompt_ids(base.tokenizer, pair[0]), device,
                             **eval_generation_settings(config))
        predictions.append(decode(base.tokenizer, ids, mask)[0].strip())
        references.append(pair[1].strip())
        if len(predictions) == MAX_EVAL_GENERATIONS:
            break
    if not predictions:
        return {}
    return {f"eval_{k}": float(v) for k, v in compute(predictions, references).items()}


def _has_rows(dataset: Any) -> bool:
    return dataset is not None and len(dataset) > 0


# -- SFT ------------------------------------------------------------------------------------
@register
class SFTBackend(Backend):
    """Supervised fine-tuning: mean next-token loss over the trained tokens."""

    trainer = "sft"

    def open(self, state: dict[str, Any] | None) -> None:
        """Load the base, tokenize lazily, put the run's adapter or weights on the device."""
        config, res = self.spec.config, self.resources
        self.args = args = training_args(self.spec)
        for option in ("packing", "assistant_only_loss"):
            if getattr(args, option, False):
                raise ValueError(f"SFTConfig({option}=True) is not supported by runfleet's "
                                 "SFT backend yet; leave it False")
        check_columns(res.train_dataset, "sft", config, args)
        self.base = shared_base(res, config)
        tokenizer, eos = self.base.tokenizer, self.base.eos_id
        whole_text = args.completion_only_loss is False  # None (default) means True

        def tokenize(row: dict[str, Any]) -> Tokens:
            ids, mask = sft_tokens(row, tokenizer, eos, config["formatting_func"],
                                   args.dataset_text_field)
            return (ids, [1] * len(ids)) if whole_text else (ids, mask)

        key = ("sft", config["model_name"], function_key(config["formatting_func"]),
               args.dataset_text_field, whole_text)
        self.train_rows = token_cache(res, key, res.train_dataset, tokenize)
        self.eval_rows = (token_cache(res, key, res.eval_dataset, tokenize)
                          if _has_rows(res.eval_dataset) else None)
        self.run = RunModel(self.spec, self.args, self.base, state)

    def _batch(self, rows: TokenCache, indices: Sequence[int]) -> dict[str, torch.Tensor]:
        return collate([rows[i] for i in indices], self.args.max_length, self.base.pad_id,
                       self.resources.device)

    def train_step(self, step: int, indices: list[int]) -> dict[str, Any]:
        """Gradient-accumulated next-token loss on ``indices``, then one optimizer step."""
        parts = micro_batches(indices, self.args.gradient_accumulation_steps)
        total = 0.0
        for part in parts:
            logps, mask = masked_logps(self.run.model, self._batch(self.train_rows, part))
            loss = -(logps * mask).sum() / mask.sum().clamp(min=1)
            check_finite(loss, "loss", step, self.spec)
            (loss / len(parts)).backward()
            total += float(loss.detach()) / len(parts)
        grad_norm, lr = self.run.step()
        return {"loss": total, "learning_rate": lr, "grad_norm": grad_norm}

    def evaluate(self) -> dict[str, Any]:
        """Token-weighted ``eval_loss`` plus ``compute_metrics`` on generations."""
        if self.eval_rows is None:
            return {}
        size = self.args.per_device_eval_batch_size
        nll, count = 0.0, 0.0
        with evaluating(self.run.model):
            for lo in range(0, len(self.eval_rows), size):
                batch = self._batch(self.eval_rows, range(lo, min(lo + size, len(self.eval_rows))))
                logps, mask = masked_logps(self.run.model, batch)
                nll -= float((logps * mask).sum())
                count += float(mask.sum())
            metrics = {"eval_loss": nll / max(count, 1.0)}
            metrics.update(generation_metrics(self.run.model, self.base,
                                              self.resources.eval_dataset, self.spec.config,
                                              self.resources.device))
        return metrics

    def state(self) -> dict[str, Any]:
        """Adapter or full weights, optimizer, schedule and RNG, on the CPU."""
        return self.run.state()

    def close(self) -> None:
        """Take the run off the shared base."""
        self.run.close()


# -- DPO ------------------------------------------------------------------------------------
Pair = tuple[Tokens, Tokens]  # (chosen, rejected)


@register
class DPOBackend(Backend):
    """Direct preference optimisation with the sigmoid loss.

    The reference policy is the base with the adapter disabled (LoRA), or, for full
    fine-tuning, log-probabilities of the pristine base computed once per worker, model
    and dataset before the run's weights go in.
    """

    trainer = "dpo"

    def open(self, state: dict[str, Any] | None) -> None:
        """Load the base, tokenize, precompute reference log-probs (full fine-tuning),
        put the run on the device."""
        config, res = self.spec.config, self.resources
        self.args = training_args(self.spec)
        loss_types = self.args.loss_type
        loss_types = [loss_types] if isinstance(loss_types, str) else list(loss_types)
        if loss_types != ["sigmoid"]:
            raise ValueError(f"DPO loss_type {loss_types} is not supported; use 'sigmoid'")
        check_columns(res.train_dataset, "dpo", config, self.args)
        self.base = shared_base(res, config)
        tokenizer, eos = self.base.tokenizer, self.base.eos_id

        def tokenize(row: dict[str, Any]) -> Pair:
            return (prompt_completion_tokens(tokenizer, row["prompt"], row["chosen"], eos),
                    prompt_completion_tokens(tokenizer, row["prompt"], row["rejected"], eos))

        key = ("dpo", config["model_name"])
        self.train_rows = token_cache(res, key, res.train_dataset, tokenize)
        self.eval_rows = (token_cache(res, key, res.eval_dataset, tokenize)
                          if _has_rows(res.eval_dataset) else None)
        self.train_ref = self.eval_ref = None
        if config["peft_config"] is None:
            self.train_ref = self._precomputed_reference(self.train_rows)
            if self.eval_rows is not None:
                self.eval_ref = self._precomputed_reference(self.eval_rows)
        self.run = RunModel(self.spec, self.args, self.base, state)

    def _batch(self, rows: TokenCache, indices: Sequence[int]) -> dict[str, torch.Tensor]:
        pairs = [rows[i] for i in indices]
        return collate([c for c, _ in pairs] + [r for _, r in pairs], self.args.max_length,
                       self.base.pad_id, self.resources.device)

    @staticmethod
    def _pair_logps(model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Summed completion log-probs, ``[n, 2]`` (chosen, rejected) for ``2n`` rows."""
        logps, mask = masked_logps(model, batch)
        total = (logps * mask).sum(dim=1)
        half = total.shape[0] // 2
        return torch.stack([total[:half], total[half:]], dim=1)

    def _precomputed_reference(self, rows: TokenCache) -> torch.Tensor:
        key = ("hf.dpo-reference", self.spec.config["model_name"], id(rows.dataset),
               self.args.max_length)
        if key not in self.resources.cache:
            self.base.restore_pristine()
            size = self.args.per_device_eval_batch_size
            with evaluating(self.base.model):
                parts = [self._pair_logps(self.base.model, self._batch(rows, range(
                    lo, min(lo + size, len(rows))))) for lo in range(0, len(rows), size)]
            self.resources.cache[key] = torch.cat(parts).cpu()
        reference: torch.Tensor = self.resources.cache[key]
        return reference

    def _reference(self, precomputed: torch.Tensor | None, indices: Sequence[int],
                   batch: dict[str, torch.Tensor]) -> torch.Tensor:
        if precomputed is not None:
            return precomputed[list(indices)].to(self.resources.device)
        with self.run.reference() as ref_model:
            return self._pair_logps(ref_model, batch)

    def _loss(self, policy: torch.Tensor, reference: torch.Tensor
              ) -> tuple[torch.Tensor, dict[str, float]]:
        beta, smoothing = float(self.args.beta), float(self.args.label_smoothing)
        rewards = beta * (policy - reference)  # implicit rewards, [n, 2]
        margin = rewards[:, 0] - rewards[:, 1]
        loss = (-(1 - smoothing) * F.logsigmoid(margin) - smoothing * F.logsigmoid(-margin))
        r = rewards.detach()
        return loss.mean(), {
            "rewards/chosen": float(r[:, 0].mean()), "rewards/rejected": float(r[:, 1].mean()),
            "rewards/accuracies": float((r[:, 0] > r[:, 1]).float().mean()),
            "rewards/margins": float((r[:, 0] - r[:, 1]).mean())}

    def train_step(self, step: int, indices: list[int]) -> dict[str, Any]:
        """Gradient-accumulated DPO loss on the pairs ``indices``, then one optimizer step."""
        parts = micro_batches(indices, self.args.gradient_accumulation_steps)
        totals: dict[str, float] = {}
        for part in parts:
            batch = self._batch(self.train_rows, part)
            reference = self._reference(self.train_ref, part, batch)
            loss, metrics = self._loss(self._pair_logps(self.run.model, batch), reference)
            check_finite(loss, "loss", step, self.spec)
            (loss / len(parts)).backward()
            for k, v in {"loss": float(loss.detach()), **metrics}.items():
                totals[k] = totals.get(k, 0.0) + v / len(parts)
        grad_norm, lr = self.run.step()
        return {**totals, "learning_rate": lr, "grad_norm": grad_norm}

    def evaluate(self) -> dict[str, Any]:
        """``eval_loss`` and eval rewards over the eval pairs, plus ``compute_metrics`` on
        generations (reference: the chosen completion)."""
        if self.eval_rows is None:
            return {}
        size, count = self.args.per_device_eval_batch_size, len(self.eval_rows)
        totals: dict[str, float] = {}
        with evaluating(self.run.model):
            for lo in range(0, count, size):
                part = range(lo, min(lo + size, count))
                batch = self._batch(self.eval_rows, part)
                reference = self._reference(self.eval_ref, part, batch)
                loss, metrics = self._loss(self._pair_logps(self.run.model, batch), reference)
                for k, v in {"loss": float(loss.detach()), **metrics}.items():
                    totals[f"eval_{k}"] = totals.get(f"eval_{k}", 0.0) + v * len(part) / count
            totals.update(generation_metrics(self.run.model, self.base,
                                             self.resources.eval_dataset, self.spec.config,
                                             self.resources.device))
        return totals

    def state(self) -> dict[str, Any]:
        """Adapter or full weights, optimizer, schedule and RNG, on the CPU."""
        return self.run.state()

    def close(self) -> None:
        """Take the run off the shared base."""
        self.run.close()


# -- GRPO -----------------------------------------------------------------------------------
@dataclass
class Group:
    """The sampled completions of one prompt."""

    prompt: list[int]
    completions: torch.Tensor  # [G, C] token ids
    mask: torch.Tensor  # [G, C], 1 up to and including the first EOS
    texts: list[str]


@register
class GRPOBackend(Backend):
    """Group relative policy optimisation: sample ``num_generations`` completions per
    prompt, score them with the reward functions, and push up the mean token log-prob of
    completions that beat their group's average (plus ``beta`` x KL to the reference)."""

    trainer = "grpo"

    def open(self, state: dict[str, Any] | None) -> None:
        """Load the base, check the reward functions, put the run on the device."""
        config, res = self.spec.config, self.resources
        self.args = training_args(self.spec)
        check_columns(res.train_dataset, "grpo", config, self.args)
        funcs = config["reward_funcs"]
        self.reward_funcs = list(funcs) if isinstance(funcs, (list, tuple)) else [funcs]
        if not self.reward_funcs or not all(callable(f) for f in self.reward_funcs):
            raise ValueError("GRPO needs reward_funcs: a callable or a list of callables "
                             "(prompts, completions, **columns) -> list[float]")
        weights = self.args.reward_weights or [1.0] * len(self.reward_funcs)
        if len(weights) != len(self.reward_funcs):
            raise ValueError(f"{len(weights)} reward_weights for "
                             f"{len(self.reward_funcs)} reward_funcs")
        self.reward_weights = torch.tensor([float(w) for w in weights])
        if int(self.args.num_generations) < 2:
            raise ValueError("GRPO needs num_generations >= 2 to compare completions")
        self.base = shared_base(res, config)
        key, tokenizer = ("grpo", config["model_name"]), self.base.tokenizer

        def tokenize(row: dict[str, Any]) -> list[int]:
            return prompt_ids(tokenizer, row["prompt"])

        self.train_prompts = token_cache(res, key, res.train_dataset, tokenize)
        self.eval_prompts = (token_cache(res, key, res.eval_dataset, tokenize)
                             if _has_rows(res.eval_dataset) else None)
        self.beta = float(self.args.beta)
        if self.beta > 0 and config["peft_config"] is None:
            frozen_reference(self.base)  # copy the pristine base before the run's weights
        self.run = RunModel(self.spec, self.args, self.base, state)

    def _sample(self, prompt: list[int]) -> Group:
        args = self.args
        with eval_mode(self.run.model):  # no dropout; the sampling RNG is the run's own
            ids, mask = generate(
                self.run.model, self.base, prompt, self.resources.device,
                num=int(args.num_generations), do_sample=True,
                temperature=float(args.temperature), top_p=float(args.top_p),
                top_k=int(args.top_k or 0), max_new_tokens=int(args.max_completion_length))
        return Group(prompt, ids, mask, decode(self.base.tokenizer, ids, mask))

    def _rewards(self, rows: list[dict[str, Any]], texts: list[list[str]]
                 ) -> tuple[torch.Tensor, dict[str, float]]:
        """Weighted sum of the reward functions, ``[prompts, G]``; per-function means."""
        flat_rows = [row for row, group in zip(rows, texts) for _ in group]
        prompts = [row["prompt"] for row in flat_rows]
        completions: list[Any] = [
            [{"role": "assistant", "content": t}] if _is_chat(row["prompt"]) else t
            for row, group in zip(rows, texts) for t in group]
        columns = {k: [row[k] for row in flat_rows] for k in flat_rows[0] if k != "prompt"}
        scores = []
        for func in self.reward_funcs:
            values = func(prompts=prompts, completions=completions, **columns)
            if len(values) != len(completions):
                raise ValueError(f"reward function {_name(func)} returned {len(values)} "
                                 f"rewards for {len(completions)} completions")
            scores.append([math.nan if v is None else float(v) for v in values])
        table = torch.tensor(scores, dtype=torch.float32)  # [funcs, completions]
        total = torch.nansum(table * self.reward_weights[:, None], dim=0)
        means = {f"rewards/{_name(f)}": float(torch.nanmean(row))
                 for f, row in zip(self.reward_funcs, table)}
        return total.view(len(rows), -1), means

    def _group_loss(self, group: Group, advantages: torch.Tensor
                    ) -> tuple[torch.Tensor, float]:
        """(-mean advantage x mean token log-prob + beta x KL, the KL) for one prompt."""
        device = self.resources.device
        count = group.completions.shape[0]
        prompt = torch.tensor([group.prompt], device=device).expand(count, -1)
        input_ids = torch.cat([prompt, group.completions], dim=1)
        attention = torch.cat([torch.ones_like(prompt), group.mask], dim=1)
        start = len(group.prompt) - 1  # position predicting the first completion token
        mask = group.mask.float()
        lengths = mask.sum(dim=1).clamp(min=1)
        logps = token_logps(self.run.model, input_ids, attention)[:, start:]
        loss = -(advantages.to(device) * (logps * mask).sum(dim=1) / lengths).mean()
        kl = 0.0
        if self.beta > 0:
            with self.run.reference() as ref_model:
                ref = token_logps(ref_model, input_ids, attention)[:, start:]
            delta = ref - logps
            per_token = torch.exp(delta) - delta - 1  # k3 estimator, >= 0
            kl_term = ((per_token * mask).sum(dim=1) / lengths).mean()
            loss = loss + self.beta * kl_term
            kl = float(kl_term.detach())
        return loss, kl

    def train_step(self, step: int, indices: list[int]) -> dict[str, Any]:
        """Sample, score and group-normalise, then one gradient step over all prompts."""
        rows = [self.resources.train_dataset[i] for i in indices]
        groups = [self._sample(self.train_prompts[i]) for i in indices]
        rewards, reward_means = self._rewards(rows, [g.texts for g in groups])
        mean, std = rewards.mean(dim=1, keepdim=True), rewards.std(dim=1, keepdim=True)
        advantages = rewards - mean
        scale = self.args.scale_rewards  # TRL turns True/False into "group"/"none"
        if scale == "group":
            advantages = advantages / (std + 1e-4)
        elif scale == "batch":
            advantages = advantages / (rewards.std() + 1e-4)
        total, kl = 0.0, 0.0
        for group, adv in zip(groups, advantages):
            loss, group_kl = self._group_loss(group, adv)
            check_finite(loss, "loss", step, self.spec)
            (loss / len(groups)).backward()
            total += float(loss.detach()) / len(groups)
            kl += group_kl / len(groups)
        grad_norm, lr = self.run.step()
        metrics = {"loss": total, "learning_rate": lr, "grad_norm": grad_norm,
                   "reward": float(rewards.mean()), "reward_std": float(std.mean()),
                   "completion_length": float(torch.cat([g.mask for g in groups])
                                              .sum(dim=1).float().mean()),
                   **reward_means}
        if self.beta > 0:
            metrics["kl"] = kl
        return metrics

    def evaluate(self) -> dict[str, Any]:
        """``eval_reward``: mean reward of greedy completions of the first eval prompts;
        plus ``compute_metrics`` on those of them whose rows carry a reference."""
        if self.eval_prompts is None:
            return {}
        data, config = self.resources.eval_dataset, self.spec.config
        rows = [data[i] for i in range(min(len(data), MAX_EVAL_GENERATIONS))]
        settings = eval_generation_settings(config, int(self.args.max_completion_length))
        with evaluating(self.run.model):
            texts = []
            for i in range(len(rows)):
                ids, mask = generate(self.run.model, self.base, self.eval_prompts[i],
                                     self.resources.device, **settings)
                texts.append(decode(self.base.tokenizer, ids, mask))
            rewards, _ = self._rewards(rows, texts)
        metrics = {"eval_reward": float(torch.nanmean(rewards))}
        pairs = [(group[0].strip(), ref[1].strip()) for group, ref in
                 zip(texts, map(reference_text, rows)) if ref is not None]
        if config["compute_metrics"] is not None and pairs:
            predictions, references = zip(*pairs)
            metrics.update({f"eval_{k}": float(v) for k, v in
                            config["compute_metrics"](list(predictions), list(references)).items()})
        return metrics

    def state(self) -> dict[str, Any]:
        """Adapter or full weights, optimizer, schedule and RNG, on the CPU."""
        return self.run.state()

    def close(self) -> None:
        """Take the run off the shared base."""
        self.run.close()


def _name(func: Any) -> str:
    return str(getattr(func, "__name__", type(func).__name__))
