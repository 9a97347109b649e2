"""Integrations with other libraries (Hugging Face Trainer; tracking sinks come next)."""
