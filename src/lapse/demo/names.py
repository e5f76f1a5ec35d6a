"""Generated names for the demo: Faker, seeded, drawn once into pools (Faker's own calls cost
tens of microseconds each, far too slow for tens of thousands of rows), then picked with a
seeded `random.Random`. Every address is under `.example`, a domain that can never receive mail.
"""

from __future__ import annotations

import random
import re

from faker import Faker

_SUFFIXES = {"and", "inc", "llc", "ltd", "plc", "group", "sons", "co", "corp", "company"}


def slug(text: str) -> str:
    """'Hayes, Lowe and Rivera' -> 'hayes-lowe-rivera'."""
    return "-".join(w for w in re.findall(r"[a-z0-9]+", text.lower()) if w not in _SUFFIXES)


class Names:
    """Deterministic people, companies, subjects and domains for one seed."""

    def __init__(self, seed: int) -> None:
        fake = Faker("en_US")
        fake.seed_instance(seed)
        self.random = random.Random(seed)
        self.first_names = sorted({fake.first_name() for _ in range(400)})
        self.last_names = sorted({fake.last_name() for _ in range(400)})
        self.phrases = [fake.catch_phrase() for _ in range(300)]
        self.buzz = [fake.bs() for _ in range(300)]
        self.countries = ["BE", "NL", "DE", "FR", "GB", "US", "ES", "IT", "IE", "SE", "IN", "CA"]
        self._companies = [fake.company() for _ in range(900)]
        self._words = [fake.word() for _ in range(400)]
        self._used: set[str] = set()
        self._company_index = 0

    def pick(self, items: list[str]) -> str:
        """One item, at random."""
        return items[self.random.randrange(len(items))]

    def person(self) -> tuple[str, str]:
        """(first name, last name)."""
        return self.pick(self.first_names), self.pick(self.last_names)

    def company(self) -> tuple[str, str]:
        """(company name, a unique short id derived from it)."""
        while True:
            name = self._companies[self._company_index % len(self._companies)]
            self._company_index += 1
            words = slug(name).split("-")
            ident = "-".join(words[:2])
            if ident and ident not in self._used:
                self._used.add(ident)
                return name, ident

    def handle(self, first: str, last: str) -> str:
        """A unique mailbox handle such as 'jsmith' or 'jsmith2'."""
        base = re.sub(r"[^a-z]", "", (first[0] + last).lower())
        ident, n = base, 1
        while ident in self._used:
            n += 1
            ident = f"{base}{n}"
        self._used.add(ident)
        return ident

    def word(self) -> str:
        """A lower-case word."""
        return self.pick(self._words)

    def subject(self) -> str:
        """A campaign subject line."""
        return self.pick(self.phrases).capitalize()
