"""Person names in free text: case tables against the real spaCy model, the rules on their own, failures."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

from warden.errors import EngineUnavailable, InvalidArgument
from warden.privacy.entities import Entity
from warden.privacy.ner import DEFAULT_MODEL, INSTALL_HINT, SpacyDetector, decide, name_runs, needs_model, windows

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def detector() -> SpacyDetector:
    """The real detector on the installed model, loaded once (the model is a dependency of the ``ner`` extra)."""
    found = SpacyDetector()
    try:
        found.ensure_available().load()
    except EngineUnavailable as exc:  # pragma: no cover - scripts/setup installs it; say so loudly if not.
        pytest.fail(f"the spaCy model is required for these tests: {exc}")
    return found


def names(detector: SpacyDetector, text: str) -> list[str]:
    return [text[f.start : f.end] for f in detector.find(text)]


# (text, the names in it). English and other European names, with and without titles or cues.
NAMES = [
    ("Called April Griffin about the refund.", ["April Griffin"]),
    ("Spoke with Dr. Ella Dörr today.", ["Ella Dörr"]),
    ("Refund issued to Mme Christophe Petit after review.", ["Christophe Petit"]),
    ("Herr Seifert called again.", ["Seifert"]),
    ("Sig.ra Rossi has paid the invoice.", ["Rossi"]),
    ("Sra. Ana María Fernández llamó ayer.", ["Ana María Fernández"]),
    ("dhr. Jansen belde gisteren.", ["Jansen"]),
    ("Le dossier de M. Dupont est complet.", ["M. Dupont"]),
    ("Please forward the invoice to Vincent van de Eerenbeemt.", ["Vincent van de Eerenbeemt"]),
    ("The parcel for Guy Coste du Bodin was left with a neighbour.", ["Guy Coste du Bodin"]),
    ("Attendees: Paulina Tosi, Benedetto Valier.", ["Paulina Tosi", "Benedetto Valier"]),
    ("Thanks, Valeria", ["Valeria"]),
    ("Hi Kramer, your order ships tomorrow.", ["Kramer"]),
    ("customer: Elizabeth King; email on file", ["Elizabeth King"]),
    ("Roberta Páez's account was locked.", ["Roberta Páez"]),
    ("Contact Kramer about it.", ["Kramer"]),
    ("Marina Cortese called twice and left no message.", ["Marina Cortese"]),
    ("Laurent Brun reviewed the file.", ["Laurent Brun"]),
    ("Hans D. Wiek signed the form.", ["Hans D. Wiek"]),
    ("Traudel Koch II reviewed the file.", ["Traudel Koch II"]),
    ("Customer Milagros Tejada reported that the card was charged twice.", ["Milagros Tejada"]),
    ("Sent the contract to Gerrit Boogaerts, cc Sep Riem.", ["Gerrit Boogaerts", "Sep Riem"]),
    ("Jesse van 't Erve", ["Jesse van 't Erve"]),
    ("Mart Schenkel", ["Mart Schenkel"]),
]

# Capitalised words that are not names: sentence openers, dates, places, organisations, products, titles alone.
NOT_NAMES = [
    "Will you call me tomorrow?",
    "May 3 is the deadline.",
    "The deadline is May 3.",
    "Bill total was 30 dollars.",
    "We flew to New York last week.",
    "I met her in Paris.",
    "Paris is lovely in spring.",
    "See you on Monday Morning.",
    "Merry Christmas to all.",
    "Under American law this is fine.",
    "Central Bank of Ireland raised rates.",
    "The Graphical User Interface now ships with a 12-month warranty.",
    "Revenue grew 12% to $3.4 million in Q3 2023.",
    "Order 48213 shipped in 12 boxes.",
    "Matter when Mrs own fill.",
    "What I said is true.",
    "IBAN and SSN are checked by the NHS team.",
    "will you call bill about the may invoice",
]


@pytest.mark.parametrize(("text", "expected"), NAMES)
def test_when_a_text_names_people_then_exactly_their_names_are_found(
    detector: SpacyDetector, text: str, expected: list[str]
) -> None:
    assert names(detector, text) == expected


@pytest.mark.parametrize("text", NOT_NAMES)
def test_when_capitalised_words_are_not_names_then_nothing_is_found(detector: SpacyDetector, text: str) -> None:
    assert names(detector, text) == []


def test_when_a_name_follows_a_title_then_it_scores_as_confirmed(detector: SpacyDetector) -> None:
    (titled,) = detector.find("Refund issued to Mrs Kowalski yesterday.")
    (shaped,) = detector.find("Refund issued to Anneke Kowalski yesterday.")
    assert titled.score > shaped.score >= 0.5
    assert titled.entity is Entity.PERSON
    assert titled.detector == "spacy"


def test_when_many_texts_are_given_then_find_many_equals_find_per_text(detector: SpacyDetector) -> None:
    texts = [text for text, _ in NAMES] + NOT_NAMES
    assert detector.find_many(texts) == [detector.find(text) for text in texts]


def test_the_version_names_spacy_and_the_model(detector: SpacyDetector) -> None:
    assert f"spacy/{metadata.version('spacy')}" in detector.version
    assert "3.8.0" in detector.version
    assert "warden-names/" in detector.version
    assert detector.name == "spacy"
    assert detector.entities == frozenset({Entity.PERSON})


def test_only_the_ner_component_is_loaded(detector: SpacyDetector) -> None:
    assert detector.load().pipe_names == ["ner"]


# The rules on their own, without the model.


def test_runs_take_particles_inside_but_not_at_the_end() -> None:
    (run,) = name_runs("for Luke de Pauw de")
    assert (run.start, run.end) == (4, 16)
    assert [w for _, _, w in run.words] == ["luke", "pauw"]


def test_runs_stop_at_punctuation_and_leave_a_possessive_out() -> None:
    text = "Roberta Páez's account, Jan Smit."
    assert [text[r.start : r.end] for r in name_runs(text)] == ["Roberta Páez", "Jan Smit"]


def test_a_title_is_a_cue_and_not_part_of_the_name() -> None:
    opener, run = name_runs("Spoke with Dr. Ella Dörr today")
    assert (opener.cue, run.cue) == ("", "title")
    assert not needs_model(run)
    assert decide(run, []) == (run.start, run.end, 0.85)


def test_a_label_with_a_colon_is_a_cue() -> None:
    (run,) = name_runs("name: Kramer")
    assert run.cue == "label"


def test_a_lone_word_opening_a_sentence_is_not_asked_about() -> None:
    (run,) = name_runs("Griffin called twice.")
    assert run.initial
    assert not needs_model(run)
    assert decide(run, [(0, 7, "PERSON")]) is None


def test_two_words_in_mid_sentence_are_a_name_without_the_model() -> None:
    (run,) = name_runs("we met Anneke Kowalski at the branch")
    assert not needs_model(run)
    assert decide(run, []) == (run.start, run.end, 0.6)


def test_a_run_that_starts_like_a_place_is_vetoed_by_a_place_entity() -> None:
    text = "we flew to New York"
    (run,) = name_runs(text)
    assert needs_model(run)
    assert decide(run, [(run.start, run.end, "GPE")]) is None


def test_an_organisation_word_rules_a_run_out() -> None:
    (run,) = name_runs("we wrote to Deutsche Bank yesterday")
    assert run.rejected
    assert decide(run, [(run.start, run.end, "PERSON")]) is None


def test_windows_cover_each_run_with_context_and_merge_when_they_touch() -> None:
    text = "one two three Anna Berg four five six seven eight nine Carl Dahl ten"
    runs = name_runs(text)
    assert [text[s:e] for s, e in windows(text, runs, 1)] == ["three Anna Berg four", "nine Carl Dahl ten"]
    assert len(windows(text, runs, 4)) == 1


def test_windows_stay_short_in_long_texts_and_around_long_tokens() -> None:
    text = " ".join(f"met Anna Berg{i} at noon" for i in range(2000)) + " and " + "x" * 5000 + " Carl Dahl"
    spans = windows(text, name_runs(text), 4)
    assert len(spans) >= len(text) // 2400
    assert all(end - start <= 2000 + 400 for start, end in spans)
    assert text[spans[-1][0] : spans[-1][1]].endswith("Carl Dahl")


class RecordingNlp:
    """A stand-in pipeline that records what it is asked and finds nothing."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.meta = {"lang": "xx", "name": "recording", "version": "0"}
        self.Defaults = type("Defaults", (), {"stop_words": frozenset({"the"})})

    def pipe(self, texts: Sequence[str], batch_size: int = 1) -> Iterator[Any]:
        for text in texts:
            self.seen.append(text)
            yield type("Doc", (), {"ents": ()})()


def test_when_no_run_needs_the_model_then_the_model_is_not_called() -> None:
    nlp = RecordingNlp()
    found = SpacyDetector(nlp=nlp).find_many(["order 123 shipped", "Mr Smith called", "Griffin called twice.", ""])
    assert nlp.seen == []
    assert [len(f) for f in found] == [0, 1, 0, 0]


def test_the_model_reads_only_short_windows_around_runs() -> None:
    nlp = RecordingNlp()
    text = "we spoke on the phone at length yesterday with Kramer about the refund and the card"
    SpacyDetector(nlp=nlp, context=2).find(text)
    assert nlp.seen == ["yesterday with Kramer about the"]


def test_when_the_model_is_not_installed_then_the_engine_is_unavailable_with_an_install_hint() -> None:
    with pytest.raises(EngineUnavailable, match=r"no_such_model_xyz.*warden\[ner\]"):
        SpacyDetector("no_such_model_xyz").ensure_available()


def test_when_the_model_does_not_load_then_finding_fails_loudly(tmp_path: Path) -> None:
    with pytest.raises(EngineUnavailable) as caught:
        SpacyDetector(str(tmp_path)).find("Contact Kramer about it.")
    assert INSTALL_HINT in caught.value.message
    assert caught.value.code == "engine_unavailable"


@pytest.mark.parametrize(("option", "value"), [("batch_size", 0), ("context", -1)])
def test_when_an_option_is_out_of_range_then_it_is_refused(option: str, value: int) -> None:
    options: dict[str, Any] = {option: value}
    with pytest.raises(InvalidArgument, match=option):
        SpacyDetector(**options)


def run_python(code: str, prefix: Sequence[str] = ()) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*prefix, sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=False,
    )


def test_when_spacy_is_missing_then_the_default_analyzer_fails_loudly() -> None:
    done = run_python(
        """
        import sys
        sys.modules["spacy"] = None  # as if spaCy were not installed
        from warden.errors import EngineUnavailable
        from warden.privacy.text import TextAnalyzer
        try:
            TextAnalyzer.default()
        except EngineUnavailable as exc:
            print(exc.message)
        else:
            print("built without spaCy")
        """
    )
    assert done.returncode == 0, done.stderr
    assert "spaCy is not installed" in done.stdout
    assert INSTALL_HINT in done.stdout


def unshare_prefix() -> list[str]:
    """The ``unshare`` command that cuts the network here, or a skip saying loudly why it cannot."""
    tool = shutil.which("unshare")
    if tool is None:
        pytest.skip("SKIPPED LOUDLY: `unshare` is not installed, so de-identification offline is not checked here")
    for prefix in ([tool, "--net"], [tool, "-rn"]):
        probe = subprocess.run([*prefix, "true"], capture_output=True, text=True, check=False)
        if probe.returncode == 0:
            return prefix
        reason = probe.stderr.strip()
    pytest.skip(f"SKIPPED LOUDLY: `unshare` may not create a network namespace here ({reason})")


def test_when_the_network_namespace_is_cut_then_names_are_still_found() -> None:
    done = run_python(
        f"""
        import json, socket
        try:
            socket.create_connection(("192.0.2.1", 80), timeout=2).close()
            offline = False
        except OSError:
            offline = True
        from warden.privacy.text import TextAnalyzer
        note = "Called Marina Cortese on +39 0371 418763; Contact Kramer about the refund."
        found = TextAnalyzer.default().analyze(note)
        print(json.dumps({{"offline": offline, "model": {DEFAULT_MODEL!r},
                           "found": [[f.entity.value, note[f.start:f.end]] for f in found]}}))
        """,
        prefix=unshare_prefix(),
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["offline"], "the namespace still reached the network"
    assert ["PERSON", "Marina Cortese"] in result["found"]
    assert ["PERSON", "Kramer"] in result["found"]
    assert ["PHONE", "+39 0371 418763"] in result["found"]


def test_importing_the_analyzer_and_the_detector_does_not_load_spacy() -> None:
    done = run_python(
        """
        import sys
        import warden.privacy.addresses, warden.privacy.ner, warden.privacy.text
        print(sorted(name for name in ("spacy", "thinc") if name in sys.modules))
        """
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
