"""The task suite: skills whose answers a program checks exactly, so every claim is an accuracy.

Four skills of graded difficulty, each a generator of operands, the one right answer (its verifier is exact
string equality after stripping spaces), several phrasings of the instruction and a plain-text rendering:

    count    how often a letter occurs in a word        "a in banana" -> "3"
    reverse  a word backwards                           "stone" -> "enots"
    sort     a word's letters in alphabetical order     "stone" -> "enost"
    add      the sum of two 2-3 digit numbers           "347 + 85" -> "432"

Train and test are disjoint by construction: every item has a key (its word; for an addition the unordered
pair of operands), and a hash of the key puts it in the test half or the train half once and for all (a test
word never appears in any training item of any skill, nor in the base model's corpus). `held_out_items` is a fixed
sample of the test half (seeded); `training_items` draws from the train half.

The plain rendering ("reverse stone = enots") is what the base model meets in its pretraining text
(`scratchlm.posttraining.recipe`): it learns the skills raw, and fine-tuning teaches it to answer the phrasings
inside a conversation.
"""

from __future__ import annotations

import random
import string
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from scratchlm.errors import ConfigError

TEST_SHARE = 5  # one key in TEST_SHARE is held out for testing
WORD_LENGTHS = (3, 6)  # shortest and longest word
LETTERS = string.ascii_lowercase


@dataclass(frozen=True)
class TaskItem:
    """One question of a skill: its `operands`, one `phrasing` of the instruction (`question`), the `answer`."""

    skill: str
    operands: tuple
    question: str
    answer: str

    def verify(self, response: str) -> bool:
        """True when `response` is exactly the answer (surrounding spaces and newlines aside)."""
        return response.strip() == self.answer

    def messages(self) -> list[dict[str, str]]:
        """The item as a conversation: the question from the user, the answer from the assistant."""
        return [{"role": "user", "content": self.question}, {"role": "assistant", "content": self.answer}]


@dataclass(frozen=True)
class Skill:
    """A skill: `sample` draws operands, `solve` gives the answer, `key` the unit that is held out.

    phrasings: format strings of the instruction ({0}, {1}: the operands); raw: the plain rendering.
    difficulty: 1 (easiest) to 4, the order the lesson reports them in.
    """

    name: str
    difficulty: int
    sample: Callable[[random.Random], tuple]
    solve: Callable[[tuple], str]
    key: Callable[[tuple], str]
    phrasings: tuple[str, ...]
    raw: str

    def is_test(self, operands: tuple) -> bool:
        """Whether `operands` belong to the held-out test half (a fixed function of their key)."""
        return zlib.crc32(self.key(operands).encode()) % TEST_SHARE == 0

    def item(self, operands: tuple, phrasing: int = 0) -> TaskItem:
        question = self.phrasings[phrasing % len(self.phrasings)].format(*operands)
        return TaskItem(self.name, operands, question, self.solve(operands))

    def render_raw(self, operands: tuple) -> str:
        """The plain-text line the base model learns from: "reverse stone = enots"."""
        return self.raw.format(*operands, self.solve(operands))


def random_word(rng: random.Random) -> str:
    """A lowercase word of 3 to 6 random letters (no dictionary: nothing to download, every length alike)."""
    return "".join(rng.choice(LETTERS) for _ in range(rng.randint(*WORD_LENGTHS)))


COUNTS = (0, 1, 2, 3)  # the answers of `count`, equally likely


def _count_operands(rng: random.Random) -> tuple:
    """A letter and a word that holds it exactly k times, k drawn uniformly from COUNTS. (Drawing the letter
    from a random word instead makes "1" the answer about 70% of the time, and a model that always says "1" scores
    that much: a skill must not be passable by its most common answer.)"""
    count = rng.choice(COUNTS)
    letter = rng.choice(LETTERS)
    length = rng.randint(max(count, WORD_LENGTHS[0]), WORD_LENGTHS[1])
    others = LETTERS.replace(letter, "")
    word = [rng.choice(others) for _ in range(length)]
    for position in rng.sample(range(length), count):
        word[position] = letter
    return (letter, "".join(word))


def _add_operands(rng: random.Random) -> tuple:
    return (rng.randint(10, 999), rng.randint(10, 999))


SKILLS: dict[str, Skill] = {
    s.name: s
    for s in (
        Skill(
            "count",
            1,
            _count_operands,
            lambda o: str(o[1].count(o[0])),
            lambda o: o[1],
            ("How many {0} are in {1}?", "Count the letter {0} in {1}.", "In {1}, how many times does {0} occur?"),
            "count {0} in {1} = {2}",
        ),
        Skill(
            "reverse",
            2,
            lambda rng: (random_word(rng),),
            lambda o: o[0][::-1],
            lambda o: o[0],
            ("Reverse {0}.", "Write {0} backwards.", "What is {0} spelled backwards?"),
            "reverse {0} = {1}",
        ),
        Skill(
            "sort",
            3,
            lambda rng: (random_word(rng),),
            lambda o: "".join(sorted(o[0])),
            lambda o: o[0],
            ("Sort the letters of {0}.", "Put the letters of {0} in alphabetical order.", "Alphabetize {0}."),
            "sort {0} = {1}",
        ),
        Skill(
            "add",
            4,
            _add_operands,
            lambda o: str(o[0] + o[1]),
            lambda o: f"{min(o)}+{max(o)}",
            ("What is {0} + {1}?", "Add {0} and {1}.", "Compute {0} plus {1}."),
            "{0} + {1} = {2}",
        ),
    )
}


def _skill(name: str) -> Skill:
    if name not in SKILLS:
        raise ConfigError(f"unknown skill {name!r}; the skills are {', '.join(SKILLS)}")
    return SKILLS[name]


def _draw(skill: Skill, rng: random.Random, test: bool) -> tuple:
    while True:  # rejection: about one draw in five lands in the test half
        operands = skill.sample(rng)
        if skill.is_test(operands) == test:
            return operands


def training_items(seed: int, skills: Sequence[str] = tuple(SKILLS)) -> Iterator[TaskItem]:
    """An endless stream of training items, skills in turn, each with a random phrasing (seeded)."""
    chosen = [_skill(name) for name in skills]
    rng = random.Random(seed)
    while True:
        for skill in chosen:
            yield skill.item(_draw(skill, rng, test=False), rng.randrange(len(skill.phrasings)))


def held_out_items(n_per_skill: int, seed: int = 0, skills: Sequence[str] = tuple(SKILLS)) -> list[TaskItem]:
    """`n_per_skill` distinct held-out items of each skill, phrasings in turn; the same for the same seed."""
    items = []
    for name in skills:
        skill, rng, seen = _skill(name), random.Random(f"test:{seed}:{name}"), set()
        for _ in range(100 * n_per_skill + 1000):
            operands = _draw(skill, rng, test=True)
            if skill.key(operands) not in seen:
                seen.add(skill.key(operands))
                items.append(skill.item(operands, len(seen) - 1))
            if len(seen) == n_per_skill:
                break
        else:
            raise ConfigError(f"the test half of {name!r} has fewer than {n_per_skill} distinct items")
    return items


def raw_lines(n: int, seed: int, skills: Sequence[str] = tuple(SKILLS)) -> list[str]:
    """`n` plain renderings of training items ("reverse stone = enots"), skills in turn: the base model's
    mid-training text. Only train-half operands: the base model never sees a test word or sum."""
    chosen = [_skill(name) for name in skills]
    rng = random.Random(f"raw:{seed}")
    return [chosen[i % len(chosen)].render_raw(_draw(chosen[i % len(chosen)], rng, test=False)) for i in range(n)]
