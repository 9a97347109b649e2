"""Offline demo kit: tiny models built from configs, a trained-on-the-fly tokenizer and
small instruction / preference datasets shipped with the package."""

from runfleet.demo.tiny import (
    build_demo_model,
    build_tiny_llama,
    load_instructions,
    load_model,
    load_preferences,
    pretrain,
    tiny_llama,
    train_tokenizer,
)

__all__ = ["build_demo_model", "build_tiny_llama", "load_instructions", "load_model",
           "load_preferences", "pretrain", "tiny_llama", "train_tokenizer"]
