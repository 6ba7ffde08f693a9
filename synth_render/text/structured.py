"""Tables, lists and records about the world rendered as text, each followed by a question answered from it.

`template_depth` is the nesting depth of lists (places > residents > attributes) and of records.
"""

from __future__ import annotations

import numpy as np

from synth_render.text.base import TextGenerator, pick
from synth_render.text.registry import TEXT_GENERATORS

_COLUMNS = {"年齢": lambda w, p: f"{p.age}", "職業": lambda w, p: p.occupation,
            "住所": lambda w, p: w.places[p.home].name, "出身地": lambda w, p: w.places[p.hometown].name,
            "趣味": lambda w, p: p.hobby, "好物": lambda w, p: p.food}


@TEXT_GENERATORS.register("structured")
class Structured(TextGenerator):
    """One of: a pipe table, a CSV block, a nested bulleted list, or key-value records."""

    def compose(self, rng: np.random.Generator, n_units: int) -> str:
        world = self.world
        rows = [int(k) for k in rng.choice(len(world.persons), size=min(n_units, len(world.persons)), replace=False)]
        return pick(rng, [self.table, self.csv, self.nested_list, self.records])(rng, rows)

    def _columns(self, rng: np.random.Generator) -> list[str]:
        names = list(_COLUMNS)
        picked = rng.choice(len(names), size=int(rng.integers(2, len(names) + 1)), replace=False)
        return [names[int(k)] for k in sorted(picked)]

    def _question(self, rows: list[int]) -> str:
        persons = [self.world.persons[k] for k in rows]
        top = max(p.age for p in persons)
        names = "と".join(dict.fromkeys(p.name for p in persons if p.age == top))  # ties: every oldest person
        return f"問: この中で最も年齢が高いのは誰ですか。\n答: {names}({top}歳)です。"

    def table(self, rng: np.random.Generator, rows: list[int]) -> str:
        columns = self._columns(rng)
        lines = ["以下は住民の一覧表です。", "| 名前 | " + " | ".join(columns) + " |", "|" + "---|" * (len(columns) + 1)]
        for k in rows:
            p = self.world.persons[k]
            lines.append(f"| {p.name} | " + " | ".join(_COLUMNS[c](self.world, p) for c in columns) + " |")
        return "\n".join(lines + ["", self._question(rows)])

    def csv(self, rng: np.random.Generator, rows: list[int]) -> str:
        columns = ["年齢", *[c for c in self._columns(rng) if c != "年齢"]]
        lines = ["次のデータはCSV形式で書かれています。", "名前," + ",".join(columns)]
        for k in rows:
            person = self.world.persons[k]
            lines.append(person.name + "," + ",".join(_COLUMNS[c](self.world, person) for c in columns))
        return "\n".join(lines + ["", self._question(rows)])

    def nested_list(self, rng: np.random.Generator, rows: list[int]) -> str:
        depth = self.config.template_depth
        lines = ["地域ごとの住民を箇条書きにします。"]
        for place in sorted({self.world.persons[k].home for k in rows}):
            q = self.world.places[place]
            lines.append(f"・{q.name}({q.region}、人口{q.population}人)")
            if depth < 2:
                continue
            for k in (k for k in rows if self.world.persons[k].home == place):
                p = self.world.persons[k]
                lines.append(f"　・{p.name}")
                if depth >= 3:
                    lines += [f"　　・{c}: {_COLUMNS[c](self.world, p)}" for c in self._columns(rng)]
        if depth < 2:
            places = sorted({self.world.persons[k].home for k in rows}, key=lambda q: -self.world.places[q].population)
            lines += ["", "問: この中で人口が最も多いのはどこですか。", f"答: {self.world.places[places[0]].name}です。"]
        else:
            answer = self.world.persons[pick(rng, rows)]
            lines += ["", f"問: {answer.name}が住んでいるのはどこですか。", f"答: {self.world.places[answer.home].name}です。"]
        return "\n".join(lines)

    def records(self, rng: np.random.Generator, rows: list[int]) -> str:
        depth = self.config.template_depth
        blocks = ["登録されている人物の記録は次のとおりです。"]
        for number, k in enumerate(rows, 1):
            p = self.world.persons[k]
            block = [f"記録{number}", f"氏名: {p.name}"] + [f"{c}: {_COLUMNS[c](self.world, p)}" for c in self._columns(rng)]
            if depth >= 2 and p.friends:
                block.append("友人:")
                for f in p.friends:
                    friend = self.world.persons[f]
                    block.append(f"  氏名: {friend.name}" + (f"(年齢: {friend.age})" if depth >= 3 else ""))
            blocks.append("\n".join(block))
        return "\n\n".join(blocks + [self._question(rows)])
