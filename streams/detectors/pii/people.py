"""Personal data without checksums: person names, street addresses, dates of birth and
identity-document numbers.

The engine finds anchors (a given name from the dictionaries followed by a space, a title
such as "Sra.", a street-type word with its number, a date, a document number); the
functions here extend an anchor to the whole entity on the decoded text and decide
whether it counts. Rules, in short:

* **names** -- a given name from ``data/names.json`` (names-dataset's most frequent given
  names of US, GB, BR, PT, DE, AT, FR, ES, MX) followed by a capitalised word: the name
  runs over the following capitalised words while they are known names, with particles
  (da, de, van, von, ...). A given name that is also a common word (Will, Mark, June,
  Paris) counts only next to a name context word ("customer", "Kunde", "nome:") or in a
  name-like key, or when the word after it is a known surname. A title (Mr., Sra., Herr,
  Mme) or a name context word followed by capitalised words counts even for names
  outside the dictionaries (with a context word, one of the words must be a known name).
* **addresses** -- a house number and a street type word of the locale: "9170 Susan Creek"
  and "12 Baker Street Apt. 3" (en, USPS suffixes), "Rua das Flores, 120" and "Calle de
  Alcalá 23 Piso 4" (pt, es: the street type first, the number after), "12, rue de la
  Paix" (fr), "Hauptstraße 5", "Karl-Marx-Allee 12-14" (de).
* **dates of birth** -- a calendar date (numeric, ISO, or with a month name in en, pt, de,
  fr, es) within 40 characters after "DOB", "date of birth", "born", "nascimento",
  "Geburtsdatum", "né le", "fecha de nacimiento", ... or in a key such as ``birth_date``.
* **identity documents** -- passport or ID card numbers next to "passport", "passaporte",
  "Reisepass", "passeport", "pasaporte", "ID number", "DNI", ...
"""

from __future__ import annotations

import json
import re
from datetime import date
from functools import cache
from pathlib import Path

_DATA = Path(__file__).with_name("data") / "names.json"


@cache
def dictionaries() -> dict[str, frozenset[str]]:
    raw = json.loads(_DATA.read_text(encoding="utf-8"))
    return {k: frozenset(v) for k, v in raw.items() if isinstance(v, list)}


@cache
def given_literals() -> tuple[str, ...]:
    """Given names as the engine looks for them: Title case and upper case, then a space."""
    names = dictionaries()["given"]
    return tuple(sorted({f"{n} " for n in names} | {f"{n.upper()} " for n in names}))


@cache
def common_given_literals() -> tuple[str, ...]:
    return tuple(sorted(f"{n} " for n in dictionaries()["given_common"]))


def _title(word: str) -> str:
    return word[:1].upper() + word[1:].lower() if word.isupper() else word


def _known(word: str) -> bool:
    """A given name or surname of the dictionaries (not one that is a common word)."""
    d = dictionaries()
    title = _title(word)
    return title in d["given"] or title in d["surnames"]


def _known_any(word: str) -> bool:
    d = dictionaries()
    title = _title(word)
    return any(title in d[k] for k in ("given", "surnames", "given_common", "surnames_common"))


def _surname_like(word: str) -> bool:
    """Any capitalised word may be a surname the dictionaries do not know, unless it is a
    frequent word of the five languages that is no known name ("Discussion", "Paid")."""
    d = dictionaries()
    title = _title(word)
    if title not in d["words"]:
        return True
    return title in d["surnames"] or title in d["surnames_common"] or title in d["given"]


PARTICLES = frozenset(
    {"da", "de", "do", "das", "dos", "di", "du", "des", "van", "von", "der", "den", "del",
     "della", "la", "le", "zu", "ten", "ter", "bin", "ibn", "al", "y"}
)  # fmt: skip
#: capitalised words that start a clause rather than continue a name
_STOP = frozenset(
    {"The", "And", "Or", "But", "Is", "Was", "Are", "Has", "Had", "From", "To", "In", "On",
     "At", "For", "With", "By", "Of", "If", "When", "Then", "Not", "No", "Yes", "Please",
     "Thanks", "Thank", "Ok", "OK", "Hi", "Hello", "Dear", "Team", "Support", "Customer",
     "Order", "Ticket", "Street", "Road", "Avenue", "Rua", "Avenida", "Calle", "Inc", "Ltd",
     "LLC", "GmbH", "SA", "Ltda", "Corp", "Co", "API", "ID", "URL", "HTTP", "PDF", "CV"}
)  # fmt: skip
_WORD = re.compile(r"[^\W\d_]+(?:['\u2019\-][^\W\d_]+)*")
#: name context words (whole words, lower-case) searched before a name
NAME_CONTEXT = (
    "name", "customer", "client", "cliente", "kunde", "kundin", "contact", "contato",
    "contacto", "dear", "hi", "hello", "olá", "ola", "hallo", "bonjour", "hola", "patient",
    "paciente", "nome", "nombre", "nom", "prénom", "vorname", "nachname", "sobrenome",
    "apellido", "employee", "signed", "spoke", "called", "caller", "assigned", "mr", "mrs",
    "ms", "dr", "sr", "sra", "herr", "frau", "mme",
    "monsieur", "madame", "señor", "señora", "recipient",
)  # fmt: skip
#: JSON keys whose value is a person's name (compared lower-case, "-", " ", "." as "_")
NAME_KEYS = frozenset(
    {"name", "first_name", "firstname", "given_name", "givenname", "last_name", "lastname",
     "surname", "family_name", "familyname", "full_name", "fullname", "customer_name",
     "contact_name", "holder_name", "cardholder_name", "card_holder", "account_holder",
     "billing_name", "shipping_name", "recipient_name", "display_name", "nome",
     "nome_completo", "sobrenome", "vorname", "nachname", "prenom", "prénom", "nom",
     "nom_de_famille", "nombre", "apellido", "apellidos", "nombre_completo", "customer",
     "contact", "recipient", "patient"}
)  # fmt: skip
#: keys that take part in no name rule, whatever the word "name" in them says
NOT_NAME_KEYS = frozenset(
    {"event_name", "file_name", "filename", "service_name", "host_name", "hostname",
     "app_name", "metric_name", "table_name", "field_name", "step_name", "stage_name",
     "funnel_name", "rule_name", "topic_name", "bucket_name", "index_name", "key_name",
     "product_name", "plan_name", "campaign_name", "screen_name", "page_name", "username",
     "user_name", "domain_name", "browser_name", "os_name", "device_name"}
)  # fmt: skip
ADDRESS_KEYS = frozenset(
    {"address", "street", "street_address", "address_line1", "address_line_1",
     "address1", "address_1", "line1", "billing_address", "shipping_address",
     "home_address", "endereco", "endereço", "logradouro", "rua", "strasse", "straße",
     "adresse", "anschrift", "direccion", "dirección", "calle", "domicilio"}
)  # fmt: skip
ID_KEYS = frozenset(
    {"passport", "passport_number", "passport_no", "passport_id", "passaporte",
     "numero_passaporte", "reisepass", "reisepassnummer", "passeport", "pasaporte",
     "national_id", "national_id_number", "id_number", "id_card", "id_card_number",
     "identity_number", "document_number", "documento", "dni", "nie", "rg", "cni",
     "personalausweis", "ausweisnummer", "drivers_license", "driver_license",
     "licence_number", "license_number"}
)  # fmt: skip


def norm_key(key: str) -> str:
    return key.strip().lower().replace("-", "_").replace(" ", "_").replace(".", "_")


def _capitalised(word: str, upper: bool) -> bool:
    if upper:
        return word.isupper() and len(word) > 1
    return word[:1].isupper() and (not word[1:].isupper() or len(word) <= 3 or word.isupper())


def _words(text: str, pos: int, limit: int) -> list[tuple[int, int, str]]:
    """Words from ``pos`` separated by single spaces (at most ``limit``)."""
    out: list[tuple[int, int, str]] = []
    while len(out) < limit:
        m = _WORD.match(text, pos)
        if m is None:
            break
        out.append((m.start(), m.end(), m.group()))
        if m.end() + 1 < len(text) and text[m.end()] == " ":
            pos = m.end() + 1
        else:
            break
    return out


def name_end(text: str, start: int, first_free: bool, min_words: int) -> tuple[int, int] | None:
    """The end of the name starting at ``start`` and how many words it has: middle given
    names, then one free word (any capitalised word that is not a frequent word: the
    surname, known or not), then known names, particles ("da", "von") with their word."""
    words = _words(text, start, 7)
    if not words:
        return None
    upper = words[0][2].isupper() and len(words[0][2]) > 1
    first = words[0][2]
    if not _capitalised(first, upper) or first in _STOP or first.lower() in PARTICLES:
        return None  # "DE NASCIMENTO" is no name
    end, count, i = words[0][1], 1, 1
    d = dictionaries()
    free = first_free  # one word may be a surname the dictionaries do not know
    givens = True  # still in the given names ("Luiz Miguel", "Ana Sophia")
    while i < len(words):
        word = words[i][2]
        if word.lower() in PARTICLES:
            if i + 1 < len(words) and _capitalised(words[i + 1][2], upper):
                end, count, i = words[i + 1][1], count + 1, i + 2
                givens = free = False
                continue
            break
        if not _capitalised(word, upper) or word in _STOP:
            break
        title = _title(word)
        following = i + 1 < len(words) and _capitalised(words[i + 1][2], upper)
        if givens and following and (title in d["given"] or title in d["given_common"]):
            end, count, i = words[i][1], count + 1, i + 1  # a middle given name
            continue
        if (free and _surname_like(word)) or _known(word):
            end, count, i = words[i][1], count + 1, i + 1
            givens = free = False
            continue
        break
    if end < len(text) and (text[end] in "-_/" or text[end].isdigit()):
        return None  # an identifier such as ORD-2022-106861
    return (end, count) if count >= min_words else None


def _word_start(text: str, start: int) -> bool:
    return start == 0 or not (text[start - 1].isalnum() or text[start - 1] in "_-'\u2019")


def extend_name(
    text: str, start: int, end: int, index: int, context: bool
) -> tuple[int, int] | None:
    """``index``: 0 a given name, 1 a given name that is a common word, 2 a title, 3 a
    name context word."""
    if not _word_start(text, start):
        return None
    if index in (0, 1):
        found = name_end(text, start, True, 2)
        if found is None:
            return None
        if index == 1 and not context:  # "Will Phillips", not "Mark Zimmer" or "San Francisco"
            second = _words(text, start, 2)
            d = dictionaries()
            word = second[1][2] if len(second) == 2 else ""
            if word not in d["surnames"] or word in d["given"] or word in d["words"]:
                return None
        return start, found[0]
    # a title or a context word: the name starts at the first capitalised word after it
    pos = end - 1
    while pos < len(text) and not text[pos].isalpha():
        pos += 1
    if index == 2:  # a title: its first word must be a known name ("Frau Kind" is not)
        found = name_end(text, pos, True, 1)
        first = _words(text, pos, 1)
        return (pos, found[0]) if found and first and _known(first[0][2]) else None
    found = name_end(text, pos, True, 2)
    if found is None:
        return None
    words = [w for _, _, w in _words(text, pos, found[1])]
    frequent = dictionaries()["words"]
    if not any(_known_any(w) for w in words) and any(_title(w) in frequent for w in words):
        return None  # "Customer Success Team"; "Kunde Kunibert Henck" is a name
    return pos, found[0]


_NAME_WORD = re.compile(r"[^\W\d_]+(?:['\u2019.\-][^\W\d_]+)*\.?")


def name_value(text: str) -> bool:
    """A name-like key's value: one to six capitalised words of letters ("Janet",
    "Ana Julia da Silva", "O'Brien"), particles in lower case."""
    words = text.split()
    if not 1 <= len(words) <= 6 or len(text) > 100:
        return False
    return (
        all(
            _NAME_WORD.fullmatch(w) is not None and (w[0].isupper() or w in PARTICLES)
            for w in words
        )
        and words[0][0].isupper()
    )


# --- addresses -----------------------------------------------------------------------

#: USPS Publication 28 street suffixes (common ones) and UK street types
EN_STREET = (
    "Street", "St", "Avenue", "Ave", "Av", "Road", "Rd", "Boulevard", "Blvd", "Lane", "Ln",
    "Drive", "Dr", "Court", "Ct", "Way", "Place", "Pl", "Terrace", "Ter", "Circle", "Cir",
    "Circles", "Parkway", "Pkwy", "Highway", "Hwy", "Square", "Sq", "Trail", "Trl",
    "Crescent", "Close", "Mews", "Row", "Walk", "Gardens", "Garden", "Grove", "Hill",
    "Hills", "Rise", "View", "Views", "Creek", "Ridge", "Ridges", "Crossing", "Loop",
    "Path", "Pike", "Plaza", "Point", "Points", "Port", "Ports", "Ranch", "Run", "Spring",
    "Springs", "Station", "Summit", "Valley", "Valleys", "Village", "Villages", "Ville",
    "Vista", "Well", "Wells", "Estate", "Estates", "Falls", "Ferry", "Field", "Fields",
    "Forest", "Fork", "Forks", "Fort", "Freeway", "Glen", "Glens", "Green", "Greens",
    "Harbor", "Harbors", "Harbour", "Haven", "Heights", "Hollow", "Island", "Islands",
    "Isle", "Junction", "Junctions", "Key", "Keys", "Knoll", "Knolls", "Lake", "Lakes",
    "Landing", "Light", "Lights", "Lodge", "Manor", "Manors", "Meadow", "Meadows", "Mill",
    "Mills", "Mission", "Motorway", "Mount", "Mountain", "Mountains", "Orchard", "Oval",
    "Park", "Parks", "Pass", "Passage", "Pine", "Pines", "Plain", "Plains", "Prairie",
    "Radial", "Ramp", "Rapid", "Rapids", "Rest", "River", "Roads", "Route", "Shoal",
    "Shoals", "Shore", "Shores", "Skyway", "Spur", "Spurs", "Stravenue", "Stream",
    "Streets", "Throughway", "Trace", "Track", "Trafficway", "Tunnel", "Turnpike",
    "Underpass", "Union", "Unions", "Via", "Viaduct", "Wall", "Ways", "Alley", "Arcade",
    "Bayou", "Beach", "Bend", "Bluff", "Bluffs", "Bottom", "Branch", "Bridge", "Brook",
    "Brooks", "Burg", "Burgs", "Bypass", "Camp", "Canyon", "Cape", "Causeway", "Center",
    "Centers", "Centre", "Cliff", "Cliffs", "Club", "Common", "Commons", "Corner",
    "Corners", "Course", "Courts", "Cove", "Coves", "Curve", "Dale", "Dam", "Divide",
    "Drives", "Expressway", "Extension", "Extensions", "Fall", "Flat", "Flats", "Ford",
    "Fords", "Forge", "Forges", "Gateway", "Gateways", "Grounds", "Groves", "Hill",
    "Inlet", "Lane", "Lock", "Locks", "Loaf", "Mall", "Mews", "Neck", "Overpass", "Parade",
    "Pier", "Quay", "Ridge", "Rue", "Squares", "Station", "Stream", "Tunnel", "Walks",
    "Wharf", "Wynd", "Land",
)  # fmt: skip
EN_UNIT = r"(?:Apt|Apartment|Suite|Ste|Unit|Flat|Studio|Room|Floor|Fl|Bldg|Building)"
#: Correios' types of logradouro (pt-BR) and the Spanish INE types of vía
PT_ES_STREET = (
    "Rua", "R.", "Praia", "C.", "Avenida", "Av.", "Travessa", "Tv.", "Alameda", "Al.", "Praça",
    "Pça.",
    "Rodovia", "Rod.", "Estrada", "Estr.", "Largo", "Viela", "Via", "Vila", "Ladeira",
    "Beco", "Quadra", "Setor", "Conjunto", "Parque", "Jardim", "Residencial", "Condomínio",
    "Loteamento", "Vereda", "Passagem", "Caminho", "Aeroporto", "Área", "Campo", "Chácara",
    "Colônia", "Distrito", "Esplanada", "Estação", "Favela", "Fazenda", "Feira", "Lago",
    "Lagoa", "Morro", "Núcleo", "Passarela", "Pátio", "Recanto", "Sítio", "Trecho", "Trevo",
    "Vale", "Viaduto", "Calle", "C/", "Avda.", "Paseo", "Plaza", "Camino", "Carretera",
    "Ronda", "Travesía", "Pasaje", "Vía", "Cañada", "Glorieta", "Callejón", "Urbanización",
    "Rambla", "Acceso", "Cuesta", "Vial", "Rúa", "Senda", "Carrera", "Bajada", "Barrio",
    "Sector", "Pasadizo", "Polígono",
)  # fmt: skip
PT_ES_UNIT = r"(?:Piso|Puerta|Apt|Apto|Apartamento|Sala|Bloco|Casa|Bajo|Escalera|Lote|Loja)"
FR_STREET = (
    "rue", "avenue", "av.", "boulevard", "bd", "chemin", "impasse", "allée", "place", "quai",
    "route", "cours", "passage", "square", "voie", "sentier", "esplanade", "promenade",
    "rond-point", "cité", "résidence", "hameau", "lieu-dit", "faubourg", "parvis", "villa",
)  # fmt: skip
DE_STREET = (
    "straße", "strasse", "str.", "platz", "gasse", "allee", "ring", "weg", "damm", "ufer",
    "chaussee", "pfad", "steig", "markt", "promenade", "stieg", "twiete", "kamp", "graben",
)  # fmt: skip

_L = r"[A-Za-z\x80-\xff]"


def _alt(words: tuple[str, ...]) -> str:
    """An alternation of ``words``, their upper case too where it has letters beyond ASCII
    (the engines fold the case of ASCII letters only)."""
    every = set(words) | {w.upper() for w in words if not w.isascii()}
    return "(?:" + "|".join(re.escape(w) for w in sorted(every, key=lambda w: (-len(w), w))) + ")"


ADDRESS_PATTERNS = (
    # 0: pt, es: the street type first ("Rua das Flores, 120", "Calle Mayor 5")
    _alt(PT_ES_STREET) + r"[ ]+" + _L,
    # 1: fr, "12, rue de la Paix", "5 bis avenue Victor Hugo"
    r"\d{1,4}(?:[ ]?(?:bis|ter|[A-Za-z]))?,?[ ]+" + _alt(FR_STREET) + r"[ ]+" + _L,
    # 2: de, "Hauptstraße 5", "Karl-Marx-Allee 12-14", "Reinhardtstr. 4-6"
    _alt(DE_STREET) + r"[ ]?\d{1,4}",
)
#: en: the street type after a space ("9170 Susan Creek", "Flat 46, Oliver Village"):
#: the anchor is the type, the number and the words before it are found by
#: :func:`extend_en_address` (a pattern that starts at any digit costs the engine a third
#: of its speed on JSON full of numbers)
EN_ADDRESS_PATTERNS = (
    r"[ ]" + _alt(tuple(EN_STREET) + tuple(w.upper() for w in EN_STREET)) + r"s?\.?",
)
_HOUSE_NUMBER = re.compile(r"\d{1,6}[A-Za-z]?,?")
_UNIT_BEFORE = re.compile(r"(?:Flat|Studio|Apartment|Unit|FLAT|STUDIO|APARTMENT|UNIT)[ ]+$")


_NUMBER_AFTER = re.compile(r",? ?(?:n[º°o]\.? ?|nº ?)?(\d{1,5}(?:[\-/]\d{1,5})?[A-Za-z]?)(?![\w])")
_PT_ES_UNIT = re.compile(r",? " + PT_ES_UNIT + r"\.? ?\d{1,4}[A-Za-z]?(?![\w])", re.IGNORECASE)
_EN_UNIT = re.compile(r",? " + EN_UNIT + r"\.? ?#?\d{1,5}[A-Za-z]?(?![\w])", re.IGNORECASE)
_DE_NUMBER = re.compile(r"[ ]?\d{1,4}(?:[ ]?[a-zA-Z](?![\w]))?(?:[\-/]\d{1,4}[a-z]?)?(?![\w])")
_EN_ABBREVIATIONS = frozenset(
    {"St", "Ave", "Av", "Rd", "Blvd", "Ln", "Dr", "Ct", "Pl", "Ter", "Cir", "Pkwy", "Hwy", "Sq",
     "Trl", "ST", "AVE", "AV", "RD", "BLVD", "LN", "DR", "CT", "PL", "TER", "CIR", "PKWY", "HWY",
     "SQ", "TRL"}
)  # fmt: skip


def extend_en_address(
    text: str, start: int, end: int, index: int, context: bool
) -> tuple[int, int] | None:
    """Back from the street type over one to four words to the house number (and a
    "Flat 46," before it), then the checks of :func:`extend_address`."""
    pos = start  # the space before the street type
    for words in range(5):
        while pos > 0 and text[pos - 1] == " ":
            pos -= 1
        first = pos
        while first > 0 and (text[first - 1].isalnum() or text[first - 1] in "-'\u2019.,#"):
            first -= 1
        token = text[first:pos]
        if not token:
            return None
        if _HOUSE_NUMBER.fullmatch(token):
            if words == 0:
                return None
            unit = _UNIT_BEFORE.search(text, max(0, first - 16), first)
            if unit is not None and token.endswith(","):
                return _street_then_number(text, unit.start(), end, 1)
            return _street_then_number(text, first, end, 0)
        if not token[:1].isalpha():
            return None
        pos = first
    return None


def extend_address(
    text: str, start: int, end: int, index: int, context: bool
) -> tuple[int, int] | None:
    return _OTHER_LOCALES[index](text, start, end)


def _next_word(text: str, end: int) -> int:
    """Where the word the anchor ended in (its first letter) starts: the engines match
    bytes, so an anchor may end inside a letter such as "É"."""
    pos = end - 1 if end > 0 and text[end - 1].isalpha() else end
    while pos < len(text) and text[pos] == " ":
        pos += 1
    return pos


def _street_then_number(text: str, start: int, end: int, index: int) -> tuple[int, int] | None:
    """en: a number, one to four words, a street type (index 1: after "Flat 46,")."""
    if not _word_start(text, start):
        return None
    if end < len(text) and (text[end].isalnum() or text[end] == "'"):
        return None
    # the words between the number and the street type: capitalised (or all upper)
    if start >= 2 and text[start - 1] in ".," and text[start - 2].isdigit():
        return None  # the decimals of an amount, "8.054.70 EUR Walk"
    tokens = text[start:end].replace(",", " ").split()
    body = [t for t in tokens[1 if index == 1 else 0 :] if not any(c.isdigit() for c in t)]
    upper = all(w.isupper() for w in body)
    if not body or not all(w[:1].isupper() and (upper or not w.isupper()) for w in body):
        return None  # Title Case or UPPER CASE throughout
    if text[end - 1] == "." and text[start : end - 1].rsplit(" ", 1)[-1] not in _EN_ABBREVIATIONS:
        end -= 1  # the full stop after "Susan Creek." ends the sentence, not the address
    unit = _EN_UNIT.match(text, end)
    return start, unit.end() if unit else end


def _type_then_number(text: str, start: int, end: int) -> tuple[int, int] | None:
    """pt, es: "Rua das Flores, 120", "Calle de Alcalá 23 Piso 4"."""
    if not _word_start(text, start) or not text[start].isupper():
        return None
    words = _words(text, _next_word(text, end), 8)
    last = None
    for i, (_, w_end, word) in enumerate(words):
        if word.lower() in PARTICLES or word[:1].isupper():
            if word.lower() not in PARTICLES:
                last = w_end
            continue
        if i == 0:
            return None
        break
    if last is None:
        return None
    number = _NUMBER_AFTER.match(text, last)
    if number is None:
        return None
    stop = number.end()
    unit = _PT_ES_UNIT.match(text, stop)
    return start, unit.end() if unit else stop


def _number_then_type(text: str, start: int, end: int) -> tuple[int, int] | None:
    """fr: "12, rue de la Paix"."""
    if not _word_start(text, start):
        return None
    last = None
    for _, w_end, word in _words(text, _next_word(text, end), 7):
        low = word.lower()
        if low in PARTICLES or low.startswith(("l'", "d'", "l\u2019", "d\u2019")):
            if word[:1].isupper() and low not in PARTICLES:
                last = w_end
            continue
        if not word[:1].isupper():
            break
        last = w_end
    return (start, last) if last is not None else None


def _compound_then_number(text: str, start: int, end: int) -> tuple[int, int] | None:
    """de: back over the street's name (compound or hyphenated), on over the number."""
    word_start = start
    while word_start > 0 and (text[word_start - 1].isalpha() or text[word_start - 1] == "-"):
        word_start -= 1
    if not text[word_start : word_start + 1].isupper():
        return None
    word = text[word_start:end].rstrip("0123456789 ")
    if word_start == start and not (word_start > 0 and text[word_start - 1] == " "):
        return None  # a bare "Platz 5" without a street name before it
    if word_start == start:  # "Lange Straße 5": the capitalised word before counts too
        before = text[:word_start].rstrip(" ")
        first = len(before)
        while first > 0 and (before[first - 1].isalpha() or before[first - 1] == "-"):
            first -= 1
        if first == len(before) or not before[first : first + 1].isupper():
            return None
        word_start = first
    elif word.lower().endswith("ring") and (
        len(word) < 8 or word.lower().endswith(("ering", "oring", "aring", "uring", "iring",
                                                 "tring", "pring"))
    ):  # fmt: skip
        return None  # English -ring words ("Monitoring 5"), not a German Ring
    elif start - word_start < 2 and text[start - 1 : start] != "-":
        return None
    digits_at = end
    while digits_at > start and text[digits_at - 1].isdigit():
        digits_at -= 1
    number = _DE_NUMBER.match(text, digits_at)
    if number is None:
        return None
    return word_start, number.end()


_OTHER_LOCALES = (_type_then_number, _number_then_type, _compound_then_number)


def address_value(text: str) -> bool:
    """An address-like key's value: letters and a number."""
    value = text.strip()
    return (
        5 <= len(value) <= 200
        and any(c.isdigit() for c in value)
        and any(c.isalpha() for c in value)
    )


# --- dates of birth --------------------------------------------------------------------

MONTHS: dict[str, int] = {}
for _number, _names in enumerate(
    (
        "january jan janeiro jan januar jän janvier janv enero ene",
        "february feb fevereiro fev februar feber février févr febrero",
        "march mar março märz mars marzo",
        "april apr abril abr avril avr",
        "may maio mai mayo",
        "june jun junho juni juin junio",
        "july jul julho juli juillet juil julio",
        "august aug agosto ago august août",
        "september sep sept setembro set september septembre septiembre",
        "october oct outubro out oktober okt octobre octubre",
        "november nov novembro november novembre noviembre",
        "december dec dezembro dez dezember décembre déc diciembre dic",
    ),
    start=1,
):
    for _name in _names.split():
        MONTHS[_name] = _number
_MONTH = _alt(tuple(MONTHS)) + r"\.?"
DATE_PATTERNS = (
    r"\d{1,2}[./\-]\d{1,2}[./\-](?:19|20)\d{2}",
    r"(?:19|20)\d{2}[./\-]\d{1,2}[./\-]\d{1,2}",
    # "12 de março de 1985", "12. März 1985", "1er mars 1985": the month is the anchor, the day
    # before it is found by extend_date (a pattern starting at any digit slows the engine)
    _MONTH + r"[ ]+(?:de[ ]+)?(?:19|20)\d{2}",
    _MONTH + r"[ ]+\d{1,2}(?:st|nd|rd|th)?,?[ ]+(?:19|20)\d{2}",
)
_DAY_BEFORE = re.compile(r"(?<!\d)\d{1,2}(?:st|nd|rd|th|er|º|\.)?[ ]+(?:de[ ]+)?$", re.IGNORECASE)


def extend_date(
    text: str, start: int, end: int, index: int, context: bool
) -> tuple[int, int] | None:
    """A date as matched, or (the month-name pattern) with its day before the month."""
    if index != 2:
        return start, end
    day = _DAY_BEFORE.search(text, max(0, start - 12), start)
    return (day.start(), end) if day else None


DOB_CONTEXT = (
    "dob", "d.o.b", "date of birth", "birth date", "birthdate", "birthday", "born", "birth",
    "nascimento", "nascido", "nascida", "data de nasc", "dt nasc", "geburtsdatum",
    "geboren", "geb", "geburtstag", "naissance", "né le", "née le", "né", "née",
    "fecha de nacimiento", "nacimiento", "nacido", "nacida", "f. nac", "birth_date",
    "date_of_birth", "data_nascimento", "fecha_nacimiento", "date_naissance",
)  # fmt: skip
_NUM = re.compile(r"\d+")


def birth_date(text: str) -> str | None:
    """A real calendar date between 1900 and today, as ISO text."""
    low = text.lower()
    numbers = [int(n) for n in _NUM.findall(low)]
    month_name = next(
        (
            MONTHS[w.rstrip(".")]
            for w in re.findall(r"[^\W\d_]+\.?", low)
            if w.rstrip(".") in MONTHS
        ),
        None,
    )
    try:
        if month_name is not None:
            day, year = (numbers[0], numbers[1]) if numbers[0] < 100 else (numbers[1], numbers[0])
            when = date(year, month_name, day)
        elif numbers[0] >= 1900:
            when = date(numbers[0], numbers[1], numbers[2])
        elif numbers[1] > 12:  # month first (US)
            when = date(numbers[2], numbers[0], numbers[1])
        else:
            when = date(numbers[2], numbers[1], numbers[0])
    except (ValueError, IndexError):
        return None
    if not when.year >= 1900 or when > date.today():
        return None
    return when.isoformat()


# --- identity documents ----------------------------------------------------------------

ID_PATTERNS = (
    r"[A-Z]{1,3}[ ]?\d{6,9}",  # US, GB, BR, ES passports, RG with letters
    r"\d{2}[A-Z]{2}\d{5}",  # French passport
    r"\d{8,9}[A-Z]?",  # numeric passports, DNI (8 digits + letter)
    r"[CFGHJKLMNPRTVWXYZ0-9]{9}",  # German passport and ID card
    r"\d{1,2}\.\d{3}\.\d{3}-[\dXx]",  # Brazilian RG
)
ID_CONTEXT = (
    "passport", "passport no", "passaporte", "reisepass", "passeport", "pasaporte",
    "id number", "id no", "id card", "identity card", "national id", "personalausweis",
    "ausweis", "ausweisnummer", "carte d'identité", "cni", "dni", "nie", "rg", "documento",
    "identidade", "identidad", "passport_number", "national_id", "id_number",
)  # fmt: skip


def id_document(text: str) -> str | None:
    value = text.replace(" ", "")
    digits = sum(c.isdigit() for c in value)
    if digits < 5 or len(set(value)) < 4:
        return None
    return value


def id_value(text: str) -> bool:
    value = text.strip().replace(" ", "").replace(".", "").replace("-", "")
    return 5 <= len(value) <= 20 and value.isalnum() and sum(c.isdigit() for c in value) >= 4
