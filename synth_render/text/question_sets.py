"""pfgen-style question sets built from the synthetic text generators, so lab models are scored without upstream data.

A set is written in the upstream layout (Qxx.json + questions.jsonl), so `load_questions`, the scorer, the table
cache and the harness read it unchanged; `lab_set.json` beside them records how it was built. Questions ask about
the same world the generators describe (same seed, vocab_size, n_entities), in the forms the families use. Building
a set is synthetic data generation, so it lives here (formerly `lab.eval.pfgen.lab_sets`, which still re-exports
it); the keyword-rule format is `lab.data.keyword_rules`.

Each question carries:
- keyword rules in the upstream layout: the asked value must appear (importance 1), the subject or the working
  should (importance 0.5);
- one reference set of `answers` answers: a sentence that states the answer (one of several paraphrases) first,
  then true supporting sentences (or the worked steps) up to about 100 characters;
- a few-shot example answer (questions.jsonl): the longest of several compositions of at most 100 characters.

Question i is drawn from `default_rng(SeedSequence(seed, spawn_key=(QUESTION_STREAM, i, attempt)))` with the
generator `generators[i % len(generators)]`; a draw that repeats an earlier question (or is ambiguous) is redrawn
with the next attempt. So a set of 20 questions is the first 20 of a set of 50 with the same arguments, and
reference answer j of question i comes from its own stream (ANSWER_STREAM, i, j).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from lab.core.registry import Registry, UnknownNameError
from synth_render.text import lexicon as lx
from synth_render.text.arithmetic import expression
from synth_render.text.base import TextGenerator, pick
from synth_render.text.facts import person_fact, place_fact, place_phrase
from synth_render.text.registry import TEXT_GENERATORS, create_text_generator, text_config
from synth_render.text.world import Person, World

QUESTION_STREAM, ANSWER_STREAM, EXAMPLE_STREAM = 11, 12, 13  # distinct from the world's stream (1)
ANSWER_LIMIT = 100  # characters: full credit in every metric up to here
EXAMPLE_CANDIDATES = 12
MAX_ATTEMPTS = 1000
SHOULD = 0.5  # importance of a rule a good answer should (not must) satisfy
MANIFEST = "lab_set.json"
FORMAT_VERSION = 1

Rng = np.random.Generator


@dataclass(frozen=True)
class QuestionDraft:
    """A question with its rules and a composer of reference answers (one answer per random stream)."""

    question: str
    category: str
    keywords: list[dict[str, Any]]
    compose: Callable[[Rng], str]


QuestionMaker = Callable[[TextGenerator, Rng], "QuestionDraft | None"]  # None: ambiguous draw, redraw
QUESTION_MAKERS: Registry[QuestionMaker] = Registry("pfgen question maker")


def must(pattern: str) -> dict[str, Any]:
    return {"t": pattern}


def should(pattern: str) -> dict[str, Any]:
    return {"t": pattern, "importance": SHOULD}


def number(value: int | str) -> str:
    """A regex for a number that is not part of a longer one."""
    return rf"(?<![0-9]){re.escape(str(value))}(?![0-9])"


def loose(text: str) -> str:
    """A regex for `text` with any spacing around its spaces (models write "3+4" or "3 + 4")."""
    return r"\s*".join(re.escape(part) for part in text.split(" "))


def fill(first: str, more: Callable[[Rng], str], rng: Rng, limit: int = ANSWER_LIMIT) -> str:
    """`first`, then up to eight drawn sentences that fit within `limit` characters and are not repeats."""
    text = first
    for _ in range(8):
        sentence = more(rng)
        if sentence not in text and len(text) + len(sentence) <= limit:
            text += sentence
        if len(text) >= 0.8 * limit:
            break
    return text


def _unique_name(world: World, name: str) -> bool:
    """Names repeat when vocab_size < n_entities; a question about a shared name has no single answer."""
    return sum(p.name == name for p in world.persons) + sum(q.name == name for q in world.places) == 1


# ------------------------------------------------------------------------------------------ world_facts

_PERSON_QUESTIONS: dict[str, tuple[str, Callable[[World, Person], str], tuple[str, ...]]] = {
    # attribute: (question template, value, answer paraphrases); {n} name, {v} value
    "home": ("{n}はどこに住んでいますか。", lambda w, p: w.places[p.home].name,
             ("{n}は{v}に住んでいます。", "{n}の住まいは{v}です。", "{v}です。{n}は{v}に住んでいる。")),
    "hometown": ("{n}の出身地はどこですか。", lambda w, p: w.places[p.hometown].name,
                 ("{n}は{v}の出身です。", "{n}の出身地は{v}である。", "{v}です。{n}は{v}で生まれました。")),
    "occupation": ("{n}の職業は何ですか。", lambda w, p: p.occupation,
                   ("{n}の職業は{v}です。", "{n}は{v}として働いている。", "{v}です。{n}は{v}をしています。")),
    "age": ("{n}は何歳ですか。", lambda w, p: f"{p.age}歳",
            ("{n}は{v}です。", "{n}の年齢は{v}である。", "{v}です。{n}は今{v}になります。")),
    "hobby": ("{n}の趣味は何ですか。", lambda w, p: p.hobby,
              ("{n}の趣味は{v}です。", "{n}は休みの日によく{v}をする。", "{v}です。{n}は{v}が好きです。")),
    "food": ("{n}の好物は何ですか。", lambda w, p: p.food,
             ("{n}の好物は{v}だ。", "{n}は{v}が大好きです。", "{v}です。{n}の好物は{v}です。")),
}
_PLACE_QUESTIONS: dict[str, tuple[str, Callable[[World, int], str], tuple[str, ...]]] = {
    "region": ("{n}はどの地域にありますか。", lambda w, k: w.places[k].region,
               ("{n}は{v}にある。", "{n}は{v}に位置する町です。", "{v}です。{n}は{v}にあります。")),
    "population": ("{n}の人口は何人ですか。", lambda w, k: f"{w.places[k].population}人",
                   ("{n}の人口は{v}である。", "{n}には{v}が暮らしています。", "{v}です。{n}の人口は{v}です。")),
    "specialty": ("{n}の名産は何ですか。", lambda w, k: w.places[k].specialty,
                  ("{n}の名産は{v}です。", "{n}では{v}がよく知られている。", "{v}です。{n}は{v}が名産です。")),
}


def _value_rule(value: str) -> dict[str, Any]:
    return must(number(value[:-1]) + re.escape(value[-1]) if value[:-1].isdigit() else re.escape(value))


@QUESTION_MAKERS.register("world_facts")
def world_facts_question(generator: TextGenerator, rng: Rng) -> QuestionDraft | None:
    """An attribute of one person (three in four) or place, answered with true sentences about it."""
    world = generator.world
    if rng.random() < 0.75:
        k = int(rng.integers(len(world.persons)))
        person = world.persons[k]
        template, value_of, forms = _PERSON_QUESTIONS[pick(rng, list(_PERSON_QUESTIONS))]
        name, value = person.name, value_of(world, person)

        def support(r: Rng) -> str:
            if r.random() < 0.8:
                return person_fact(world, k, generator.depth(r), r)
            return place_fact(world, person.home, generator.depth(r), r)
    else:
        k = int(rng.integers(len(world.places)))
        template, value_of, forms = _PLACE_QUESTIONS[pick(rng, list(_PLACE_QUESTIONS))]
        name, value = world.places[k].name, value_of(world, k)

        def support(r: Rng) -> str:
            return place_fact(world, k, generator.depth(r), r)

    if not _unique_name(world, name):
        return None

    def compose(r: Rng) -> str:
        return fill(pick(r, forms).format(n=name, v=value), support, r)

    return QuestionDraft(template.format(n=name), "world_facts", [_value_rule(value), should(re.escape(name))],
                         compose)


# ------------------------------------------------------------------------------------------- arithmetic

_FIRST, _NEXT = ("まず、", "最初に、"), ("次に、", "続いて、", "そして、")


@QUESTION_MAKERS.register("arithmetic")
def arithmetic_question(generator: TextGenerator, rng: Rng) -> QuestionDraft:
    """A calculation or a word problem; the answer states the result, then the working step by step."""
    return (_calculation if rng.random() < 0.5 else _word_problem)(generator, rng)


def _calculation(generator: TextGenerator, rng: Rng) -> QuestionDraft:
    top = generator.config.max_operand
    steps: list[str] = []
    text, value = expression(rng, generator.depth(rng), top, steps)
    if not steps:  # a bare number: make it one operation, as the worksheet does
        other = int(rng.integers(1, top + 1))
        text, value = f"{text} + {other}", int(text) + other
        steps.append(f"{text} = {value}")
    heads = ("答えは{v}です。", "{e} = {v}です。", "計算すると{v}になります。")

    def compose(r: Rng) -> str:
        worked = "".join(f"{pick(r, _FIRST if i == 0 else _NEXT)}{s}。" for i, s in enumerate(steps))
        return pick(r, heads).format(v=value, e=text) + worked

    keywords = [must(number(value)), should(loose(steps[-1].rsplit(" = ", 1)[0]) + r"\s*=\s*" + number(value))]
    return QuestionDraft(f"次の計算をしなさい。{text} = ?", "arithmetic", keywords, compose)


def _word_problem(generator: TextGenerator, rng: Rng) -> QuestionDraft:
    """The worksheet's own word problem (so the wording is the one the model trained on), split into its parts."""
    problem, formula_line, answer_line = generator.word_problem(rng).split("\n")
    formula, answer = formula_line.removeprefix("式: "), answer_line.removeprefix("答え: ")
    heads = ("答えは{a}です。式は{f}です。", "{f}なので、{a}です。", "式を立てると{f}となり、答えは{a}です。",
             "{a}です。{f}と計算できます。")

    def compose(r: Rng) -> str:
        return pick(r, heads).format(a=answer, f=formula)

    digits = re.match(r"[0-9]+", answer)
    value_rule = must(number(digits.group()) + re.escape(answer[digits.end():])) if digits else must(re.escape(answer))
    return QuestionDraft(problem, "arithmetic", [value_rule, should(loose(formula))], compose)


# --------------------------------------------------------------------------------------------- dialogue

_CONVERSATION = {
    # question (asked of the person), value, reply paraphrases; {p} a place phrase of the value
    "home": ("今はどこに住んでいますか。", lambda w, p: p.home, ("{p}に住んでいます。", "今は{p}に住んでいます。")),
    "hometown": ("出身はどちらですか。", lambda w, p: p.hometown, ("{p}の出身です。", "生まれは{p}です。")),
}
_REPLIES = {
    "occupation": ("お仕事は何ですか。", lambda p: p.occupation, ("{v}をしています。", "{v}として働いています。")),
    "hobby": ("趣味は何ですか。", lambda p: p.hobby, ("{v}です。{d}によくやります。", "趣味は{v}です。")),
}


@QUESTION_MAKERS.register("dialogue")
def dialogue_question(generator: TextGenerator, rng: Rng) -> QuestionDraft | None:
    """A question put to one of the world's people (half), or an instruction with a list input (half)."""
    world = generator.world
    if rng.random() < 0.5:
        return _instruction(generator, rng)
    k = int(rng.integers(len(world.persons)))
    person = world.persons[k]
    if not _unique_name(world, person.name):
        return None
    kind = pick(rng, [*_CONVERSATION, *_REPLIES])
    if kind in _CONVERSATION:
        asked, place_of, forms = _CONVERSATION[kind]
        place = place_of(world, person)
        value = world.places[place].name

        def head(r: Rng) -> str:
            return pick(r, forms).format(p=place_phrase(world, place, generator.depth(r), r))
    else:
        asked, value_of, forms = _REPLIES[kind]
        value = value_of(person)

        def head(r: Rng) -> str:
            return pick(r, forms).format(v=value, d=pick(r, lx.WEEKDAYS))

    def more(r: Rng) -> str:
        return person_fact(world, k, 1, r).replace(person.name, "私", 1)

    def compose(r: Rng) -> str:
        return fill(head(r), more, r)

    return QuestionDraft(f"{person.name}さん、{asked}", "dialogue", [must(re.escape(value))], compose)


def _instruction(generator: TextGenerator, rng: Rng) -> QuestionDraft:
    world, size = generator.world, 2 + 2 * generator.depth(rng)
    count = min(size, len(world.persons))
    names = [world.persons[int(k)].name for k in rng.choice(len(world.persons), size=count, replace=False)]
    numbers = [int(x) for x in rng.integers(1, 1000, size=size)]
    task, given, answer, rule, heads = pick(rng, [
        ("次の名前を五十音順に並べてください。", "、".join(names), "、".join(sorted(names)),
         must(r"[、,・\s]*".join(map(re.escape, sorted(names)))), ("{a}", "五十音順に並べると、{a}です。")),
        ("次の名前を逆の順番に書いてください。", "、".join(names), "、".join(reversed(names)),
         must(r"[、,・\s]*".join(map(re.escape, reversed(names)))), ("{a}", "逆の順番にすると、{a}です。")),
        ("次の数の合計を求めてください。", "、".join(map(str, numbers)), str(sum(numbers)),
         must(number(sum(numbers))),
         ("合計は{a}です。", "すべて足すと{a}になります。", "合計は{a}です。{s} = {a}。", "{s} = {a}なので、合計は{a}です。")),
        ("次の数のうち、最も大きいものを答えてください。", "、".join(map(str, numbers)), str(max(numbers)),
         must(number(max(numbers))), ("{a}です。", "最も大きい数は{a}です。", "{a}です。{g}の中で最も大きい数です。")),
    ])
    plus = " + ".join(map(str, numbers))

    def compose(r: Rng) -> str:
        return pick(r, heads).format(a=answer, s=plus, g=given)

    return QuestionDraft(f"{task}{given}", "instruction", [rule], compose)


# ------------------------------------------------------------------------------------------- structured

_COLUMNS: dict[str, Callable[[World, Person], str]] = {
    "年齢": lambda w, p: str(p.age), "職業": lambda w, p: p.occupation, "住所": lambda w, p: w.places[p.home].name,
    "出身地": lambda w, p: w.places[p.hometown].name, "趣味": lambda w, p: p.hobby, "好物": lambda w, p: p.food,
}


@QUESTION_MAKERS.register("structured")
def structured_question(generator: TextGenerator, rng: Rng) -> QuestionDraft | None:
    """A person's record as key-value pairs (three in five), or who is oldest among a few people."""
    world = generator.world
    if rng.random() < 0.6:
        person = world.persons[int(rng.integers(len(world.persons)))]
        if not _unique_name(world, person.name):
            return None
        names = list(_COLUMNS)
        columns = [names[int(c)] for c in sorted(rng.choice(len(names), size=3, replace=False))]
        values = [_COLUMNS[c](world, person) for c in columns]
        keywords = [must(number(v) if v.isdigit() else re.escape(v)) for v in values] + [should(re.escape(person.name))]
        separators = ("、", "。", " / ")

        def compose(r: Rng) -> str:
            sep = pick(r, separators)
            pairs = sep.join(f"{c}: {v}" for c, v in zip(columns, values))
            return pick(r, ("氏名: {n}{s}{p}", "{n}の記録です。{p}", "{p}({n})")).format(n=person.name, s=sep, p=pairs)

        question = f"{person.name}の{'、'.join(columns)}を記録の形式で答えてください。"
        return QuestionDraft(question, "structured", keywords, compose)
    count = min(int(rng.integers(3, 6)), len(world.persons))
    group = [world.persons[int(k)] for k in rng.choice(len(world.persons), size=count, replace=False)]
    top = max(p.age for p in group)
    oldest = [p for p in group if p.age == top]
    if len(oldest) > 1 or not all(_unique_name(world, p.name) for p in group):
        return None
    name = oldest[0].name

    def compose(r: Rng) -> str:
        listing = "、".join(f"{p.name}は{p.age}歳" for p in group)
        return pick(r, ("{n}({a}歳)です。{l}です。", "最も年齢が高いのは{n}で、{a}歳です。{l}です。")).format(
            n=name, a=top, l=listing)

    question = f"{'、'.join(p.name for p in group)}の中で、最も年齢が高いのは誰ですか。"
    return QuestionDraft(question, "structured", [must(re.escape(name)), should(number(top) + "歳")], compose)


# ------------------------------------------------------------------------------------------------ build


def _rng(seed: int, *key: int) -> Rng:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


@dataclass(frozen=True)
class LabQuestion:
    """One built question: its upstream JSON record and its 100-character-or-less few-shot example answer."""

    record: dict[str, Any]
    example: str


def build_question(generator: TextGenerator, draft: QuestionDraft, index: int, seed: int, answers: int,
                   id_width: int) -> LabQuestion:
    """The draft's reference set and few-shot example, each answer from its own (seed, stream, index, j)."""
    references = [draft.compose(_rng(seed, ANSWER_STREAM, index, j)) for j in range(answers)]
    candidates = [draft.compose(_rng(seed, EXAMPLE_STREAM, index, c)) for c in range(EXAMPLE_CANDIDATES)]
    fitting = [c for c in candidates if len(c) <= ANSWER_LIMIT] or [c[:ANSWER_LIMIT] for c in candidates]
    example = max(fitting, key=len)
    record = {
        "question_id": f"Q{index + 1:0{id_width}d}",
        "question": draft.question,
        "category": draft.category,
        "note": f"lab set: {generator.config.name}, seed {seed}, question {index}",
        "keywords": draft.keywords,
        "answers": {"synthetic": references},
    }
    return LabQuestion(record, example)


def build_lab_set(generators: Sequence[TextGenerator], questions: int, seed: int, answers: int) -> list[LabQuestion]:
    """`questions` distinct questions, question i from generators[i % len(generators)] (see the module docstring)."""
    if questions < 1 or answers < 1:
        raise ValueError(f"questions and answers must be >= 1, got {questions} and {answers}")
    if not generators:
        raise ValueError("no generators")
    id_width = max(2, len(str(questions)))
    built: list[LabQuestion] = []
    seen: set[str] = set()
    for index in range(questions):
        generator = generators[index % len(generators)]
        maker = QUESTION_MAKERS.get(generator.config.name)
        for attempt in range(MAX_ATTEMPTS):
            draft = maker(generator, _rng(seed, QUESTION_STREAM, index, attempt))
            if draft is not None and draft.question not in seen:
                break
        else:
            raise ValueError(f"question {index}: no new {generator.config.name} question in {MAX_ATTEMPTS} draws; "
                             f"the world is too small for {questions} distinct questions (raise n_entities)")
        seen.add(draft.question)
        built.append(build_question(generator, draft, index, seed, answers, id_width))
    return built


def write_lab_set(built: Sequence[LabQuestion], out: Path, manifest: dict[str, Any]) -> Path:
    """Qxx.json per question, questions.jsonl of examples and lab_set.json; replaces an earlier build in `out`."""
    out = Path(out)
    if out.exists():
        if not out.is_dir():
            raise FileExistsError(f"{out} is a file, not a folder")
        if any(out.iterdir()) and not (out / MANIFEST).is_file():
            raise FileExistsError(f"{out} is not empty and holds no {MANIFEST}: refusing to write a question set "
                                  "over other files")
        for old in [*out.glob("Q*.json"), out / "questions.jsonl", out / MANIFEST]:
            old.unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    for question in built:
        text = json.dumps(question.record, ensure_ascii=False, indent=1) + "\n"
        (out / f"{question.record['question_id']}.json").write_text(text, encoding="utf-8")
    examples = "".join(json.dumps({"question": q.record["question"], "answer": q.example}, ensure_ascii=False) + "\n"
                       for q in built)
    (out / "questions.jsonl").write_text(examples, encoding="utf-8")
    (out / MANIFEST).write_text(json.dumps(manifest, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return out


def build_question_set(generators: Sequence[str], out: Path | str, *, seed: int = 0, questions: int = 24,
                       answers: int = 50, options: dict[str, Any] | None = None) -> Path:
    """A lab question set about the world of the named synthetic text families (their generators at `seed`,
    the world a model trained on `text_config(name, seed=seed)` documents has read about)."""
    made = make_generators(list(generators), seed, dict(options or {}))
    return write_lab_set(build_lab_set(made, questions, seed, answers), Path(out),
                         {"generators": list(generators), "seed": seed, "questions": questions, "answers": answers})


def make_generators(names: Sequence[str], seed: int, options: dict[str, Any]) -> list[TextGenerator]:
    """One generator per family name, all of the same world (seed and text options); bad names or keys raise."""
    if not names:
        raise ValueError(f"no generator named; valid: {', '.join(QUESTION_MAKERS)}")
    clash = sorted({"name", "seed"} & set(options))
    if clash:
        raise ValueError(f"--text cannot set {clash}: use --generator and --seed")
    for name in names:
        QUESTION_MAKERS.get(name)
    known = set().union(*(_fields(n) for n in names)) - {"name", "seed"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(f"unknown --text option(s) {unknown}; valid: {sorted(known)}")
    configs = [text_config(n, seed=seed, **{k: v for k, v in options.items() if k in _fields(n)}) for n in names]
    return [create_text_generator(config) for config in configs]


def _fields(name: str) -> set[str]:
    return {f.name for f in fields(TEXT_GENERATORS.get(name).config_class)}


# -------------------------------------------------------------------------------------------------- CLI


def _option(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def add_build_set_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--generator", default="world_facts",
                        help=f"text generator family, or several comma-separated ({', '.join(QUESTION_MAKERS)})")
    parser.add_argument("--questions", type=int, default=50, help="number of questions (the harness needs >= 21)")
    parser.add_argument("--seed", type=int, default=0, help="the world's seed (as in the corpus) and the questions'")
    parser.add_argument("--answers", type=int, default=1000, help="reference answers per question (upstream: 1000)")
    parser.add_argument("--text", type=_option, action="append", default=[], metavar="KEY=VALUE",
                        help="text generator option, e.g. vocab_size=400 n_entities=100 template_depth=2")
    parser.add_argument("--out", type=Path, required=True, help="folder to write Qxx.json + questions.jsonl into")
    return parser


def run_build_set(args: argparse.Namespace) -> int:
    """Build and write the set; 2 with a message on bad input."""
    names = [n.strip() for n in args.generator.split(",") if n.strip()]
    options = dict(args.text)
    try:
        generators = make_generators(names, args.seed, options)
        built = build_lab_set(generators, args.questions, args.seed, args.answers)
        manifest = {"format": FORMAT_VERSION, "generators": names, "seed": args.seed, "questions": args.questions,
                    "answers": args.answers, "text": options}
        out = write_lab_set(built, args.out, manifest)
    except (UnknownNameError, ValueError, TypeError, FileExistsError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    categories = sorted({q.record["category"] for q in built})
    print(f"wrote {len(built)} questions ({', '.join(categories)}), {args.answers} reference answers each, to {out}")
    if len(built) < 21:
        print("note: 20-shot prompts (lab eval pfgen) need at least 21 questions", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = add_build_set_arguments(argparse.ArgumentParser(prog="lab eval pfgen-build-set"))
    return run_build_set(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
