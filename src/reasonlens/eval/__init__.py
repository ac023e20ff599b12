"""Evaluation core: answer extraction, time-bounded grading, bootstrap confidence intervals."""

from reasonlens.eval.extract import (
    Extraction,
    NumberReading,
    extract_answer,
    extract_answer_with_source,
    last_boxed,
    last_number,
    phrase_answer,
    read_final_number,
    read_number,
)
from reasonlens.eval.grade import (
    GRADE_KINDS,
    Grade,
    GradeKind,
    Grader,
    GraderUnavailable,
    GradeStatus,
    grade,
    normalize_latex,
    shared_grader,
)
from reasonlens.eval.stats import (Interval, auc, auc_with_ci, bootstrap_ci, paired_bootstrap_diff, proportion_ci,
                                   wilson_ci)

__all__ = [
    "GRADE_KINDS",
    "Extraction",
    "Grade",
    "GradeKind",
    "GradeStatus",
    "Grader",
    "GraderUnavailable",
    "Interval",
    "NumberReading",
    "auc",
    "auc_with_ci",
    "bootstrap_ci",
    "proportion_ci",
    "wilson_ci",
    "extract_answer",
    "extract_answer_with_source",
    "grade",
    "last_boxed",
    "last_number",
    "normalize_latex",
    "paired_bootstrap_diff",
    "phrase_answer",
    "read_final_number",
    "read_number",
    "shared_grader",
]
