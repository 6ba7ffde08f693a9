"""Facts about the seed's world stated as Japanese sentences, with nested relative clauses and Q&A.

`template_depth` bounds how deeply noun phrases nest: depth 1 is a bare name ("ミナセ"), depth 2 adds a
clause ("医師のミナセ"), depth 3 nests another entity inside it ("青川町に住むカイトの友人であるミナセ").
"""

from __future__ import annotations

import numpy as np

from synth_render.text.base import TextGenerator, pick
from synth_render.text.registry import TEXT_GENERATORS
from synth_render.text.world import World


def person_phrase(world: World, k: int, depth: int, rng: np.random.Generator) -> str:
    """A noun phrase for person k: its name under `depth - 1` levels of true relative clauses."""
    person = world.persons[k]
    if depth <= 1:
        return person.name
    choices = [
        lambda: f"{person.occupation}の",
        lambda: f"{person.age}歳の",
        lambda: f"{person.hobby}が趣味の",
        lambda: f"{place_phrase(world, person.home, depth - 1, rng)}に住む",
        lambda: f"{place_phrase(world, person.hometown, depth - 1, rng)}出身の",
    ]
    if person.friends:
        choices.append(lambda: f"{person_phrase(world, pick(rng, person.friends), depth - 1, rng)}の友人である")
    return pick(rng, choices)() + person.name


def place_phrase(world: World, k: int, depth: int, rng: np.random.Generator) -> str:
    place = world.places[k]
    if depth <= 1:
        return place.name
    choices = [
        lambda: f"{place.region}にある",
        lambda: f"{place.specialty}が名産の",
        lambda: f"人口{place.population}人の",
    ]
    if place.neighbour != k:
        choices.append(lambda: f"{place_phrase(world, place.neighbour, depth - 1, rng)}の隣にある")
    return pick(rng, choices)() + place.name


def person_fact(world: World, k: int, depth: int, rng: np.random.Generator) -> str:
    """One true sentence about person k, in one of several surface forms."""
    p = world.persons[k]
    subject = person_phrase(world, k, depth, rng)
    home = place_phrase(world, p.home, max(1, depth - 1), rng)
    town = place_phrase(world, p.hometown, max(1, depth - 1), rng)
    forms = [
        f"{subject}は{home}に住んでいる。", f"{subject}の住まいは{home}です。",
        f"{subject}は{town}の出身です。", f"{subject}の出身地は{town}である。",
        f"{subject}は{p.age}歳です。", f"{subject}の年齢は{p.age}歳である。",
        f"{subject}の職業は{p.occupation}です。", f"{subject}は{p.occupation}として働いている。",
        f"{subject}の趣味は{p.hobby}です。", f"{subject}は休みの日によく{p.hobby}をする。",
        f"{subject}の好物は{p.food}だ。",
    ]
    if p.friends:
        friend = person_phrase(world, pick(rng, p.friends), max(1, depth - 1), rng)
        forms += [f"{subject}は{friend}の友人です。", f"{subject}と{friend}は友達である。"]
    return pick(rng, forms)


def place_fact(world: World, k: int, depth: int, rng: np.random.Generator) -> str:
    q = world.places[k]
    subject = place_phrase(world, k, depth, rng)
    forms = [f"{subject}は{q.region}にある。", f"{subject}の人口は{q.population}人である。",
             f"{subject}の名産は{q.specialty}です。", f"{subject}では{q.specialty}がよく知られている。"]
    if q.neighbour != k:
        forms.append(f"{subject}は{place_phrase(world, q.neighbour, max(1, depth - 1), rng)}の隣にある。")
    residents = world.residents(k)
    if residents:
        forms.append(f"{subject}には{world.persons[pick(rng, residents)].name}が住んでいる。")
    return pick(rng, forms)


def person_question(world: World, k: int, rng: np.random.Generator) -> str:
    p = world.persons[k]
    q, a = pick(rng, [
        (f"{p.name}はどこに住んでいますか。", f"{world.places[p.home].name}です。"),
        (f"{p.name}の職業は何ですか。", f"{p.occupation}です。"),
        (f"{p.name}は何歳ですか。", f"{p.age}歳です。"),
        (f"{p.name}の趣味は何ですか。", f"{p.hobby}です。"),
    ])
    return f"問: {q}\n答: {a}"


@TEXT_GENERATORS.register("world_facts")
class WorldFacts(TextGenerator):
    """A short article about one entity of the world and its neighbours, ending with a question or two."""

    def compose(self, rng: np.random.Generator, n_units: int) -> str:
        world = self.world
        if rng.random() < 0.75:
            focus = int(rng.integers(len(world.persons)))
            related = [focus, *world.persons[focus].friends]
            lines = [f"【{world.persons[focus].name}について】"]
            for _ in range(n_units):
                k = focus if rng.random() < 0.6 else pick(rng, related)
                lines.append(person_fact(world, k, self.depth(rng), rng) if rng.random() < 0.85
                             else place_fact(world, world.persons[k].home, self.depth(rng), rng))
            lines.append(person_question(world, focus, rng))
        else:
            focus = int(rng.integers(len(world.places)))
            lines = [f"【{world.places[focus].name}について】"]
            residents = world.residents(focus)
            for _ in range(n_units):
                if residents and rng.random() < 0.4:
                    lines.append(person_fact(world, pick(rng, residents), self.depth(rng), rng))
                else:
                    lines.append(place_fact(world, focus, self.depth(rng), rng))
        return "\n".join(lines)
