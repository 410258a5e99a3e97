"""A labelled de-identification corpus made with Faker: structured columns, free-text notes, clean control prose.

Importable on its own (the bench and any later throughput row share it)::

    from deid_corpus import generate

    corpus = generate(rows=10_000, seed=0)
    corpus.table()                     # column name -> list of cells, ready for CSV or Parquet
    corpus.structured                  # column name -> the entity each of its cells holds
    corpus.rows[0].notes_truth         # ((Entity.PERSON, "April Griffin"), (Entity.PHONE, ...), ...)

Every value is made from a fixed seed, so two runs with the same ``rows`` and ``seed`` give the same
corpus. Rows cycle through seven locales (en_US, en_GB, de_DE, fr_FR, es_ES, it_IT, nl_NL); the notes
are English sentences with that locale's names, addresses, phone numbers and identifiers in them, the
way a support desk of a European company writes them. Cards include the lengths and ranges that simple
recognisers miss (19-digit Visa, 12-digit Maestro, 2-series Mastercard); phone numbers carry extensions
(``x123``, ``ext. 45``) now and then. National identifiers are valid for ``python-stdnum`` (the UK
National Insurance number, which stdnum lacks, follows HMRC's published prefix rules).
"""

from __future__ import annotations

import random
import unicodedata
from dataclasses import dataclass, field
from datetime import date

from faker import Faker
from stdnum.iso7064 import mod_11_10

from warden.privacy.entities import Entity

LOCALES: tuple[str, ...] = ("en_US", "en_GB", "de_DE", "fr_FR", "es_ES", "it_IT", "nl_NL")

#: The ``python-stdnum`` module behind each locale's national identifier (``gb.nino`` is not in stdnum).
NATIONAL_IDS: dict[str, str] = {
    "en_US": "us.ssn",
    "en_GB": "gb.nino",
    "de_DE": "de.idnr",
    "fr_FR": "fr.nir",
    "es_ES": "es.dni",
    "it_IT": "it.codicefiscale",
    "nl_NL": "nl.bsn",
}

#: Structured column -> the entity every cell of it is.
STRUCTURED: dict[str, Entity] = {
    "name": Entity.PERSON,
    "email": Entity.EMAIL,
    "phone": Entity.PHONE,
    "ip": Entity.IP_ADDRESS,
    "iban": Entity.IBAN,
    "card": Entity.CREDIT_CARD,
    "national_id": Entity.NATIONAL_ID,
    "date_of_birth": Entity.DATE_OF_BIRTH,
    "address": Entity.ADDRESS,
    "mac": Entity.MAC_ADDRESS,
    "url": Entity.URL,
}

TITLES: dict[str, tuple[str, ...]] = {
    "en_US": ("Mr.", "Mrs.", "Ms.", "Dr."),
    "en_GB": ("Mr", "Mrs", "Ms", "Dr"),
    "de_DE": ("Herr", "Frau", "Dr."),
    "fr_FR": ("M.", "Mme", "Dr"),
    "es_ES": ("Sr.", "Sra.", "Dr."),
    "it_IT": ("Sig.", "Sig.ra", "Dott."),
    "nl_NL": ("dhr.", "mevr.", "Dr."),
}

# (prefix, lengths) of card ranges, including those simple recognisers miss.
CARD_RANGES: tuple[tuple[str, tuple[int, ...]], ...] = (
    ("4", (16,)),
    ("4", (19,)),  # Visa, 19 digits
    ("4", (13,)),
    ("51", (16,)),
    ("55", (16,)),
    ("2221", (16,)),  # Mastercard 2-series
    ("2720", (16,)),
    ("2430", (16,)),
    ("34", (15,)),
    ("37", (15,)),
    ("6011", (16,)),
    ("65", (16, 19)),
    ("3528", (16, 19)),
    ("36", (14,)),
    ("5018", (12, 13, 15, 19)),  # Maestro, 12 to 19 digits
    ("6759", (12, 16, 18)),
    ("6304", (12, 19)),
    ("62", (16, 17, 18, 19)),  # UnionPay
)

# Free-text templates. Fields: {name} {tname} (the name after a title, half the time) {name2} {phone} {email}
# {ip} {iban} {card} {nid} {nid_label}
# {dob} {address} {mac} {url} {pron}. Names sit at the start, the middle and the end, with and without a
# title or a cue word; some mentions carry almost no context (a signature, a list, a bare "name, phone").
NOTE_TEMPLATES: tuple[str, ...] = (
    "Called {name} on {phone} about the refund; {pron} asked us to write to {email} instead.",
    "{name} lives at {address} and was born on {dob}.",
    "Customer {name} reported that card {card} was charged twice.",
    "Refund issued to {tname} (IBAN {iban}) after review.",
    "Login from {ip} flagged; account owner {name} notified at {email}.",
    "Per {name}: the router with MAC {mac} keeps dropping off the network.",
    "Attendees: {name}, {name2}. Follow-up by phone on {phone}.",
    "Passport copy received. {nid_label} {nid}, holder {name}, born {dob}.",
    "{name}, {address}, {phone}",
    "Please forward the invoice to {name} at {address}.",
    "Spoke with {tname} today, {pron} wants the card {card} closed.",
    "Hi {name}, your order ships tomorrow. Track it at {url} or reply to this mail.",
    "customer: {name}; email: {email}; phone: {phone}",
    "Thanks, {name}",
    "Visited {url} from {ip}. {name} complained that the page was slow.",
    "{name}'s account was locked after three failed attempts from {ip}.",
    "{tname} reviewed the file and confirmed the payment from {iban}.",
    "Transfer of EUR 250 to {iban} approved by {name} on behalf of {name2}.",
    "Emergency contact: {name} ({phone}).",
    "Note from {name} ({email}): please update my address to {address}.",
    "The parcel for {name} was left with a neighbour; call back on {phone}.",
    "Duplicate account? {email} and {phone} both point to {name}.",
    "Escalated to {name2} because {name} disputes the charge on {card}.",
    "{name} ({dob}) asked whether the {nid_label} {nid} on file is correct.",
    "Device {mac} registered to {name}, last seen at {ip}.",
    "We met {name} and {name2} at the branch; both signed the form.",
    "Reminder: {name} prefers e-mail ({email}) over calls.",
    "New address for {tname}: {address}.",
    "Chargeback on {card}, cardholder {name}, contact {phone}.",
    "As discussed with {name}, the direct debit from {iban} starts next month.",
    "{name} called twice from {phone} and left no message.",
    "Sent the contract to {name} via {email}, cc {name2}.",
)

NID_LABELS: dict[str, str] = {
    "en_US": "SSN",
    "en_GB": "NI number",
    "de_DE": "Steuer-ID",
    "fr_FR": "NIR",
    "es_ES": "DNI",
    "it_IT": "codice fiscale",
    "nl_NL": "BSN",
}

# Control prose: ordinary business text without personal data, numbers that are not identifiers.
CONTROL_TEMPLATES: tuple[str, ...] = (
    "{sentence}",
    "{sentence} {sentence2}",
    "{phrase}: {qty} units at ${price}, order total ${total}.",
    "Order {order} shipped in {boxes} boxes; {qty} items were back-ordered.",
    "Revenue grew {pct}% to ${millions} million in Q{quarter} {year}.",
    "The warehouse restocked {qty} units of the {phrase_lower} line.",
    "{sentence} Price: EUR {price}, discount {pct}%.",
    "Version {major}.{minor}.{patch} fixes {qty} issues in the {bs} module.",
    "Ticket volume was {order} this quarter, down {pct}% from last year.",
    "{phrase} now ships with a {months}-month warranty and costs ${price}.",
    "Batch {order} passed inspection: {qty} of {total_qty} items within tolerance.",
    "Room {room} is booked from {hour}:00 to {hour2}:30 for the {bs} review.",
)


@dataclass(frozen=True, slots=True)
class Row:
    """One row: structured values, the free-text note with its ground truth, and clean control prose."""

    locale: str
    name: str
    email: str
    phone: str
    ip: str
    iban: str
    card: str
    national_id: str
    national_id_kind: str
    date_of_birth: str
    address: str
    mac: str
    url: str
    notes: str
    notes_truth: tuple[tuple[Entity, str], ...]
    control: str


@dataclass(frozen=True, slots=True)
class Corpus:
    """The generated rows, the seed that made them, and views of them as columns."""

    rows: list[Row]
    seed: int
    structured: dict[str, Entity] = field(default_factory=lambda: dict(STRUCTURED))

    def column(self, name: str) -> list[str]:
        """Every cell of one column (a structured one, ``notes`` or ``control``)."""
        return [getattr(row, name) for row in self.rows]

    def table(self) -> dict[str, list[str]]:
        """The corpus as a table: the structured columns, ``notes`` and ``control``."""
        return {name: self.column(name) for name in (*self.structured, "notes", "control")}

    def national_id_kinds(self) -> list[str]:
        """The ``python-stdnum`` names of the identifiers present, for configuring a detector."""
        return sorted({row.national_id_kind for row in self.rows})


def luhn_complete(prefix: str, length: int, rng: random.Random) -> str:
    """A random number of ``length`` digits starting with ``prefix`` whose Luhn check digit is right."""
    body = prefix + "".join(str(rng.randrange(10)) for _ in range(length - len(prefix) - 1))
    total = 0
    for index, char in enumerate(reversed(body)):
        digit = int(char)
        if index % 2 == 0:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return body + str((10 - total % 10) % 10)


def format_card(number: str, rng: random.Random) -> str:
    style = rng.random()
    if style < 0.4:
        return number
    sep = " " if style < 0.8 else "-"
    if len(number) == 15 and number[:2] in ("34", "37"):
        return sep.join((number[:4], number[4:10], number[10:]))
    return sep.join(number[i : i + 4] for i in range(0, len(number), 4))


def card_number(rng: random.Random) -> str:
    prefix, lengths = rng.choice(CARD_RANGES)
    return format_card(luhn_complete(prefix, rng.choice(lengths), rng), rng)


def nino(rng: random.Random) -> str:
    """A UK National Insurance number with an allocatable prefix (HMRC's published rules)."""
    first = "ABCEGHJKLMNOPRSTWXYZ"
    second = "ABCEGHJKLMNPRSTWXYZ"
    while True:
        prefix = rng.choice(first) + rng.choice(second)
        if prefix not in {"BG", "GB", "KN", "NK", "NT", "TN", "ZZ"}:
            break
    digits = "".join(str(rng.randrange(10)) for _ in range(6))
    suffix = rng.choice("ABCD")
    if rng.random() < 0.5:
        return f"{prefix}{digits}{suffix}"
    return f"{prefix} {digits[:2]} {digits[2:4]} {digits[4:]} {suffix}"


def steuer_id(rng: random.Random) -> str:
    """A German tax identification number: one digit of the first ten repeated once, ISO 7064 check digit."""
    digits = rng.sample("0123456789", 9)
    while digits[0] == "0":
        rng.shuffle(digits)
    repeated = rng.choice(digits)
    body = digits.copy()
    body.insert(rng.randrange(1, 10), repeated)
    number = "".join(body)
    number += mod_11_10.calc_check_digit(number)
    return number if rng.random() < 0.6 else f"{number[:2]} {number[2:5]} {number[5:8]} {number[8:]}"


def national_id(fake: Faker, locale: str, rng: random.Random) -> str:
    if locale == "en_GB":
        return nino(rng)
    if locale == "de_DE":
        return steuer_id(rng)
    if locale == "es_ES":
        return str(fake.nif())
    return str(fake.ssn())


def phone_number(fake: Faker, rng: random.Random) -> str:
    number = str(fake.phone_number())
    if "x" not in number and rng.random() < 0.12:
        number += rng.choice((" x", " ext. ", " ext ", " x")) + str(rng.randrange(2, 9999))
    return number


def date_of_birth(fake: Faker, locale: str, rng: random.Random) -> str:
    born: date = fake.date_of_birth(minimum_age=18, maximum_age=90)
    style = rng.random()
    if style < 0.35:
        return born.isoformat()
    if style < 0.55:
        return born.strftime("%d/%m/%Y") if locale != "en_US" else born.strftime("%m/%d/%Y")
    if style < 0.7:
        return born.strftime("%d.%m.%Y")
    if style < 0.85:
        return f"{born.day} {born.strftime('%B')} {born.year}"
    return f"{born.strftime('%B')} {born.day}, {born.year}"


def ascii_slug(word: str) -> str:
    """``word`` lower-cased with accents dropped, as people write names in e-mail addresses."""
    folded = unicodedata.normalize("NFKD", word).encode("ascii", "ignore").decode()
    return "".join(char for char in folded.lower() if char.isalnum()) or "user"


def person_name(fake: Faker) -> str:
    return f"{fake.first_name()} {fake.last_name()}"


def control_text(fake: Faker, rng: random.Random) -> str:
    """Clean prose: Faker sentences and product text, with prices, quantities and counts but no identifier."""
    qty = rng.randrange(1, 500)
    price = f"{rng.randrange(1, 2000)}.{rng.randrange(100):02d}"
    phrase = str(fake.catch_phrase())
    values = {
        "sentence": fake.sentence(nb_words=rng.randrange(6, 14)),
        "sentence2": fake.sentence(nb_words=rng.randrange(6, 14)),
        "phrase": phrase,
        "phrase_lower": phrase.lower(),
        "bs": fake.bs(),
        "qty": qty,
        "total_qty": qty + rng.randrange(0, 50),
        "price": price,
        "total": f"{float(price) * qty:,.2f}",
        "order": rng.randrange(1000, 99999),
        "boxes": rng.randrange(1, 40),
        "pct": rng.randrange(1, 60),
        "millions": f"{rng.randrange(1, 900) / 10:.1f}",
        "quarter": rng.randrange(1, 5),
        "year": rng.randrange(2015, 2026),
        "major": rng.randrange(0, 12),
        "minor": rng.randrange(0, 30),
        "patch": rng.randrange(0, 30),
        "months": rng.choice((6, 12, 24, 36)),
        "room": rng.randrange(100, 999),
        "hour": rng.randrange(8, 12),
        "hour2": rng.randrange(12, 18),
    }
    return rng.choice(CONTROL_TEMPLATES).format(**values)


def make_row(fake: Faker, locale: str, english: Faker, rng: random.Random) -> Row:
    name = person_name(fake)
    name2 = person_name(fake)
    email = (
        str(fake.email())
        if rng.random() < 0.7
        else f"{ascii_slug(name.split()[0])}.{rng.randrange(10, 99)}@example.com"
    )
    phone = phone_number(fake, rng)
    ip = str(fake.ipv4()) if rng.random() < 0.7 else str(fake.ipv6())
    iban = str(fake.iban())
    if rng.random() < 0.3:
        iban = " ".join(iban[i : i + 4] for i in range(0, len(iban), 4))
    card = card_number(rng)
    nid = national_id(fake, locale, rng)
    dob = date_of_birth(fake, locale, rng)
    address = str(fake.address())
    mac = str(fake.mac_address())
    url = str(fake.url()) + rng.choice(("", "account/settings", "orders?id=" + str(rng.randrange(10**5, 10**6))))
    one_line = ", ".join(part.strip() for part in address.splitlines())
    title = rng.choice(TITLES[locale]) if rng.random() < 0.5 else ""
    values = {
        "name": name,
        "name2": name2,
        "tname": f"{title} {name}" if title else name,
        "phone": phone,
        "email": email,
        "ip": ip,
        "iban": iban,
        "card": card,
        "nid": nid,
        "nid_label": NID_LABELS[locale],
        "dob": dob,
        "address": one_line,
        "mac": mac,
        "url": url,
        "pron": rng.choice(("she", "he", "they")),
    }
    template = rng.choice(NOTE_TEMPLATES)
    notes = template.format(**values)
    kinds = {
        "name": Entity.PERSON,
        "name2": Entity.PERSON,
        "phone": Entity.PHONE,
        "email": Entity.EMAIL,
        "ip": Entity.IP_ADDRESS,
        "iban": Entity.IBAN,
        "card": Entity.CREDIT_CARD,
        "nid": Entity.NATIONAL_ID,
        "dob": Entity.DATE_OF_BIRTH,
        "address": Entity.ADDRESS,
        "mac": Entity.MAC_ADDRESS,
        "url": Entity.URL,
    }
    truth = tuple(
        (entity, values[key])
        for key, entity in kinds.items()
        if "{" + key + "}" in template or (key == "name" and "{tname}" in template)
    )
    return Row(
        locale=locale,
        name=name,
        email=email,
        phone=phone,
        ip=ip,
        iban=iban,
        card=card,
        national_id=nid,
        national_id_kind=NATIONAL_IDS[locale],
        date_of_birth=dob,
        address=address,
        mac=mac,
        url=url,
        notes=notes,
        notes_truth=truth,
        control=control_text(english, rng),
    )


def generate(rows: int = 10_000, seed: int = 0) -> Corpus:
    """``rows`` labelled rows, the same for the same ``seed``, cycling through :data:`LOCALES`."""
    rng = random.Random(seed)
    fakes = []
    for index, locale in enumerate(LOCALES):
        fake = Faker(locale)
        fake.seed_instance(seed * 100 + index)
        fakes.append(fake)
    english = Faker("en_US")
    english.seed_instance(seed * 100 + 99)
    out = [make_row(fakes[i % len(LOCALES)], LOCALES[i % len(LOCALES)], english, rng) for i in range(rows)]
    return Corpus(rows=out, seed=seed)
