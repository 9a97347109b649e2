"""Ready-made ``compute_metrics`` functions for generated text.

A ``compute_metrics(predictions, references) -> dict[str, float]`` receives the model's
greedy completions for some eval prompts and the dataset's reference completions; the
engine logs each returned key with an ``eval_`` prefix (``rougeL`` -> ``eval_rougeL``).

Example:
    >>> from runfleet.fit import ModelConfig
    >>> from runfleet.fit.metrics import rouge_l_and_bleu
    >>> config = ModelConfig(model_name="tiny", compute_metrics=rouge_l_and_bleu)
"""

from __future__ import annotations

from collections.abc import Sequence


def _check_lengths(predictions: Sequence[str], references: Sequence[str]) -> None:
    if len(predictions) != len(references):
        raise ValueError(f"got {len(predictions)} predictions but {len(references)} references")


def rouge_l(predictions: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """Mean ROUGE-L F1 (``rouge-score``, longest common subsequence of words), in [0, 1].

    Text is lowercased and split on non-alphanumeric characters (the package's default
    tokenizer). No predictions score 0.

    Example:
        >>> rouge_l(["the cat sat"], ["the cat sat down"])
        {'rougeL': 0.8571428571428571}
    """
    from rouge_score import rouge_scorer

    _check_lengths(predictions, references)
    if not predictions:
        return {"rougeL": 0.0}
    scorer = rouge_scorer.RougeScorer(["rougeL"])
    scores = [scorer.score(ref, pred)["rougeL"].fmeasure
              for pred, ref in zip(predictions, references)]
    return {"rougeL": float(sum(scores) / len(scores))}


def bleu(predictions: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """Corpus BLEU (``sacrebleu``, one reference per prediction), in [0, 100].

    Uses effective n-gram order, so answers shorter than four words are not scored 0
    just for being short (``"7"`` against ``"7"`` is 100).

    Example:
        >>> round(bleu(["elppa", "7"], ["elppa", "8"])["bleu"], 6)
        50.0
    """
    from sacrebleu import BLEU

    _check_lengths(predictions, references)
    if not predictions:
        return {"bleu": 0.0}
    score = BLEU(effective_order=True).corpus_score(list(predictions), [list(references)])
    return {"bleu": float(score.score)}


def chrf(predictions: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """Corpus chrF (``sacrebleu``: F-score of character n-grams, one reference per
    prediction), in [0, 100].

    Unlike word-level metrics it gives partial credit to a short answer that is nearly right
    (``"regti"`` for ``"regit"``), so it still tells models apart when every answer is one
    word. Case matters (``"tiger"`` is not ``"TIGER"``).

    Example:
        >>> chrf(["elppa"], ["elppa"])
        {'chrf': 100.0}
    """
    from sacrebleu import CHRF

    _check_lengths(predictions, references)
    if not predictions:
        return {"chrf": 0.0}
    score = CHRF().corpus_score(list(predictions), [list(references)])
    return {"chrf": float(score.score)}


def rouge_l_and_bleu(predictions: Sequence[str], references: Sequence[str]
                     ) -> dict[str, float]:
    """Both :func:`rouge_l` and :func:`bleu` in one dict.

    Example:
        >>> sorted(rouge_l_and_bleu(["a b"], ["a b"]))
        ['bleu', 'rougeL']
    """
    return {**rouge_l(predictions, references), **bleu(predictions, references)}
