"""Writing answers from retrieved passages.

A :class:`Generator` turns a prompt into a :class:`Generation` (text, tokens in and out,
cost). Two built-ins:

- :class:`LocalGenerator`: a transformers causal LM on this machine, greedy decoding.
- :class:`OpenAIGenerator`: any OpenAI-compatible chat-completions endpoint (OpenAI, a
  vLLM server, ...) through the official ``openai`` client. The API key is read from the
  environment variable *named* in the config, never given as a value. Timeouts,
  connection errors, HTTP 408/409/429 and 5xx answers are retried by the client's own
  retry machinery: exponential backoff from 0.5 s doubling up to 8 s, with up to 25%
  jitter, honouring a server's ``Retry-After`` up to 60 s. When the retries are spent,
  :class:`GenerationError` says why (timed out, rate-limited, HTTP status, unreachable).

:func:`format_prompt` fills a template's ``{question}`` and ``{context}``.

transformers, torch and openai are imported when a generator is built.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from runfleet.errors import RunfleetError
from runfleet.rag.embedding import ModelError, hub_offline, resolve_model

__all__ = [
    "DEFAULT_PROMPT",
    "Generation",
    "GenerationError",
    "Generator",
    "LocalGenerator",
    "MissingAPIKeyError",
    "OpenAIGenerator",
    "PromptError",
    "check_template",
    "format_context",
    "format_prompt",
]

#: The template used when a config gives none.
DEFAULT_PROMPT = (
    "Answer the question using only the context below. If the context does not hold the "
    "answer, say that you don't know. Answer briefly.\n\n"
    "Context:\n{context}\n\n"
    "Question: {question}\n"
    "Answer:"
)

_PLACEHOLDER = re.compile(r"\{(question|context)\}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class GenerationError(RunfleetError, RuntimeError):
    """A generator failed to answer: the endpoint timed out, rate-limited, answered an
    error status or could not be reached after its retries, or a local model failed. The
    message says which and how many attempts were made; it never holds the API key."""


class MissingAPIKeyError(RunfleetError, LookupError):
    """The environment variable that should hold an endpoint's API key is not set."""


class PromptError(RunfleetError, ValueError):
    """A prompt template that cannot be used (not a string, or no ``{question}``)."""


@dataclass(frozen=True)
class Generation:
    """One answer: its ``text``, prompt and answer token counts (``tokens_in``,
    ``tokens_out``) and ``cost``; None where unknown (an endpoint that reports no usage,
    no prices given, a local model's cost)."""

    text: str
    tokens_in: int | None = None
    tokens_out: int | None = None
    cost: float | None = None


@runtime_checkable
class Generator(Protocol):
    """Turns a prompt into an answer."""

    def generate(self, prompt: str) -> Generation:
        """The answer to ``prompt``."""
        ...


# --------------------------------------------------------------------------- prompts


def check_template(template: Any) -> str:
    """Return ``template`` if it can be used: a string holding ``{question}`` (and usually
    ``{context}``, where the passages go).

    Raises:
        PromptError: not a string, or no ``{question}`` placeholder.
    """
    if not isinstance(template, str):
        raise PromptError(f"a prompt template must be a string, got {type(template).__name__}")
    if "{question}" not in template:
        raise PromptError("the prompt template has no {question} placeholder, so the model "
                          f"would never see the question: {template[:200]!r}")
    return template


def format_context(passages: Sequence[str]) -> str:
    """Passages numbered ``[1] ...``, ``[2] ...``, separated by blank lines."""
    if isinstance(passages, str):
        raise TypeError("passages must be a list of strings, not one string")
    return "\n\n".join(f"[{i}] {passage.strip()}" for i, passage in enumerate(passages, 1))


def format_prompt(template: str | None, question: str, passages: Sequence[str]) -> str:
    """Fill a template's ``{question}`` and ``{context}`` (the passages, by
    :func:`format_context`); None means :data:`DEFAULT_PROMPT`.

    Only those two placeholders are replaced, in one pass: other braces in the template,
    and braces or placeholder-like text inside the question or passages, stay as they are.

    Raises:
        PromptError: the template is not a string or lacks ``{question}``.
    """
    chosen = check_template(DEFAULT_PROMPT if template is None else template)
    values = {"question": question, "context": format_context(passages)}
    return _PLACEHOLDER.sub(lambda match: values[match.group(1)], chosen)


# --------------------------------------------------------------------------- local model


class LocalGenerator:
    """A transformers causal LM (a folder, or a name in the local cache), greedy decoding.

    When the tokenizer has a chat template (an instruction-tuned model) the prompt goes in
    as one user message, unless ``chat_template=False``. Prompts are not truncated: one
    longer than the model's context fails with its error.

    Args:
        model: a folder or a name.
        max_new_tokens: the most tokens an answer has.
        device: torch device.
        chat_template: wrap the prompt in the tokenizer's chat template (None: when it has
            one).
    """

    def __init__(self, model: str | os.PathLike[str], max_new_tokens: int = 64, *,
                 device: str = "cpu", chat_template: bool | None = None) -> None:
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) \
                or max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be an integer >= 1, got {max_new_tokens!r}")
        location = resolve_model(model, what="generator")
        local_only = hub_offline()
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.tokenizer: Any
        self.model: Any
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(location, local_files_only=local_only)
            self.model = AutoModelForCausalLM.from_pretrained(location,
                                                              local_files_only=local_only)
        except (OSError, ValueError, KeyError) as exc:
            raise ModelError(f"generator {os.fspath(model)!r} cannot be loaded: {exc}") from exc
        self.model.to(device)
        self.model.eval()
        self.device = device
        self.max_new_tokens = max_new_tokens
        has_template = bool(getattr(self.tokenizer, "chat_template", None))
        self.chat_template = has_template if chat_template is None else chat_template

    def generate(self, prompt: str) -> Generation:
        """Greedy continuation of ``prompt`` (at most ``max_new_tokens`` tokens)."""
        import torch

        if self.chat_template:
            ids = self.tokenizer.apply_chat_template(
                [{"role": "user", "content": prompt}], add_generation_prompt=True,
                return_tensors="pt", return_dict=True)["input_ids"]
        else:
            ids = self.tokenizer(prompt, return_tensors="pt")["input_ids"]
        ids = ids.to(self.device)
        pad = self.tokenizer.pad_token_id
        if pad is None:
            pad = self.tokenizer.eos_token_id
        try:
            with torch.inference_mode():
                out = self.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                                          max_new_tokens=self.max_new_tokens, do_sample=False,
                                          pad_token_id=pad)
        except (RuntimeError, ValueError, IndexError) as exc:
            raise GenerationError(f"local generator failed on a prompt of {ids.shape[1]} "
                                  f"tokens: {exc}") from exc
        new = out[0, ids.shape[1]:]
        text = self.tokenizer.decode(new, skip_special_tokens=True)
        return Generation(text=text.strip(), tokens_in=int(ids.shape[1]),
                          tokens_out=int(new.shape[0]), cost=None)


# --------------------------------------------------------------------------- endpoints


def _price(name: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or \
            not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be None or a finite number >= 0, got {value!r}")
    return float(value)


class OpenAIGenerator:
    """An OpenAI-compatible chat-completions endpoint through the ``openai`` client.

    The prompt is sent as one user message; ``temperature`` defaults to 0 and
    ``max_new_tokens`` is sent as ``max_tokens`` (understood by OpenAI and by vLLM and
    other compatible servers).

    Args:
        base_url: the endpoint (``http://host:8000/v1`` for vLLM); None: OpenAI's.
        model: the endpoint's model name.
        api_key_env: the NAME of the environment variable holding the key, read when the
            generator is built. None: send no real key (a local server without auth).
        timeout: seconds to wait for each attempt.
        max_retries: retries after the first attempt (see the module doc for which errors
            and the backoff).
        price_in: price per 1,000 prompt tokens (None: no cost is computed).
        price_out: price per 1,000 answer tokens; give both prices or neither.
        max_new_tokens: the most tokens an answer has (None: the endpoint's default).
        temperature: sampling temperature.

    Raises:
        MissingAPIKeyError: the named environment variable is not set (or empty).
        ValueError: a malformed variable name, prices or limits.
    """

    def __init__(self, base_url: str | None = None, *, model: str,
                 api_key_env: str | None = "OPENAI_API_KEY", timeout: float = 30,
                 max_retries: int = 4, price_in: float | None = None,
                 price_out: float | None = None, max_new_tokens: int | None = None,
                 temperature: float = 0.0) -> None:
        if not isinstance(model, str) or not model:
            raise ValueError(f"model must be the endpoint's model name, got {model!r}")
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) \
                or not timeout > 0:
            raise ValueError(f"timeout must be a number of seconds > 0, got {timeout!r}")
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) \
                or max_retries < 0:
            raise ValueError(f"max_retries must be an integer >= 0, got {max_retries!r}")
        if max_new_tokens is not None and (isinstance(max_new_tokens, bool) or not isinstance(
                max_new_tokens, int) or max_new_tokens < 1):
            raise ValueError(f"max_new_tokens must be None or an integer >= 1, got "
                             f"{max_new_tokens!r}")
        self.price_in = _price("price_in", price_in)
        self.price_out = _price("price_out", price_out)
        if (self.price_in is None) != (self.price_out is None):
            raise ValueError("give both price_in and price_out (per 1,000 tokens), or neither")
        if api_key_env is None:
            key = "EMPTY"  # the openai client insists on some key; vLLM's convention
        else:
            if not isinstance(api_key_env, str) or not _ENV_NAME.fullmatch(api_key_env):
                # never echo the value: it may be a key put where its variable's name goes
                raise ValueError("api_key_env must be the NAME of an environment variable "
                                 "(letters, digits and _), not the key itself; the value "
                                 "given is not such a name (not shown)")
            key = os.environ.get(api_key_env, "")
            if not key:
                raise MissingAPIKeyError(
                    f"the environment variable {api_key_env} (named by api_key_env) is not "
                    f"set or empty: export the endpoint's API key in it")
        self.base_url = base_url
        self.model = model
        self.api_key_env = api_key_env
        self.timeout = float(timeout)
        self.max_retries = max_retries
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        from openai import OpenAI

        self._client = OpenAI(api_key=key, base_url=base_url, timeout=self.timeout,
                              max_retries=max_retries)

    def __repr__(self) -> str:
        return (f"OpenAIGenerator(base_url={self.base_url!r}, model={self.model!r}, "
                f"api_key_env={self.api_key_env!r})")

    def _where(self) -> str:
        return f"endpoint {self.base_url or 'OpenAI'} (model {self.model!r})"

    def _failure(self, exc: Exception) -> GenerationError:
        import openai

        attempts = self.max_retries + 1
        tries = f"{attempts} attempt{'s' if attempts != 1 else ''}"
        if isinstance(exc, openai.APITimeoutError):
            why = f"timed out: no answer within {self.timeout:g} s, on each of {tries}"
        elif isinstance(exc, openai.RateLimitError):
            why = f"rate-limited (HTTP 429) on each of {tries}: {exc.message}"
        elif isinstance(exc, openai.APIStatusError):
            retried = exc.status_code in (408, 409) or exc.status_code >= 500
            why = (f"answered HTTP {exc.status_code}"
                   + (f" on each of {tries}" if retried else " (not retried)")
                   + f": {exc.message}")
        elif isinstance(exc, openai.APIConnectionError):
            why = f"cannot be reached after {tries}: {exc.__cause__ or exc}"
        else:
            why = f"failed: {exc}"
        return GenerationError(f"{self._where()} {why}")

    def generate(self, prompt: str) -> Generation:
        """Ask the endpoint; usage and cost come back when it reports token usage.

        Raises:
            GenerationError: after the retries, saying why.
        """
        import openai

        extra: dict[str, Any] = {}
        if self.max_new_tokens is not None:
            extra["max_tokens"] = self.max_new_tokens
        try:
            response = self._client.chat.completions.create(
                model=self.model, messages=[{"role": "user", "content": prompt}],
                temperature=self.temperature, **extra)
        except openai.OpenAIError as exc:
            raise self._failure(exc) from exc
        choices = response.choices or []
        text = (choices[0].message.content or "") if choices else ""
        usage = response.usage
        tokens_in = usage.prompt_tokens if usage is not None else None
        tokens_out = usage.completion_tokens if usage is not None else None
        cost = None
        if self.price_in is not None and self.price_out is not None \
                and tokens_in is not None and tokens_out is not None:
            cost = (tokens_in * self.price_in + tokens_out * self.price_out) / 1000.0
        return Generation(text=text.strip(), tokens_in=tokens_in, tokens_out=tokens_out,
                          cost=cost)
