"""Rebuild ``data/names.json``, the name dictionaries of the PII scanner (``make dictionaries``).

Given names and surnames are the most frequent ones per country in ``names-dataset``
(Apache-2.0; it needs ~2 GB of memory and 10 s to load, so Vigil ships the derived lists,
not the package). A name that is also a common word is kept apart (the scanner reports it
only with context): a lower-case word of Debian's word lists for English, Portuguese,
Spanish and French (``wamerican``, ``wbritish``, ``wbrazilian``, ``wspanish``,
``wfrench``: "will", "rose", "bill", "flores"), any word of the German list (``wngerman``:
nouns are capitalised there, "Haus", "Frau", "Wald"), or in the list below ("mark",
"june", "paris"). The 300 most frequent given names per gender and the 500 most
frequent surnames of any of the countries stay names ("John", "Ana", "Silva", "Müller" are
words of some list too) unless listed below.

``words`` are the 8,000 most frequent words of English, Portuguese, Spanish, French and
German (``wordfreq``, MIT): a capitalised one after a given name ends the name unless it is
a known name ("Frank Discussion", "Mark Paid" are no names). Street types and titles are
never given names ("Ave Maria"). Run inside a throwaway virtualenv with ``names-dataset``
and ``wordfreq`` installed (``make dictionaries`` does).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

COUNTRIES = ("US", "GB", "BR", "PT", "DE", "AT", "FR", "ES", "MX")
GIVEN_PER_GENDER = 1500
SURNAMES = 3000
LOWER_CASE_LISTS = ("american-english", "british-english", "brazilian", "spanish", "french")
ANY_CASE_LISTS = ("ngerman",)
TOP_GIVEN_KEPT = 300
TOP_SURNAMES_KEPT = 500
#: never names on their own, whatever the dictionaries say: months, days, places and words
#: that head a capitalised phrase in product and log text
EXTRA_COMMON = {
    "january", "february", "march", "april", "may", "june", "july", "august", "september",
    "october", "november", "december", "monday", "tuesday", "wednesday", "thursday",
    "friday", "saturday", "sunday", "paris", "london", "berlin", "madrid", "lisbon",
    "florence", "rio", "sydney", "victoria", "georgia", "virginia", "carolina", "dakota", "india",
    "china", "jordan", "israel", "kenya", "chelsea", "brooklyn", "austin", "houston",
    "dallas", "phoenix", "orlando", "denver", "memphis", "cleveland", "madison", "lincoln",
    "washington", "jackson", "hudson", "sierra", "nevada", "montana", "angel", "king",
    "queen", "prince", "princess", "baby", "love", "sweet", "happy", "lucky", "bear",
    "admin", "user", "guest", "test", "demo", "apple", "google", "amazon", "microsoft",
    "oracle", "cloud", "data", "page", "report", "order", "total", "new", "san", "santa",
    "saint", "st", "fort", "port", "mount", "lake", "river", "north", "south", "east", "west",
    "release", "version", "build", "status", "error", "info", "warning", "debug", "null",
    "mark", "will", "grace", "rose", "bill", "jack", "ray", "dean", "chase", "summer",
    "hope", "art", "rich", "miles", "pat", "sue", "joy", "faith", "guy", "gene", "drew",
    "sky", "star", "storm", "rain", "dawn", "crystal", "amber", "ruby", "pearl", "ivy",
    "holly", "iris", "lily", "daisy", "violet", "destiny", "harmony", "royal", "major",
    "ernst", "mai", "kai", "paz", "luz", "rosa", "clemente", "bonita", "blanca", "dolores",
}  # fmt: skip
_NAME = re.compile(r"[^\W\d_]{2,}(?:[-'][^\W\d_]{2,})?")


def _word_lists() -> dict[str, set[str]]:
    lists: dict[str, set[str]] = {}
    for name in LOWER_CASE_LISTS + ANY_CASE_LISTS:
        path = Path("/usr/share/dict") / name
        if not path.exists():
            sys.exit(f"{path} missing: apt-get install wamerican wbritish wbrazilian wspanish "
                     "wfrench wngerman")  # fmt: skip
        words = lists.setdefault(name, set())
        for line in path.read_text(encoding="utf-8", errors="ignore").splitlines():
            word = line.strip()
            if word and "'" not in word and (name in ANY_CASE_LISTS or word[0].islower()):
                words.add(word.lower())
    return lists


def _clean(names: list[str]) -> list[str]:
    out = []
    for raw in names:
        name = raw.strip()
        if _NAME.fullmatch(name) and name[0].isupper() and not name[1:].isupper():
            out.append(name)
    return out


def main() -> None:
    from names_dataset import NameDataset  # type: ignore[import-not-found]
    from wordfreq import top_n_list  # type: ignore[import-not-found]

    from streams.detectors.pii.people import EN_STREET, FR_STREET, PT_ES_STREET

    lists = _word_lists()
    never = EXTRA_COMMON | {w.lower().rstrip(".") for w in EN_STREET + PT_ES_STREET + FR_STREET}
    data = NameDataset()
    given: set[str] = set()
    surnames: set[str] = set()
    kept_given: dict[str, set[str]] = {}
    kept_surnames: dict[str, set[str]] = {}
    for country in COUNTRIES:
        top = data.get_top_names(n=GIVEN_PER_GENDER, country_alpha2=country)[country]
        for names in top.values():
            given.update(_clean(names))
            kept_given.setdefault(country, set()).update(n.lower() for n in names[:TOP_GIVEN_KEPT])
        last = data.get_top_names(n=SURNAMES, country_alpha2=country, use_first_names=False)
        surnames.update(_clean(last[country]))
        kept_surnames[country] = {n.lower() for n in last[country][:TOP_SURNAMES_KEPT]}
    common_given, common_surnames = set(never), set(never)
    every_given = set().union(*kept_given.values())
    every_surname = set().union(*kept_surnames.values())
    for words in lists.values():
        common_given |= words - every_given
        common_surnames |= words - every_surname
    frequent = {w for lang in ("en", "pt", "es", "fr", "de") for w in top_n_list(lang, 8000)}
    capitalised = sorted(w[:1].upper() + w[1:] for w in frequent if w.isalpha() and len(w) > 1)
    document = {
        "source": "names-dataset 3.x, top names of " + ", ".join(COUNTRIES) + "; wordfreq",
        "given": sorted(n for n in given if n.lower() not in common_given),
        "given_common": sorted(n for n in given if n.lower() in common_given),
        "surnames": sorted(n for n in surnames if n.lower() not in common_surnames),
        "surnames_common": sorted(n for n in surnames if n.lower() in common_surnames),
        "words": capitalised,
    }
    out = Path(__file__).with_name("data") / "names.json"
    out.write_text(json.dumps(document, ensure_ascii=False, indent=0) + "\n", encoding="utf-8")
    print({k: len(v) for k, v in document.items() if isinstance(v, list)}, "->", out)


if __name__ == "__main__":
    main()
