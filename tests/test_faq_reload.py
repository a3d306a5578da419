"""Live FAQ reload: a saved edit is validated and swapped in; a broken one keeps the last good FAQ.

In process (the watcher's poll and the engine's swap) and as a real `bot.py serve` under load:
no request fails and the old FAQ is served until the new one is valid.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import requests
import yaml

from accounts.local import LocalAccountClient as LocalAccounts
from faq.loader import load_dir
from support import Chat, make_engine
from intents.live import LiveFAQ
from intents.matcher import MatcherConfig

from support.faq_edit import DATA, QUESTION, TOPIC, break_it, save
from support.servers import ROOT, free_port, start, stop, wait_for_url

# the start of the username entry's answer as the FAQ has it today; an edit prefixes a marker
OLD = load_dir(DATA).entry("recover_account.username").answer.splitlines()[0][:16]
NEW = "【已更新】" + OLD


@pytest.fixture()
def folder(faq_copy: Path) -> Path:  # noqa: F811
    return faq_copy


def wait_until(predicate, timeout: float = 30.0, every: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError("condition not met within the deadline")


def test_a_valid_edit_is_swapped_into_the_engine(folder: Path, tmp_path: Path):
    live = LiveFAQ(folder, MatcherConfig())
    engine = make_engine(LocalAccounts(), matcher=live.current.matcher, data_dir=tmp_path)
    live.subscribe(lambda snap: engine.use(snap.faq, snap.matcher))
    chat = Chat(engine)
    assert OLD in chat.say(QUESTION)[0].text and not live.poll()
    save(folder / "topics" / TOPIC, OLD, NEW)
    assert live.poll()
    assert chat.say(QUESTION)[0].text.startswith("【已更新】")
    assert live.status()["reloads"] == 1 and live.status()["ok"]


def test_a_broken_edit_keeps_the_last_good_faq_and_reports_file_line_field(folder: Path, tmp_path: Path, caplog):
    live = LiveFAQ(folder, MatcherConfig())
    engine = make_engine(LocalAccounts(), matcher=live.current.matcher, data_dir=tmp_path)
    live.subscribe(lambda snap: engine.use(snap.faq, snap.matcher))
    save(folder / "topics" / TOPIC, OLD, NEW)
    line = break_it(folder / "topics" / TOPIC)  # the same save also changed the answer: none of it is served
    assert not live.poll()
    status = live.status()
    assert not status["ok"] and status["failures"] == 1
    assert any(e.endswith(f"{TOPIC}:{line}: entries[0].questoin: Additional properties are not allowed "
                          f"('questoin' was unexpected)") or (f"{TOPIC}:{line}: " in e and "questoin" in e)
               for e in status["errors"]), status["errors"]
    assert any(f"{TOPIC}:{line}: " in r.getMessage() for r in caplog.records)
    assert OLD in Chat(engine).say(QUESTION)[0].text
    assert not live.poll() and live.status()["failures"] == 1   # the same broken files are not re-read
    save(folder / "topics" / TOPIC, "    questoin:", "    question:")
    assert live.poll() and live.status()["ok"]
    assert Chat(engine).say(QUESTION)[0].text.startswith("【已更新】")


def test_a_turn_keeps_the_faq_it_started_with(folder: Path, tmp_path: Path):
    """The swap happens between turns: a turn in progress keeps reading the FAQ it started with."""
    live = LiveFAQ(folder, MatcherConfig())
    engine = make_engine(LocalAccounts(), matcher=live.current.matcher, data_dir=tmp_path)
    seen = []
    real_match = live.current.matcher.match

    def match_then_swap(text):
        result = real_match(text)
        save(folder / "topics" / TOPIC, OLD, NEW)
        live.poll()
        engine.use(live.current.faq, live.current.matcher)
        seen.append(engine.faq is live.current.faq)
        return result

    engine.matcher.match = match_then_swap  # type: ignore[method-assign]
    replies = Chat(engine).say(QUESTION)
    assert seen == [False] and OLD in replies[0].text
    assert Chat(engine).say(QUESTION)[0].text.startswith("【已更新】")


def test_files_added_and_removed_are_noticed(folder: Path):
    live = LiveFAQ(folder, MatcherConfig())
    (folder / "topics" / "99_extra.yaml").write_text(yaml.safe_dump({
        "intent": "extra_topic", "title": "额外", "entries": [
            {"id": "extra_topic.one", "question": "学信网的吉祥物叫什么名字？", "answer": "测试答案"}]},
        allow_unicode=True), encoding="utf-8")
    assert live.poll() and "extra_topic.one" in live.current.faq.entries
    (folder / "topics" / "99_extra.yaml").unlink()
    assert live.poll() and "extra_topic.one" not in live.current.faq.entries


# ---- a real server under load -------------------------------------------------------

def test_serve_reloads_under_load_without_a_failed_request(folder: Path, tmp_path: Path):
    web_port = free_port()
    cfg = yaml.safe_load((ROOT / "config.yaml").read_text(encoding="utf-8"))
    cfg["faq"].update(dir=str(folder), watch=True, watch_interval=0.2)
    cfg["web"].update(port=web_port, secret_file=str(tmp_path / "web.key"), public_url=f"http://127.0.0.1:{web_port}")
    cfg["sessions"].update(backend="sqlite", sqlite_path=str(tmp_path / "sessions.db"), data_dir=str(tmp_path))
    cfg["telegram"]["token"] = ""
    # a flood from one address on purpose: the abuse limits are not what this test measures
    cfg["limits"].update(chat_per_ip={"limit": 10**6, "window": 60}, chat_per_session={"limit": 10**6, "window": 60})
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    proc = start(["--config", str(path), "serve", "--workers", "1"])   # one process: its reload is what is checked
    results: list[tuple[float, int, str]] = []   # (sent at, status, first reply)
    stop_load = threading.Event()

    def load() -> None:
        with requests.Session() as http:
            sid = http.post(url + "api/session", timeout=30).json()["session_id"]
            while not stop_load.is_set():
                sent = time.monotonic()
                r = http.post(url + "api/chat", json={"session_id": sid, "text": QUESTION}, timeout=30)
                text = r.json()["replies"][0]["text"] if r.status_code == 200 else r.text
                results.append((sent, r.status_code, text))

    try:
        url = wait_for_url(proc)
        workers = [threading.Thread(target=load, daemon=True) for _ in range(3)]
        for w in workers:
            w.start()
        wait_until(lambda: len(results) >= 10)

        # a broken edit (which also changes the answer): refused, reported, the old FAQ still served
        topic = folder / "topics" / TOPIC
        save(topic, OLD, NEW)
        line = break_it(topic)
        broken_at = time.monotonic()
        health = wait_until(lambda: (h := requests.get(url + "healthz", timeout=10).json())["faq"]["errors"] and h)
        assert health["status"] == "ok" and not health["faq"]["ok"]
        assert any(f"{TOPIC}:{line}: " in e and "questoin" in e for e in health["faq"]["errors"])
        wait_until(lambda: sum(sent > broken_at + 1.0 for sent, *_ in results) >= 10)

        # the fix: the new answer is served from then on
        fixed_at = time.monotonic()
        save(topic, "    questoin:", "    question:")
        wait_until(lambda: any(text.startswith("【已更新】") for *_, text in results[-5:]))
        assert requests.get(url + "healthz", timeout=10).json()["faq"]["ok"]
    finally:
        stop_load.set()
        stop(proc)
    assert results and all(status == 200 for _, status, _ in results), \
        [r for r in results if r[1] != 200][:3]
    before_fix = [text for sent, _, text in results if sent < fixed_at]
    assert before_fix and all(OLD in text and "【已更新】" not in text for text in before_fix)
    last = results[-1][2]
    assert last.startswith("【已更新】")


def test_watched_engine_follows_the_config(folder: Path, tmp_path: Path):
    """What `bot.py telegram` and the web app use: an engine over a watched FAQ, or a fixed one."""
    from intents.live import watched_engine

    built = []

    def build(cfg, matcher=None):
        engine = make_engine(LocalAccounts(), matcher=matcher, data_dir=tmp_path)
        built.append(engine)
        return engine

    engine, live = watched_engine({"faq": {"dir": str(folder), "watch": False}}, build)
    assert live is None and engine is built[-1]
    engine, live = watched_engine({"faq": {"dir": str(folder), "watch_interval": 0.05}}, build)
    assert engine.matcher is live.current.matcher
    save(folder / "topics" / TOPIC, OLD, NEW)
    live.start()
    try:
        wait_until(lambda: Chat(engine).say(QUESTION)[0].text.startswith("【已更新】"))
    finally:
        live.stop()
