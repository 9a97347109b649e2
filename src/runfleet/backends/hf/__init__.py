"""HF/TRL trainer backends: ``trainer="sft" | "dpo" | "grpo"`` on transformers causal LMs.

Read a trainer top to bottom in its own module: :mod:`~runfleet.backends.hf.sft`,
:mod:`~runfleet.backends.hf.dpo`, :mod:`~runfleet.backends.hf.grpo`. Each follows the
recipe of :mod:`runfleet.engine.backend` (``open``, ``train_step``, ``evaluate``; ``state``
and ``close`` come from :class:`~runfleet.backends.hf.common.HFBackend`). The machinery
they use sits behind names that say what it does:

* :mod:`~runfleet.backends.hf.trl_args`: checking and planning a run from its TRL config;
* :mod:`~runfleet.backends.hf.slots`: the worker's shared base model and LoRA adapter slots;
* :mod:`~runfleet.backends.hf.run_model`: one run on that base (trainable part, optimizer,
  schedule, state);
* :mod:`~runfleet.backends.hf.data`: dataset rows to tokens and batches;
* :mod:`~runfleet.backends.hf.numerics`: log-probabilities, micro-batches, eval mode;
* :mod:`~runfleet.backends.hf.generation`: sampling and eval generations.

We own the training loop. TRL's trainers own data order and training state, which would
break chunk equivalence, so we take only their *configs*: the run's ``training_args`` (a
TRL ``SFTConfig``/``DPOConfig``/``GRPOConfig``) gives learning rate, batch sizes,
accumulation, clipping, schedule and each trainer's own settings; ``peft_config`` (a
``peft.LoraConfig``, or None for full fine-tuning) gives the adapter. Precision is the
model's own dtype, as ``create_model_fn`` loaded it.

Exactness: a fresh run seeds, then initialises its adapter slot in place the same way
whether the slot is new or reused; a resumed run restores adapter, optimizer, schedule and
finally RNG; evaluation never moves the training RNG; the engine chooses the examples. So
a run swapped on and off a worker every chunk computes the same steps as a run trained in
one go (bit for bit on CPU).
"""

from runfleet.backends.hf.common import HFBackend
from runfleet.backends.hf.data import DatasetFormatError
from runfleet.backends.hf.dpo import DPOBackend
from runfleet.backends.hf.grpo import GRPOBackend
from runfleet.backends.hf.sft import SFTBackend

__all__ = ["DPOBackend", "DatasetFormatError", "GRPOBackend", "HFBackend", "SFTBackend"]
