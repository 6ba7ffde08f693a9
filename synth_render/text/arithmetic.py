"""Arithmetic with worked answers, and word problems about the world's people, solved step by step.

`template_depth` is the depth of the expression tree (and the number of events in a word problem), so
deeper templates need more intermediate steps. Every number shown is exact: divisions always divide.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from synth_render.text import lexicon as lx
from synth_render.text.base import TextGenerator, pick
from synth_render.text.config import TextGenConfig
from synth_render.text.registry import TEXT_GENERATORS

_APPLY = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "×": lambda a, b: a * b, "÷": lambda a, b: a // b}


@dataclass
class ArithmeticConfig(TextGenConfig):
    name: str = "arithmetic"
    doc_length: list[int] = field(default_factory=lambda: [3, 8])  # problems per document
    max_operand: int = 100  # operands are drawn from [1, max_operand]

    def validate(self) -> None:
        super().validate()
        if self.max_operand < 2:
            raise ValueError(f"text.max_operand must be >= 2, got {self.max_operand}")


def expression(rng: np.random.Generator, depth: int, max_operand: int, steps: list[str]) -> tuple[str, int]:
    """A random expression of at most `depth` nested operations: (text, value); `steps` gets each operation."""
    if depth == 0 or rng.random() < 0.25:
        value = int(rng.integers(1, max_operand + 1))
        return str(value), value
    left_text, left = expression(rng, depth - 1, max_operand, steps)
    op = pick(rng, "+-×÷")
    if op == "÷":
        divisors = [d for d in range(2, 10) if left % d == 0]
        if not divisors:
            op = "+"
        else:
            divisor = pick(rng, divisors)
            right_text, right = str(divisor), divisor
    if op != "÷":
        right_text, right = expression(rng, depth - 1, max_operand, steps)
    if op == "-" and right > left:
        op = "+"  # keep every intermediate result non-negative
    if op == "×" and left * right > 10**6:
        op = "+"
    value = _APPLY[op](left, right)
    steps.append(f"{left} {op} {right} = {value}")
    wrap = lambda text: text if text.isdigit() else f"({text})"  # noqa: E731
    return f"{wrap(left_text)} {op} {wrap(right_text)}", value


@TEXT_GENERATORS.register("arithmetic")
class Arithmetic(TextGenerator):
    """A worksheet: calculations and word problems, each with its steps and answer."""

    config_class = ArithmeticConfig

    def compose(self, rng: np.random.Generator, n_units: int) -> str:
        problems = [self.calculation(rng) if rng.random() < 0.5 else self.word_problem(rng) for _ in range(n_units)]
        return "\n\n".join(f"第{k + 1}問\n{text}" for k, text in enumerate(problems))

    def calculation(self, rng: np.random.Generator) -> str:
        steps: list[str] = []
        text, value = expression(rng, self.depth(rng), self.config.max_operand, steps)
        if not steps:  # a bare number: make it one operation
            other = int(rng.integers(1, self.config.max_operand + 1))
            text, value = f"{text} + {other}", int(text) + other
            steps.append(f"{text} = {value}")
        worked = "\n".join(f"{'まず' if k == 0 else '次に'}、{s}。" for k, s in enumerate(steps))
        return f"次の計算をしなさい。\n{text} = ?\n{worked}\n答え: {value}"

    def word_problem(self, rng: np.random.Generator) -> str:
        world, top = self.world, self.config.max_operand
        k = int(rng.integers(len(world.persons)))
        person = world.persons[k]
        item, counter = pick(rng, lx.ITEMS)
        if rng.random() < 0.3:
            price, count = int(rng.integers(1, 20)) * 10, int(rng.integers(2, 13))
            return (f"{item}は1{counter}{price}円です。{person.name}は{world.places[person.home].name}の店で"
                    f"{item}を{count}{counter}買いました。代金はいくらですか。\n"
                    f"式: {price} × {count} = {price * count}\n答え: {price * count}円")
        value = int(rng.integers(1, top + 1))
        sentences = [f"{person.name}は{item}を{value}{counter}持っています。"]
        formula = str(value)
        for _ in range(self.depth(rng)):
            amount = int(rng.integers(1, top + 1))
            friend = world.persons[pick(rng, person.friends)].name if person.friends else "母"
            if rng.random() < 0.5 or amount > value:
                sentences.append(f"{friend}から{item}を{amount}{counter}もらいました。")
                value, formula = value + amount, f"{formula} + {amount}"
            else:
                sentences.append(f"{friend}に{item}を{amount}{counter}あげました。")
                value, formula = value - amount, f"{formula} - {amount}"
        sentences.append(f"{person.name}の{item}は何{counter}になりましたか。")
        return f"{''.join(sentences)}\n式: {formula} = {value}\n答え: {value}{counter}"
