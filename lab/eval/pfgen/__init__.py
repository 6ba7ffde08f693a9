"""pfgen-bench: open-ended Japanese QA scored by Fluency, Truthfulness and Helpfulness (arXiv 2502.09316).

Definitions follow the public scorer's numbers (../shared/reference/pfgen-metrics.md); the upstream data
(a folder of Qxx.json) is read where it lies and never copied. n-gram tables are cached on disk by content hash.
"""

from lab.eval.pfgen.cache import cached_tables, default_cache_dir
from lab.eval.pfgen.data import Example, PfgenDataError, Question, load_examples, load_question, load_questions
from lab.eval.pfgen.keywords import KeywordRule, helpfulness, parse_rule
from lab.eval.pfgen.ngram_table import NgramTable, build_table, fluency, truthfulness
from lab.eval.pfgen.results import PfgenReport, read_answers, score_answers, summarize, write_scores
from lab.eval.pfgen.scorer import AnswerScore, QuestionScorer, load_scorers

__all__ = [
    "AnswerScore",
    "Example",
    "KeywordRule",
    "NgramTable",
    "PfgenDataError",
    "PfgenReport",
    "Question",
    "QuestionScorer",
    "build_table",
    "cached_tables",
    "default_cache_dir",
    "fluency",
    "helpfulness",
    "load_examples",
    "load_question",
    "load_questions",
    "load_scorers",
    "parse_rule",
    "read_answers",
    "score_answers",
    "summarize",
    "truthfulness",
    "write_scores",
]
