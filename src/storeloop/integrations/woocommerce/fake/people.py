"""Deterministic people for the fake shop: unicode names, messy phones and emails, several countries.

Phones use fictional ranges where a country has one (UK 07700 900xxx, US 555-01xx); emails use
RFC 2606 example domains. The same person is written differently from order to order (phone
format, email case and stray whitespace), as real checkouts are.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

Name = tuple[str, str]  # (as typed, ascii for the email local part)


def _digits(rng: random.Random, n: int) -> str:
    return "".join(str(rng.randrange(10)) for _ in range(n))


def _de(rng: random.Random) -> tuple[str, ...]:
    area = rng.choice(["30", "40", "89", "221", "151"])
    sub = _digits(rng, 7)
    return (
        f"({'0' + area}) {sub}",
        f"+49 {area} {sub}",
        f"0049-{area}-{sub}",
        f"0{area}{sub}",
        f"+49{area}{sub}",
        f"0{area}/{sub}",
    )


def _fr(rng: random.Random) -> tuple[str, ...]:
    n = rng.choice("67") + _digits(rng, 8)
    pairs = " ".join(n[i : i + 2] for i in range(1, 9, 2))
    return (f"0{n[0]} {pairs}", f"+33 {n[0]} {pairs}", f"0{n}", f"+33{n}", f"0033 {n}")


def _gb(rng: random.Random) -> tuple[str, ...]:
    n = "900" + _digits(rng, 3)
    return (f"+44 7700 {n}", f"07700{n}", f"07700 {n}", f"+447700{n}", f"(0)7700 {n}")


def _us(rng: random.Random) -> tuple[str, ...]:
    area = rng.choice(["212", "415", "312", "512"])
    line = "01" + _digits(rng, 2)
    return (
        f"({area}) 555-{line}",
        f"+1 {area}-555-{line}",
        f"{area}.555.{line}",
        f"{area}555{line}",
        f"1-{area}-555-{line}",
    )


def _in(rng: random.Random) -> tuple[str, ...]:
    n = rng.choice("789") + _digits(rng, 9)
    return (f"+91 {n[:5]} {n[5:]}", f"0{n}", n, f"+91-{n}")


def _br(rng: random.Random) -> tuple[str, ...]:
    ddd = rng.choice(["11", "21", "31"])
    n = "9" + _digits(rng, 8)
    return (f"+55 {ddd} {n[:5]}-{n[5:]}", f"({ddd}) {n[:5]}-{n[5:]}", f"{ddd}{n}", f"+55{ddd}{n}")


def _es(rng: random.Random) -> tuple[str, ...]:
    n = "6" + _digits(rng, 8)
    return (f"+34 {n[:3]} {n[3:5]} {n[5:7]} {n[7:]}", n, f"{n[:3]} {n[3:6]} {n[6:]}", f"0034{n}")


def _pl(rng: random.Random) -> tuple[str, ...]:
    n = "5" + _digits(rng, 8)
    return (f"+48 {n[:3]} {n[3:6]} {n[6:]}", f"{n[:3]}-{n[3:6]}-{n[6:]}", n, f"0048{n}")


def _jp(rng: random.Random) -> tuple[str, ...]:
    n = "90" + _digits(rng, 8)
    return (f"0{n[:2]}-{n[2:6]}-{n[6:]}", f"+81 {n[:2]}-{n[2:6]}-{n[6:]}", f"0{n}", f"+81{n}")


def _eg(rng: random.Random) -> tuple[str, ...]:
    n = "10" + _digits(rng, 8)
    return (f"+20 {n[:2]} {n[2:6]} {n[6:]}", f"0{n}", f"0020 {n[:3]} {n[3:6]} {n[6:]}")


@dataclass(frozen=True, slots=True)
class Country:
    code: str
    firsts: tuple[Name, ...]
    lasts: tuple[Name, ...]
    cities: tuple[tuple[str, str, str], ...]  # city, state, postcode
    streets: tuple[str, ...]
    phones: Callable[[random.Random], tuple[str, ...]]
    weight: int
    taxed: bool  # EU countries pay VAT in this EUR shop


COUNTRIES: tuple[Country, ...] = (
    Country(
        "DE",
        (
            ("Zoë", "zoe"),
            ("Lukas", "lukas"),
            ("Jürgen", "juergen"),
            ("Anna", "anna"),
            ("Maximilian", "max"),
            ("Sophie", "sophie"),
            ("Jörg", "joerg"),
            ("Björn", "bjoern"),
        ),
        (
            ("Müller", "mueller"),
            ("Schmidt", "schmidt"),
            ("Schäfer", "schaefer"),
            ("Weiß", "weiss"),
            ("Becker", "becker"),
            ("Groß", "gross"),
            ("Köhler", "koehler"),
        ),
        (
            ("Berlin", "BE", "10115"),
            ("München", "BY", "80331"),
            ("Köln", "NW", "50667"),
            ("Hamburg", "HH", "20095"),
        ),
        ("Königstraße {n}", "Hauptstraße {n}", "Am Weißen Steg {n}"),
        _de,
        30,
        True,
    ),
    Country(
        "FR",
        (
            ("Élodie", "elodie"),
            ("François", "francois"),
            ("Chloé", "chloe"),
            ("Mathéo", "matheo"),
            ("Gaël", "gael"),
        ),
        (("Dubois", "dubois"), ("Lefèvre", "lefevre"), ("Girard", "girard"), ("Bénard", "benard")),
        (("Paris", "", "75011"), ("Lyon", "", "69003"), ("Saint-Étienne", "", "42000")),
        ("{n} rue de la Paix", "{n} avenue des Champs-Élysées"),
        _fr,
        12,
        True,
    ),
    Country(
        "GB",
        (("Oliver", "oliver"), ("Amelia", "amelia"), ("Siobhán", "siobhan"), ("George", "george")),
        (("Smith", "smith"), ("O'Brien", "obrien"), ("Jones", "jones"), ("Taylor-Wood", "taylor-wood")),
        (("London", "", "SW1A 1AA"), ("Manchester", "", "M1 1AE"), ("Edinburgh", "", "EH1 1YZ")),
        ("{n} Baker Street", "Flat {n}, 12 Queen's Road"),
        _gb,
        10,
        False,
    ),
    Country(
        "US",
        (("John", "john"), ("Emily", "emily"), ("Ava", "ava"), ("Mary Ann", "maryann")),
        (("Johnson", "johnson"), ("García", "garcia"), ("Nguyen", "nguyen"), ("D'Angelo", "dangelo")),
        (("San Francisco", "CA", "94103"), ("New York", "NY", "10001"), ("Austin", "TX", "73301")),
        ("{n} Market St", "{n} Broadway Apt 4B"),
        _us,
        10,
        False,
    ),
    Country(
        "IN",
        (("Aarav", "aarav"), ("Priya", "priya"), ("Ananya", "ananya"), ("अर्जुन", "arjun")),
        (("Sharma", "sharma"), ("Patel", "patel"), ("Iyer", "iyer"), ("Reddy", "reddy")),
        (("Mumbai", "MH", "400001"), ("Bengaluru", "KA", "560001"), ("Chennai", "TN", "600001")),
        ("{n} MG Road", "Flat {n}, Andheri West"),
        _in,
        8,
        False,
    ),
    Country(
        "BR",
        (("João", "joao"), ("Ana", "ana"), ("Luíza", "luiza"), ("Gabriel", "gabriel")),
        (("Silva", "silva"), ("Conceição", "conceicao"), ("Araújo", "araujo"), ("Gonçalves", "goncalves")),
        (("São Paulo", "SP", "01310-100"), ("Rio de Janeiro", "RJ", "20040-020")),
        ("Rua Augusta, {n}", "Avenida Paulista, {n}"),
        _br,
        6,
        False,
    ),
    Country(
        "ES",
        (("José", "jose"), ("Lucía", "lucia"), ("Álvaro", "alvaro"), ("Inés", "ines")),
        (("Álvarez", "alvarez"), ("Núñez", "nunez"), ("García", "garcia"), ("Peña", "pena")),
        (("Madrid", "M", "28013"), ("Sevilla", "SE", "41001"), ("A Coruña", "C", "15001")),
        ("Calle de Alcalá {n}", "Plaza Mayor {n}"),
        _es,
        8,
        True,
    ),
    Country(
        "PL",
        (("Łukasz", "lukasz"), ("Małgorzata", "malgorzata"), ("Paweł", "pawel"), ("Zofia", "zofia")),
        (
            ("Wójcik", "wojcik"),
            ("Kowalski", "kowalski"),
            ("Lewandowska", "lewandowska"),
            ("Wiśniewski", "wisniewski"),
        ),
        (("Kraków", "", "31-042"), ("Łódź", "", "90-001"), ("Warszawa", "", "00-001")),
        ("ul. Świętokrzyska {n}", "ul. Długa {n}/3"),
        _pl,
        7,
        True,
    ),
    Country(
        "JP",
        (("太郎", "taro"), ("花子", "hanako"), ("翔太", "shota"), ("さくら", "sakura")),
        (("山田", "yamada"), ("佐藤", "sato"), ("鈴木", "suzuki"), ("高橋", "takahashi")),
        (("千代田区", "JP13", "100-0001"), ("大阪市", "JP27", "530-0001")),
        ("千代田1-{n}-1", "{n}-2-3 Shibuya"),
        _jp,
        5,
        False,
    ),
    Country(
        "EG",
        (("Ahmed", "ahmed"), ("Mariam", "mariam"), ("Omar", "omar"), ("محمد", "mohamed")),
        (
            ("Hassan", "hassan"),
            ("El-Sayed", "elsayed"),
            ("Mahmoud", "mahmoud"),
            ("Abdel-Rahman", "abdelrahman"),
        ),
        (("Cairo", "EGC", "11511"), ("Alexandria", "ALX", "21500")),
        ("{n} Tahrir Street", "{n} El Nasr Road"),
        _eg,
        4,
        False,
    ),
)
COUNTRY_BY_CODE = {c.code: c for c in COUNTRIES}
_WEIGHTS = [c.weight for c in COUNTRIES]
_DOMAINS = ("example.com", "example.org", "example.net", "mail.example.com")

# The first registered customers are fixed so demos and tests always meet these names.
FEATURED: tuple[tuple[str, Name, Name], ...] = (
    ("DE", ("Zoë", "zoe"), ("Müller", "mueller")),
    ("ES", ("José", "jose"), ("Álvarez", "alvarez")),
    ("PL", ("Łukasz", "lukasz"), ("Wójcik", "wojcik")),
    ("JP", ("太郎", "taro"), ("山田", "yamada")),
)


@dataclass(frozen=True, slots=True)
class Person:
    first_name: str
    last_name: str
    email: str  # canonical (lower case, trimmed)
    country: str
    city: str
    state: str
    postcode: str
    address_1: str
    address_2: str
    company: str
    phones: tuple[str, ...]  # one number, several spellings; may be ("",) for no phone

    @property
    def taxed(self) -> bool:
        return COUNTRY_BY_CODE[self.country].taxed


def make_person(rng: random.Random, serial: int, featured: int | None = None) -> Person:
    """A person; ``serial`` keeps emails unique, ``featured`` picks one of :data:`FEATURED`."""
    if featured is not None:
        code, first, last = FEATURED[featured]
        country = COUNTRY_BY_CODE[code]
    else:
        country = rng.choices(COUNTRIES, weights=_WEIGHTS)[0]
        first, last = rng.choice(country.firsts), rng.choice(country.lasts)
    city, state, postcode = rng.choice(country.cities)
    local_part = rng.choice((f"{first[1]}.{last[1]}", f"{first[1]}{last[1]}", f"{first[1][0]}.{last[1]}"))
    suffix = "" if featured is not None else str(serial)
    email = f"{local_part}{suffix}@{rng.choice(_DOMAINS)}".replace("'", "")
    phones: tuple[str, ...] = ("",) if rng.random() < 0.05 else country.phones(rng)
    return Person(
        first_name=first[0],
        last_name=last[0],
        email=email,
        country=country.code,
        city=city,
        state=state,
        postcode=postcode,
        address_1=rng.choice(country.streets).format(n=rng.randint(1, 180)),
        address_2="" if rng.random() < 0.8 else f"c/o {rng.choice(country.firsts)[0]}",
        company="" if rng.random() < 0.9 else f"{last[0]} GmbH" if country.code == "DE" else f"{last[0]} Ltd",
        phones=phones,
    )


def messy_email(rng: random.Random, email: str) -> str:
    """How a shopper might type their address this time: case changes, stray spaces."""
    r = rng.random()
    if r < 0.08:
        local_part, _, domain = email.partition("@")
        return f"{local_part.title()}@{domain.capitalize()}"
    if r < 0.11:
        return email.upper()
    if r < 0.16:
        return f" {email} "
    return email


def billing_of(person: Person, rng: random.Random | None) -> dict[str, str]:
    """A billing block; with ``rng`` the email/phone are spelled the way this checkout typed them."""
    return {
        "first_name": person.first_name,
        "last_name": person.last_name,
        "company": person.company,
        "address_1": person.address_1,
        "address_2": person.address_2,
        "city": person.city,
        "state": person.state,
        "postcode": person.postcode,
        "country": person.country,
        "email": messy_email(rng, person.email) if rng else person.email,
        "phone": rng.choice(person.phones) if rng else person.phones[0],
    }


def shipping_of(person: Person) -> dict[str, str]:
    return {
        "first_name": person.first_name,
        "last_name": person.last_name,
        "company": person.company,
        "address_1": person.address_1,
        "address_2": person.address_2,
        "city": person.city,
        "state": person.state,
        "postcode": person.postcode,
        "country": person.country,
        "phone": "",
    }
