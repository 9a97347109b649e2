"""runfleet's own trainer backends, registered in the ``runfleet.backends`` entry-point
group like any third-party backend (the engine names none of them):

* ``sft``, ``dpo``, ``grpo``: :mod:`runfleet.backends.hf` (transformers models, PEFT LoRA or
  full fine-tuning, hyperparameters from TRL's config classes);
* ``torch``: :mod:`runfleet.backends.torch_loop` (a plain PyTorch loop for custom models).

The interface they implement is :class:`runfleet.engine.backend.Backend`.
"""
