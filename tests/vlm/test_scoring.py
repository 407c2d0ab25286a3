"""The answer scorer on crafted cases: whole-word yes/no ("normal" and "note" are not "no"), every closed
question in the denominator, open-answer word recall and F1 by hand, BLEU equal to sacrebleu's."""

from __future__ import annotations

import math

import pytest

from neurotrain_hf.metrics.registry import StreamingMetrics
from neurotrain_hf.metrics.vqa import closed_correct, score_answers, yes_no


@pytest.mark.parametrize(
    ("answer", "read"),
    [
        ("No.", "no"),
        ("no, there is no effusion", "no"),
        ("Yes", "yes"),
        ("yes it is", "yes"),
        ("normal", None),
        ("note the opacity", None),
        ("not sure", None),
        ("yes and no", None),
        ("nodule", None),
        ("", None),
    ],
)
def test_yes_no_is_read_by_whole_words(answer, read):
    assert yes_no(answer) == read


def test_wrong_and_unparsed_closed_answers_stay_in_the_denominator():
    predictions = ["yes", "normal", "note", "no", "maybe", "Left.", "right"]
    references = ["yes", "no", "no", "no", "yes", "left", "left"]
    scores = score_answers(predictions, references, ["closed"] * 7)
    # right: yes/yes, no/no, "Left."/left -> 3 of 7 (LLaVA-Med's run_eval would count "normal" as no and drop
    # "maybe" and "note" from the denominator)
    assert scores["closed_accuracy"] == pytest.approx(3 / 7)
    assert scores["closed_count"] == 7 and scores["open_count"] == 0
    assert math.isnan(scores["open_f1"])
    assert not closed_correct("normal", "no") and closed_correct("No, normal.", "no")


def test_open_answers_score_word_recall_f1_and_exact_match_by_hand():
    predictions = ["the left lower lobe", "right lung", "a brain MRI scan"]
    references = ["left lower lobe", "left lung", "MRI"]
    scores = score_answers(predictions, references, ["open", "OPEN", "open"])
    # articles dropped: "left lower lobe" == "left lower lobe": recall 1, F1 1
    # "right lung" vs "left lung": 1 common word; recall 1/2, precision 1/2, F1 1/2
    # "brain mri scan" vs "mri": recall 1, precision 1/3, F1 = 2*(1/3)/(4/3) = 1/2
    assert scores["open_recall"] == pytest.approx((1 + 0.5 + 1) / 3)
    assert scores["open_f1"] == pytest.approx((1 + 0.5 + 0.5) / 3)
    assert scores["exact_match"] == pytest.approx(1 / 3)


def test_missing_types_are_inferred_from_yes_no_references():
    scores = score_answers(["yes", "circle", "red"], ["yes", "circle", "blue"], ["", None, ""])
    assert scores["closed_count"] == 1 and scores["closed_accuracy"] == 1.0
    assert scores["open_count"] == 2 and scores["open_f1"] == pytest.approx(0.5)


def test_bleu_is_sacrebleus_mean_sentence_bleu():
    from sacrebleu.metrics import BLEU

    predictions = ["a small red circle", "two shapes", "blue"]
    references = ["a small red circle at the top", "two shapes", "green"]
    bleu = BLEU(effective_order=True, lowercase=True)
    expected = sum(bleu.sentence_score(p, [r]).score for p, r in zip(predictions, references)) / 300
    assert score_answers(predictions, references)["bleu"] == pytest.approx(expected)


def test_the_streaming_family_merges_ranks_like_one_pass():
    import neurotrain_hf.tasks.vlm.metrics  # noqa: F401  (registers the family)

    names = ["closed_accuracy", "open_f1", "exact_match", "bleu"]
    whole, first, second = (StreamingMetrics(names, ["vqa"]) for _ in range(3))
    preds, refs = (
        ["yes", "no", "red", "top left"],
        {"answer": ["yes", "yes", "red", "top right"], "answer_type": ["closed", "closed", "open", "open"]},
    )
    whole.update(preds, refs)
    first.update(preds[:2], {k: v[:2] for k, v in refs.items()})
    second.update(preds[2:], {k: v[2:] for k, v in refs.items()})
    first.merge(second)
    assert first.compute() == whole.compute()
    assert whole.compute()["closed_accuracy"] == 0.5 and whole.compute()["exact_match"] == 0.5
