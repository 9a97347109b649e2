"""The shared base model and LoRA adapter slots: how many runs share one worker's model.

A worker loads each base model once (:func:`shared_base`, cached per model name) and every
run on it borrows it. LoRA runs of one structure take turns in one adapter slot: PEFT's
adapter injection happens once per structure per worker, and swapping a run in copies its
saved tensors into the slot (:func:`load_adapter`); a fresh run re-initialises the slot in
place exactly as PEFT would create it. Full fine-tuning runs write their own weights into
the module; a pristine CPU copy of the base puts it back for the LoRA runs.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import torch

from runfleet.backends.hf.trl_args import quiet_deprecations
from runfleet.backends.state import cpu_copy, seed_everything
from runfleet.engine.backend import WorkerResources


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

