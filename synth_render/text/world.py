"""A small random world (people and places with attributes and relations), a function of the seed alone.

Every family of one seed describes the same world, so a fact stated in a table agrees with the same fact in
a sentence or a dialogue: there is something consistent to learn. `vocab_size` names are generated (katakana
given names, kanji place names) and shared out over `n_entities` entities; with fewer names than entities,
names repeat as they do in real text.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from synth_render.text import lexicon as lx

WORLD_STREAM = 1  # spawn key of the world's random stream: distinct from every per-document [seed, index]


@dataclass(frozen=True)
class Person:
    name: str
    age: int
    occupation: str
    home: int  # index into World.places
    hometown: int
    hobby: str
    food: str
    friends: tuple[int, ...]  # indices into World.persons


@dataclass(frozen=True)
class Place:
    name: str
    region: str
    population: int
    specialty: str
    neighbour: int  # index into World.places (itself when there is a single place)


@dataclass(frozen=True)
class World:
    persons: tuple[Person, ...]
    places: tuple[Place, ...]
    person_names: tuple[str, ...]  # the name pools (vocab_size names in all)
    place_names: tuple[str, ...]
    by_home: tuple[tuple[int, ...], ...]  # residents of each place, precomputed: documents ask often

    def residents(self, place: int) -> tuple[int, ...]:
        return self.by_home[place]


# Words of the fixed lexicon never become names: "ボタン" must stay a button, not a person.
_RESERVED = {word for words in (lx.FOODS, lx.OCCUPATIONS, lx.HOBBIES) for word in words} | {
    word for entry in (*lx.ITEMS, *lx.VERBS) for word in entry}


def _unique(rng: np.random.Generator, count: int, make) -> tuple[str, ...]:
    names: dict[str, None] = {}
    while len(names) < count:
        name = make(rng)
        if name not in _RESERVED:
            names.setdefault(name)
    return tuple(names)


def _person_name(rng: np.random.Generator) -> str:
    length, *morae = rng.integers(len(lx.MORAE), size=4)
    morae = morae[: 2 + int(length) % 2]  # two or three morae
    return "".join(lx.MORAE[m] for m in morae) + lx.NAME_TAILS[int(rng.integers(len(lx.NAME_TAILS)))]


def _place_name(rng: np.random.Generator) -> str:
    first, second, suffix = rng.integers(len(lx.PLACE_KANJI), size=3)
    return lx.PLACE_KANJI[first] + lx.PLACE_KANJI[second] + lx.PLACE_SUFFIXES[int(suffix) % len(lx.PLACE_SUFFIXES)]


def _assign(rng: np.random.Generator, pool: tuple[str, ...], count: int) -> list[str]:
    """`count` names from `pool`: all distinct when the pool is large enough, else every name used."""
    order = rng.permutation(len(pool))
    return [pool[order[k % len(pool)]] for k in range(count)]


@lru_cache(maxsize=32)
def build_world(seed: int, vocab_size: int, n_entities: int) -> World:
    """The world of `seed`: a quarter of entities (and of names) are places, the rest people."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(WORLD_STREAM,)))
    n_places_names = max(1, vocab_size // 4)
    place_pool = _unique(rng, n_places_names, _place_name)
    person_pool = _unique(rng, vocab_size - n_places_names, _person_name)
    n_places = max(1, n_entities // 4)
    n_persons = n_entities - n_places
    place_names = _assign(rng, place_pool, n_places)
    # Attributes are drawn as whole columns: one rng call per attribute, not per entity (worlds of 10^4+).
    regions, foods = rng.integers(len(lx.REGIONS), size=n_places), rng.integers(len(lx.FOODS), size=n_places)
    populations, neighbours = rng.integers(1, 500, size=n_places) * 100, rng.integers(n_places, size=n_places)
    places = tuple(Place(name, lx.REGIONS[regions[q]], int(populations[q]), lx.FOODS[foods[q]], int(neighbours[q]))
                   for q, name in enumerate(place_names))
    ages, (homes, towns) = rng.integers(18, 91, size=n_persons), rng.integers(n_places, size=(2, n_persons))
    jobs, hobbies = rng.integers(len(lx.OCCUPATIONS), size=n_persons), rng.integers(len(lx.HOBBIES), size=n_persons)
    favourites = rng.integers(len(lx.FOODS), size=n_persons)
    n_friends = rng.integers(1, 4, size=n_persons)
    friend_picks = rng.integers(max(1, n_persons - 1), size=(n_persons, 3))
    persons = []
    for k, name in enumerate(_assign(rng, person_pool, n_persons)):
        picks = friend_picks[k, : n_friends[k]] if n_persons > 1 else []
        friends = tuple(sorted({int(j) + int(j >= k) for j in picks}))  # skip oneself; repeats collapse
        persons.append(Person(name, int(ages[k]), lx.OCCUPATIONS[jobs[k]], int(homes[k]), int(towns[k]),
                              lx.HOBBIES[hobbies[k]], lx.FOODS[favourites[k]], friends))
    residents: list[list[int]] = [[] for _ in range(n_places)]
    for k, person in enumerate(persons):
        residents[person.home].append(k)
    by_home = tuple(tuple(r) for r in residents)
    return World(tuple(persons), places, person_pool, place_pool, by_home)
