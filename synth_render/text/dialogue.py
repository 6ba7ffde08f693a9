"""Instructions with their responses, and dialogues between the world's people that stay true to it.

`template_depth` sets how much detail a reply carries (nested noun phrases) and how long instruction
inputs are (2 + 2 * depth items).
"""

from __future__ import annotations

import numpy as np

from synth_render.text import lexicon as lx
from synth_render.text.base import TextGenerator, pick
from synth_render.text.facts import person_phrase, place_phrase
from synth_render.text.registry import TEXT_GENERATORS


@TEXT_GENERATORS.register("dialogue")
class Dialogue(TextGenerator):
    """Half the documents are a conversation, half a list of instruction / response pairs."""

    def compose(self, rng: np.random.Generator, n_units: int) -> str:
        if rng.random() < 0.5:
            return self.conversation(rng, n_units)
        return "\n\n".join(self.instruction(rng) for _ in range(n_units))

    def conversation(self, rng: np.random.Generator, n_units: int) -> str:
        world = self.world
        a, b = (int(k) for k in rng.choice(len(world.persons), size=2, replace=len(world.persons) < 2))
        pa, pb = world.persons[a], world.persons[b]
        lines = [f"{pa.name}: {pb.name}さん、こんにちは。", f"{pb.name}: こんにちは、{pa.name}さん。"]
        for _ in range(n_units):
            depth = self.depth(rng)
            asker, answerer, k = (pa, pb, b) if rng.random() < 0.5 else (pb, pa, a)
            other = int(rng.integers(len(world.persons)))
            item, counter = pick(rng, lx.ITEMS)
            price, count = int(rng.integers(1, 20)) * 10, int(rng.integers(1, 10))
            question, reply = pick(rng, [
                ("今はどこに住んでいますか。", f"{place_phrase(world, answerer.home, depth, rng)}に住んでいます。"),
                ("お仕事は何ですか。", f"{answerer.occupation}をしています。"),
                ("趣味は何ですか。", f"{answerer.hobby}です。{pick(rng, lx.WEEKDAYS)}によくやります。"),
                ("出身はどちらですか。", f"{place_phrase(world, answerer.hometown, depth, rng)}の出身です。"),
                (f"{world.persons[other].name}さんを知っていますか。",
                 f"はい、{person_phrase(world, other, depth, rng)}は私の友人です。" if other in world.persons[k].friends
                 else "いいえ、よく知りません。"),
                (f"{item}を{count}{counter}ください。1{counter}{price}円ですよね。",
                 f"はい、{count}{counter}で{price * count}円です。"),
            ])
            lines += [f"{asker.name}: {question}", f"{answerer.name}: {reply}"]
        lines.append(f"{pa.name}: ありがとうございました。またね。")
        return "\n".join(lines)

    def instruction(self, rng: np.random.Generator) -> str:
        world, size = self.world, 2 + 2 * self.depth(rng)
        names = [world.persons[int(k)].name for k in rng.choice(len(world.persons), size=min(size, len(world.persons)),
                                                                 replace=False)]
        numbers = [int(x) for x in rng.integers(1, 1000, size=size)]
        person = world.persons[int(rng.integers(len(world.persons)))]
        plain, polite, obj = pick(rng, lx.VERBS)
        task, given, answer = pick(rng, [
            ("次の名前を五十音順に並べてください。", "、".join(names), "、".join(sorted(names))),
            ("次の名前を逆の順番に書いてください。", "、".join(names), "、".join(reversed(names))),
            ("次の数の合計を求めてください。", "、".join(map(str, numbers)), f"合計は{sum(numbers)}です。"),
            ("次の数のうち、最も大きいものを答えてください。", "、".join(map(str, numbers)), f"{max(numbers)}です。"),
            ("次の文を丁寧な言い方に直してください。", f"{person.name}は{obj}を{plain}。", f"{person.name}は{obj}を{polite}。"),
            ("次の人物の職業を答えてください。", person.name, f"{person.name}の職業は{person.occupation}です。"),
        ])
        return f"### 指示\n{task}\n### 入力\n{given}\n### 応答\n{answer}"
