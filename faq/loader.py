"""Load the maintainers' YAML into typed objects, validating as it goes.

Every problem is reported as ``file:line: field: message`` so a maintainer can
fix an edit without reading Python. ``load_faq`` raises ``FAQError`` carrying all
problems found; ``check`` returns them for ``python bot.py check`` (faq/check.py).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import jsonschema
import yaml

from .model import FAQ, Alternatives, Entry, NotCovered, Referent, Remembered, Topic

HERE = Path(__file__).resolve().parent
SCHEMA_PATH = HERE / "schema.json"
REQUIRED_INTENTS = (
    "account_usage", "recover_account", "re_register", "re_register_records", "id_duplicate",
    "phone_registered", "too_frequent", "email_ip_limited", "bind_wechat_alipay",
    "greeting", "thanks", "goodbye", "human_agent",
)
LEXICON_FILE = "lexicon.yaml"
NOT_COVERED_FILE = "not_covered.yaml"  # optional: neighbouring questions the FAQ does not answer
_KINDS = {LEXICON_FILE: "lexicon", NOT_COVERED_FILE: "notCovered"}
RENAMED_KEYS = {"flow": "offer"}  # old YAML key → its new name, for a clear message on an old file


@dataclass(frozen=True)
class Problem:
    file: str
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}"
        return f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"


class FAQError(ValueError):
    """The FAQ YAML is invalid; ``problems`` lists each with file, line and field."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


# ---- YAML with line numbers ----------------------------------------------

# libyaml's parser when PyYAML has it (composing the FAQ ten times faster); on a syntax error the pure-Python
# parser composes again, so problems read the same either way
_COMPOSER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _construct(node: yaml.Node, path: tuple, lines: dict[tuple, int], loader: yaml.SafeLoader,
               twice: list[tuple[tuple, int, int]]) -> Any:
    """Turn a composed YAML node into plain data, recording each path's line (1-based) and, in ``twice``, each
    key a mapping gives again (its path, line and first line: YAML would silently keep only the last)."""
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if key in out:
                twice.append((path + (key,), key_node.start_mark.line + 1, lines[path + (key,)]))
            out[key] = _construct(value_node, path + (key,), lines, loader, twice)
            lines.setdefault(path + (key,), key_node.start_mark.line + 1)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_construct(v, path + (i,), lines, loader, twice) for i, v in enumerate(node.value)]
    return loader.construct_object(node, deep=True)


def _compose(text: str) -> list[yaml.Node | None]:
    try:
        return list(yaml.compose_all(text, Loader=_COMPOSER))
    except yaml.YAMLError:
        if _COMPOSER is yaml.SafeLoader:
            raise
        return list(yaml.compose_all(text, Loader=yaml.SafeLoader))


def _documents(path: Path) -> Iterable[tuple[Any, dict[tuple, int], list[tuple[tuple, int, int]]]]:
    nodes = _compose(path.read_text(encoding="utf-8"))
    loader = yaml.SafeLoader("")   # one constructor for the file's scalars (not one per scalar)
    try:
        for node in nodes:
            if node is None:
                continue
            lines: dict[tuple, int] = {}
            twice: list[tuple[tuple, int, int]] = []
            yield _construct(node, (), lines, loader, twice), lines, twice
    finally:
        loader.dispose()


def positions(path: str | Path) -> dict[tuple, int]:
    """The line of each node of a one-document YAML file by its path (("contrast_words", 3) → 318)."""
    for _, lines, _ in _documents(Path(path)):
        return lines
    return {}


def _line(lines: Mapping[tuple, int], path: Iterable[Any]) -> int:
    p = tuple(path)
    while p and p not in lines:
        p = p[:-1]
    return lines.get(p, 1)


def _field(path: Iterable[Any]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


# ---- loading --------------------------------------------------------------

def _schema() -> dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


def _validate(doc: Any, lines: Mapping[tuple, int], definition: str, rel: str) -> list[Problem]:
    schema = _schema()
    validator = jsonschema.Draft202012Validator({**schema, "$ref": f"#/$defs/{definition}"})
    problems = []
    for err in sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path))):
        path = list(err.absolute_path)
        if err.validator == "additionalProperties" and isinstance(err.instance, dict):
            extra = sorted(set(err.instance) - set(err.schema.get("properties", {})))
            if extra:
                path = path + [extra[0]]
                if extra[0] in RENAMED_KEYS and RENAMED_KEYS[extra[0]] in err.schema.get("properties", {}):
                    new = RENAMED_KEYS[extra[0]]
                    problems.append(Problem(rel, _line(lines, path), _field(path),
                                            f"the key {extra[0]!r} is now called {new!r}: rename it to {new}:"))
                    continue
        if err.validator == "uniqueItems" and isinstance(err.instance, list):
            # name the repeated item at its second place, not the whole list (a lexicon list holds hundreds)
            seen: set[str] = set()
            for k, item in enumerate(err.instance):
                key = json.dumps(item, sort_keys=True, ensure_ascii=False)
                if key in seen:
                    problems.append(Problem(rel, _line(lines, path + [k]), _field(path + [k]),
                                            f"{item!r} is listed twice"))
                seen.add(key)
            continue
        message = err.message
        if err.validator == "type" and isinstance(err.instance, bool):
            message += " (YAML reads an unquoted yes, no, on or off as true or false: put the word in quotes)"
        problems.append(Problem(rel, _line(lines, path), _field(path), message))
    return problems


Raw = tuple[str, dict, dict]  # (file relative path, document, line numbers)


def _read(directory: Path) -> tuple[list[Raw], dict[str, Raw], list[Problem]]:
    """Topic documents, the special files by kind ("lexicon", "notCovered"), and problems."""
    problems: list[Problem] = []
    topics: list[Raw] = []
    special: dict[str, Raw] = {}
    files = sorted(directory.rglob("*.yaml")) + sorted(directory.rglob("*.yml"))
    if not files:
        problems.append(Problem(str(directory), 1, "", "no FAQ YAML files found"))
    for path in files:
        rel = os.path.relpath(path)
        try:
            docs = list(_documents(path))
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            problems.append(Problem(rel, (mark.line + 1) if mark else 1, "", f"YAML syntax: {getattr(e, 'problem', e)}"))
            continue
        kind = _KINDS.get(path.name, "topic")
        for doc, lines, twice in docs:
            found = [Problem(rel, line, _field(key), f"{key[-1]!r} is given twice (first at line {first}): "
                                                     "YAML keeps only the last; merge the two")
                     for key, line, first in twice] + _validate(doc, lines, kind, rel)
            problems.extend(found)
            if found:
                continue
            if kind == "topic":
                topics.append((rel, doc, lines))
            else:
                special[kind] = (rel, doc, lines)
    return topics, special, problems


def _build(topics_raw: list[Raw], special: dict[str, Raw], problems: list[Problem]) -> FAQ:
    lexicon_raw = special.get("lexicon")
    topics: list[Topic] = []
    entry_where: dict[str, str] = {}
    question_where: dict[str, tuple[str, str]] = {}
    intents_seen: dict[str, str] = {}
    seeds_seen: dict[int, str] = {}
    for rel, doc, lines in topics_raw:
        intent = doc["intent"]
        where = f"{rel}:{_line(lines, ('intent',))}"
        if intent in intents_seen:
            problems.append(Problem(rel, _line(lines, ("intent",)), "intent",
                                    f"intent {intent!r} is already defined at {intents_seen[intent]}"))
            continue
        intents_seen[intent] = where
        seed = doc.get("seed_topic")
        if seed is not None:
            if seed in seeds_seen:
                problems.append(Problem(rel, _line(lines, ("seed_topic",)), "seed_topic",
                                        f"seed topic {seed} is already covered at {seeds_seen[seed]}"))
            seeds_seen[seed] = where
        entries = []
        for i, raw in enumerate(doc["entries"]):
            eline = _line(lines, ("entries", i))
            eid = raw["id"]
            if eid.split(".", 1)[0] != intent:
                problems.append(Problem(rel, _line(lines, ("entries", i, "id")), f"entries[{i}].id",
                                        f"entry id {eid!r} must start with its topic's intent {intent!r}."))
            if eid in entry_where:
                problems.append(Problem(rel, _line(lines, ("entries", i, "id")), f"entries[{i}].id",
                                        f"duplicate entry id {eid!r} (first at {entry_where[eid]})"))
            entry_where[eid] = f"{rel}:{eline}"
            questions = [raw["question"], *raw.get("alternates", [])]
            for j, q in enumerate(questions):
                key = _question_key(q)
                field = "question" if j == 0 else f"alternates[{j - 1}]"
                line = _line(lines, ("entries", i) + (("question",) if j == 0 else ("alternates", j - 1)))
                if key in question_where and question_where[key][0] != eid:
                    other, at = question_where[key]
                    problems.append(Problem(rel, line, f"entries[{i}].{field}",
                                            f"the question {q!r} is also under entry {other!r} ({at})"))
                question_where.setdefault(key, (eid, f"{rel}:{line}"))
            entries.append(Entry(
                id=eid, intent=intent, question=raw["question"].strip(), answer=raw["answer"].strip(),
                alternates=tuple(a.strip() for a in raw.get("alternates", [])),
                keywords=tuple(k.strip() for k in raw.get("keywords", [])),
                paired_keywords=tuple(k.strip() for k in raw.get("paired_keywords", [])),
                tried=tuple(tuple(p.strip() for p in step) for step in raw.get("tried", [])),
                related=tuple(raw.get("related", [])), offer=raw.get("offer"), source=f"{rel}:{eline}",
            ))
        topics.append(Topic(intent=intent, title=doc["title"], seed_topic=seed, entries=tuple(entries), source=where))

    # cross references
    for t in topics:
        for e in t.entries:
            for r in e.related:
                if r not in entry_where:
                    problems.append(_entry_problem(e, "related", f"unknown entry id {r!r}"))
    for intent in REQUIRED_INTENTS:
        if intent not in intents_seen:
            problems.append(Problem("faq", 1, "", f"missing topic: no file defines intent {intent!r}"))
    for n in range(1, 10):
        if n not in seeds_seen:
            problems.append(Problem("faq", 1, "", f"missing topic: seed topic {n} is not covered"))

    synonyms: dict[str, str] = {}
    typos: dict[str, str] = {}
    domain_words: tuple[str, ...] = ()
    stopwords: tuple[str, ...] = ()
    contrast: tuple[str, ...] = ()
    services: tuple[str, ...] = ()
    symptoms: tuple[str, ...] = ()
    senses: dict[str, tuple[str, ...]] = {}
    alternatives: list[Alternatives] = []
    attributes: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {}
    smalltalk: dict[str, tuple[str, ...]] = {}
    instructions: tuple[str, ...] = ()
    addressing: tuple[str, ...] = ()
    askers: tuple[str, ...] = ()
    complaints: tuple[str, ...] = ()
    account_words: tuple[str, ...] = ()
    still_failing: tuple[str, ...] = ()
    referents: list[Referent] = []
    remembered: Remembered | None = None
    prompts: tuple[str, ...] = ()
    if lexicon_raw is None:
        if not any(os.path.basename(p.file) == LEXICON_FILE for p in problems):   # (not when it is there but invalid)
            problems.append(Problem("faq", 1, "", f"missing {LEXICON_FILE} (synonyms, typos, domain words)"))
    else:
        rel, doc, lines = lexicon_raw
        for canonical, variants in (doc.get("synonyms") or {}).items():
            for k, v in enumerate(variants):
                key = v.strip().lower()
                if key in synonyms and synonyms[key] != canonical:
                    problems.append(Problem(rel, _line(lines, ("synonyms", canonical, k)), f"synonyms.{canonical}[{k}]",
                                            f"{v!r} is already a synonym of {synonyms[key]!r}"))
                synonyms[key] = str(canonical)
        typos = {str(k): str(v) for k, v in (doc.get("typos") or {}).items()}
        domain_words = tuple(doc.get("domain_words") or ())
        stopwords = tuple(doc.get("stopwords") or ())
        services = tuple(doc.get("other_services") or ())
        attributes = {str(k): (tuple(map(str, v["asks"])), tuple(map(str, v["states"])))
                      for k, v in (doc.get("attributes") or {}).items()}
        asking = (w for asks, _ in attributes.values() for w in asks)
        contrast = tuple(dict.fromkeys((*(doc.get("contrast_words") or ()), *services, *asking)))
        # a contrast word that is a synonym reads as its canonical word (已被绑定 is 已被注册): it would contrast
        # every message saying that word, unless the canonical word is a contrast word too
        contrasting = {str(w).strip().lower() for w in contrast}
        for k, word in enumerate(doc.get("contrast_words") or ()):
            canonical = synonyms.get(str(word).strip().lower())
            if canonical is not None and canonical.lower() not in contrasting:
                problems.append(Problem(rel, _line(lines, ("contrast_words", k)), f"contrast_words[{k}]",
                                        f"{word!r} is a synonym of {canonical!r}: as a contrast word it would "
                                        f"contrast every message saying {canonical!r}; name a longer phrase"))
        symptoms = tuple(map(str, doc.get("symptoms") or ()))
        for k, word in enumerate(symptoms):
            if word not in contrast:
                problems.append(Problem(rel, _line(lines, ("symptoms", k)), f"symptoms[{k}]",
                                        f"{word!r} is not a contrast word (contrast_words): list it there too"))
        senses = {str(k): tuple(str(c) for c in v) for k, v in (doc.get("contrast_senses") or {}).items()}
        naming = {str(w) for spec in (doc.get("alternatives") or {}).values() for ws in spec["names"].values() for w in ws}
        for word in senses:
            if word not in contrast and word not in naming:
                problems.append(Problem(rel, _line(lines, ("contrast_senses", word)), f"contrast_senses.{word}",
                                        f"{word!r} is not a contrast word (contrast_words, other_services or an attribute's asks)"
                                        " nor a word naming an alternative"))
        intents = {t.intent for t in topics}
        for g, spec in (doc.get("alternatives") or {}).items():
            if spec["intent"] not in intents:
                problems.append(Problem(rel, _line(lines, ("alternatives", g, "intent")), f"alternatives.{g}.intent",
                                        f"{spec['intent']!r} is not a topic's intent"))
            alternatives.append(Alternatives(str(g), str(spec["intent"]),
                                             {str(a): tuple(map(str, ws)) for a, ws in spec["names"].items()}))
        smalltalk = {str(k): tuple(v) for k, v in (doc.get("smalltalk") or {}).items()}
        instructions = tuple(doc.get("bot_instructions") or ())
        addressing = tuple(doc.get("addressing") or ())
        askers = tuple(map(str, doc.get("askers") or ()))
        complaints = tuple(map(str, doc.get("complaints") or ()))
        account_words = tuple(doc.get("account_words") or ())
        still_failing = tuple(doc.get("still_failing") or ())
        canonical_words = {*synonyms.values(), *domain_words}
        read_as: list[tuple[tuple, str]] = []   # (path, word) of words that must read as a lexicon word
        for k, spec in enumerate(doc.get("referents") or ()):
            referents.append(Referent(tuple(map(str, spec["words"])),
                                      {str(meant): tuple(map(str, ns)) for meant, ns in spec["means"].items()},
                                      tuple(map(str, spec.get("keep") or ())),
                                      tuple(map(str, spec.get("only_after") or ()))))
            read_as += [(("referents", k, "means", meant), meant) for meant in spec["means"]]
        prompts = tuple(map(str, doc.get("prompts") or ()))
        if doc.get("remembered"):
            spec = doc["remembered"]
            remembered = Remembered(*(tuple(map(str, spec.get(key) or ())) for key in ("things", "markers", "lost", "denied")))
            read_as += [(("remembered", key, k), word) for key in ("things", "lost") for k, word in enumerate(spec[key])]
        for path, word in read_as:
            if word not in canonical_words:
                problems.append(Problem(rel, _line(lines, path), _field(path),
                                        f"{word!r} is neither a synonym's canonical word nor a domain word"))
        if not still_failing:
            for e in (e for t in topics for e in t.entries if e.tried):
                problems.append(_entry_problem(e, "tried", f"{LEXICON_FILE} lists no still_failing phrases: "
                                                           "tried advice is never recognised"))
    not_covered = _not_covered(special.get("notCovered"), question_where, problems)
    return FAQ(topics=tuple(topics), synonyms=synonyms, domain_words=domain_words, typos=typos,
               stopwords=stopwords, contrast_words=contrast, other_services=services, symptoms=symptoms,
               contrast_senses=senses, attributes=attributes, alternatives=tuple(alternatives), smalltalk=smalltalk,
               bot_instructions=instructions, addressing=addressing, askers=askers, complaints=complaints,
               account_words=account_words, still_failing=still_failing,
               referents=tuple(referents), remembered=remembered, prompts=prompts, not_covered=not_covered)


def _entry_problem(e: Entry, field: str, message: str) -> Problem:
    """A problem with one field of an entry, at the entry's ``file:line``."""
    file, line = e.source.rsplit(":", 1)
    return Problem(file, int(line), f"{e.id}.{field}", message)


def _not_covered(raw: Raw | None, faq_questions: Mapping[str, tuple[str, str]],
                 problems: list[Problem]) -> tuple[NotCovered, ...]:
    """The catalogue's groups; a question also in the FAQ (or in two groups) is a problem."""
    if raw is None:
        return ()
    rel, doc, lines = raw
    groups: list[NotCovered] = []
    group_where: dict[str, int] = {}
    seen: dict[str, tuple[str, str]] = {}
    for i, g in enumerate(doc["groups"]):
        gline = _line(lines, ("groups", i, "id"))
        if g["id"] in group_where:
            problems.append(Problem(rel, gline, f"groups[{i}].id",
                                    f"duplicate group id {g['id']!r} (first at {rel}:{group_where[g['id']]})"))
        group_where.setdefault(g["id"], gline)
        questions = g.get("questions") or ()   # (a group may have phrases only)
        for j, q in enumerate(questions):
            key, line, field = _question_key(q), _line(lines, ("groups", i, "questions", j)), f"groups[{i}].questions[{j}]"
            if key in faq_questions:
                other, at = faq_questions[key]
                problems.append(Problem(rel, line, field, f"the question {q!r} is answered by FAQ entry {other!r} ({at}); "
                                                          "a not-covered question must not be one the FAQ answers"))
            elif key in seen and seen[key][0] != g["id"]:
                problems.append(Problem(rel, line, field, f"the question {q!r} is also in group {seen[key][0]!r} ({seen[key][1]})"))
            seen.setdefault(key, (g["id"], f"{rel}:{line}"))
        groups.append(NotCovered(id=g["id"], service=g["service"].strip(), reply=g["reply"].strip(),
                                 questions=tuple(q.strip() for q in questions), source=f"{rel}:{gline}",
                                 phrases=tuple(p.strip() for p in g.get("phrases") or ()),
                                 at_prompts=bool(g.get("at_prompts", False))))
    return tuple(groups)


def _question_key(q: str) -> str:
    return "".join(ch for ch in q.lower() if ch.isalnum())


def check(directory: str | Path) -> tuple[FAQ | None, list[Problem]]:
    """Validate the FAQ folder; return the FAQ (None when invalid) and every problem found."""
    directory = Path(directory)
    if not directory.is_dir():
        return None, [Problem(str(directory), 1, "", "FAQ folder not found")]
    topics_raw, special, problems = _read(directory)
    faq = _build(topics_raw, special, problems)
    return (None if problems else faq), problems


def load_dir(directory: str | Path) -> FAQ:
    """Load and validate a FAQ folder, raising FAQError listing every problem."""
    faq, problems = check(directory)
    if problems:
        raise FAQError(problems)
    assert faq is not None
    return faq


def faq_dir(cfg: Mapping[str, Any]) -> Path:
    """The FAQ folder config names (``faq.dir``, relative to the project root)."""
    from settings import FaqConfig, resolve_path

    return resolve_path(FaqConfig.of(cfg).dir)


def load_faq(cfg: Mapping[str, Any]) -> FAQ:
    """Load the FAQ folder named by config section ``faq.dir``."""
    return load_dir(faq_dir(cfg))
