"""Configs for fine-tuning runs: ``ModelConfig`` plus thin peft/trl wrappers.

Example:
    >>> from runfleet import List, GridSearch
    >>> from runfleet.fit import ModelConfig, LoraConfig, SFTConfig
    >>> space = GridSearch(ModelConfig(model_name="tiny", peft_config=LoraConfig(r=List([4, 8])),
    ...                                training_args=SFTConfig(learning_rate=1e-3)), trainer="sft")
"""

from runfleet.fit.configs import (
    ConfigError,
    DPOConfig,
    FitConfig,
    GRPOConfig,
    LoraConfig,
    ModelConfig,
    OpenConfig,
    SFTConfig,
    TorchConfig,
)

__all__ = ["ConfigError", "DPOConfig", "FitConfig", "GRPOConfig", "LoraConfig", "ModelConfig",
           "OpenConfig", "SFTConfig", "TorchConfig"]
