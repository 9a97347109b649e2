"""The demo's compared metric: chrF credits nearly right one-word answers, where ROUGE-L
scores all or nothing (and gave all four demo runs 0.5)."""

from __future__ import annotations

import pytest

from runfleet.demo.sft_demo import demo_metrics
from runfleet.fit.metrics import chrf, rouge_l

REFERENCES = ["regit", "19", "TIGER", "Kelm"]
NEARLY = ["regti", "18", "TIGER", "Kelp"]     # three nearly right, one exact
FAR = ["xxxxx", "77", "TIGER", "Qqqq"]        # the same exact one, three far off


def test_chrf_tells_nearly_right_from_far_off_where_rouge_l_cannot() -> None:
    assert rouge_l(NEARLY, REFERENCES) == rouge_l(FAR, REFERENCES) == {"rougeL": 0.25}
    assert chrf(NEARLY, REFERENCES)["chrf"] > chrf(FAR, REFERENCES)["chrf"] > 0
    assert chrf(REFERENCES, REFERENCES) == {"chrf": 100.0}
    assert chrf([], []) == {"chrf": 0.0}
    with pytest.raises(ValueError, match="2 predictions but 1 references"):
        chrf(["a", "b"], ["a"])


def test_demo_metrics_has_all_three() -> None:
    metrics = demo_metrics(NEARLY, REFERENCES)
    assert set(metrics) == {"rougeL", "bleu", "chrf"}
    assert metrics["chrf"] == chrf(NEARLY, REFERENCES)["chrf"]
