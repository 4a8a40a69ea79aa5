"""Retrieval metrics against small cases worked by hand."""

import numpy as np
import pytest

from microrep.analysis.retrieval import retrieval_metrics, retrieval_scores

# five points on a line; labels a a b a b
POINTS = np.array([[0.0], [1.0], [2.5], [3.0], [10.0]])
LABELS = np.array(["a", "a", "b", "a", "b"])


def test_self_search_matches_hand_worked_values():
    scores = retrieval_scores(POINTS, LABELS)
    # query 0 (a, R=2): neighbours 1(a) 2(b) 3(a) -> P@1 1, R-prec 1/2, AP@R (1/1)/2 = 0.5
    # query 1 (a, R=2): neighbours 0(a) 2(b) -> P@1 1, R-prec 1/2, AP@R 0.5
    # query 2 (b, R=1): nearest 3(a) -> 0, 0, 0
    # query 3 (a, R=2): neighbours 2(b) 1(a) -> P@1 0, R-prec 1/2, AP@R (1/2)/2 = 0.25
    # query 4 (b, R=1): nearest 3(a) -> 0, 0, 0
    np.testing.assert_allclose(scores["precision_at_1"], [1, 1, 0, 0, 0])
    np.testing.assert_allclose(scores["r_precision"], [0.5, 0.5, 0, 0.5, 0])
    np.testing.assert_allclose(scores["map_at_r"], [0.5, 0.5, 0, 0.25, 0])
    np.testing.assert_array_equal(scores["relevant"], [2, 2, 1, 2, 1])


def test_summary_averages_over_queries_and_over_classes():
    summary = retrieval_metrics(POINTS, LABELS)["all"]
    assert summary["queries"] == 5
    assert summary["map_at_r"] == pytest.approx(1.25 / 5)
    # class a: (0.5 + 0.5 + 0.25) / 3, class b: 0 -> per class (0.41667 + 0) / 2
    assert summary["map_at_r_per_class"] == pytest.approx((1.25 / 3) / 2)
    assert summary["precision_at_1_per_class"] == pytest.approx((2 / 3) / 2)


def test_perfect_ranking_scores_one():
    points = np.array([[0.0], [0.1], [0.2], [5.0], [5.1]])
    labels = ["x", "x", "x", "y", "y"]
    summary = retrieval_metrics(points, labels)["all"]
    for name in ("precision_at_1", "r_precision", "map_at_r"):
        assert summary[name] == 1.0


def test_excluding_the_query_sample_changes_candidates_and_relevant_counts():
    groups = np.array(["s1", "s1", "s2", "s2", "s3"])
    scores = retrieval_scores(POINTS, LABELS, query_groups=groups, exclude_same_group=True)
    # query 0 (a, s1): candidates 2(b) 3(a) 4(b); R = 1; nearest is 2(b) -> 0
    # query 1 (a, s1): candidates 2 3 4; nearest 2(b) -> 0
    # query 2 (b, s2): candidates 0 1 4; R = 1 (point 4); nearest 1(a) -> 0
    # query 3 (a, s2): candidates 0 1 4; R = 2; neighbours 1(a) 0(a) -> 1, 1, 1
    # query 4 (b, s3): candidates 0..3; R = 1 (point 2); nearest 3(a) -> 0
    np.testing.assert_allclose(scores["precision_at_1"], [0, 0, 0, 1, 0])
    np.testing.assert_allclose(scores["map_at_r"], [0, 0, 0, 1, 0])
    np.testing.assert_array_equal(scores["relevant"], [1, 1, 1, 2, 1])


def test_queries_against_a_reference_set_and_queries_without_relevant_items():
    references = np.array([[0.0], [1.0], [5.0]])
    reference_labels = ["a", "b", "a"]
    queries = np.array([[0.9], [4.0], [2.0]])
    query_labels = ["a", "a", "c"]  # class c has nothing to find: left out
    scores = retrieval_scores(queries, query_labels, references, reference_labels)
    # query 0 (a, R=2): 1(b) 0(a) -> P@1 0, R-prec 1/2, AP@R (1/2)/2
    # query 1 (a, R=2): 2(a) 1(b) -> P@1 1, R-prec 1/2, AP@R 1/2
    np.testing.assert_allclose(scores["precision_at_1"], [0, 1])
    np.testing.assert_allclose(scores["r_precision"], [0.5, 0.5])
    np.testing.assert_allclose(scores["map_at_r"], [0.25, 0.5])


def test_without_groups_the_other_sample_variant_is_absent():
    assert retrieval_metrics(POINTS, LABELS)["other_samples"] is None
    with pytest.raises(ValueError, match="groups"):
        retrieval_scores(POINTS, LABELS, exclude_same_group=True)
