"""The normaliser's kept copy of jieba's default dictionary (var/cache): the same table as jieba's own,
found again only for the same dictionary file, ignored when damaged; so are the known words' own readings
(pypinyin's phrase dictionary) kept beside it. The trie regexes of the lexicon's
words: the same matches as the alternation of the words longest first."""
from __future__ import annotations

import random
import re
import sys
from pathlib import Path

import jieba
import pytest

import settings
from faq.loader import load_faq
from intents import normalize


@pytest.fixture(scope="module")
def jieba_table() -> tuple[dict[str, int], int]:
    tokenizer = jieba.Tokenizer()
    tokenizer.initialize()
    return tokenizer.FREQ, tokenizer.total


def test_the_kept_table_is_jiebas_dictionary(tmp_path: Path, jieba_table):
    assert normalize.read_frequencies(tmp_path) is None
    normalize.write_frequencies(tmp_path, *jieba_table)
    freq, total = normalize.read_frequencies(tmp_path)
    assert total == jieba_table[1]
    assert freq == jieba_table[0] and list(freq) == list(jieba_table[0])   # the same words, in the same order
    assert normalize._base_tokenizer().FREQ == jieba_table[0]


def test_a_table_of_another_dictionary_file_is_not_read_and_is_replaced(tmp_path: Path, monkeypatch):
    normalize.write_frequencies(tmp_path, {"学信网": 5, "学": 0, "学信": 0}, 5)
    assert normalize.read_frequencies(tmp_path) == ({"学信网": 5, "学": 0, "学信": 0}, 5)
    # jieba upgraded, or its dict.txt edited: another key, so the old table is not found
    monkeypatch.setattr(normalize, "_dictionary_key", lambda: "another")
    assert normalize.read_frequencies(tmp_path) is None
    normalize.write_frequencies(tmp_path, {"账号": 3}, 3)
    assert normalize.read_frequencies(tmp_path) == ({"账号": 3}, 3)
    assert [p.name for p in tmp_path.glob("jieba-*.freq")] == ["jieba-another.freq"]


@pytest.mark.parametrize("damage", [lambda b: b[:-3], lambda b: b"junk" + b, lambda b: b[:20], lambda b: b"", lambda b: b + b"x"])
def test_a_damaged_table_is_ignored(tmp_path: Path, damage):
    normalize.write_frequencies(tmp_path, {"学信网": 5, "学": 0, "学信": 0}, 5)
    path = next(tmp_path.glob("jieba-*.freq"))
    path.write_bytes(damage(path.read_bytes()))
    assert normalize.read_frequencies(tmp_path) is None


def test_an_unwritable_directory_is_skipped(tmp_path: Path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    normalize.write_frequencies(blocker / "cache", {"学信网": 5}, 5)   # a file where the folder would be
    assert normalize.read_frequencies(blocker / "cache") is None


# ---- the known words' own readings (intents/phonetic.py), kept beside the jieba table ----

def test_the_kept_readings_are_the_phrase_dictionarys_and_a_start_needs_no_pypinyin(tmp_path: Path, monkeypatch):
    from intents import phonetic
    monkeypatch.setattr(phonetic, "_kept_readings", {})
    assert phonetic.read_readings(tmp_path) == {}
    got = phonetic.phrase_readings(["重新注册", "校对", "学位证"], tmp_path)
    assert got == {"重新注册": ("chong", "xin", "zhu", "ce"), "校对": ("jiao", "dui"), "学位证": ("xue", "wei", "zheng")}
    assert phonetic.read_readings(tmp_path) == got
    monkeypatch.setattr(phonetic, "_kept_readings", {})          # a new process: the table is read, pypinyin not imported
    monkeypatch.setitem(sys.modules, "pypinyin", None)
    assert phonetic.phrase_readings(["校对", "重新注册"], tmp_path) == {"校对": ("jiao", "dui"), "重新注册": got["重新注册"]}
    with pytest.raises(ImportError):
        phonetic.phrase_readings(["绿色"], tmp_path)             # a word the table lacks: looked up


def test_readings_of_another_phrase_dictionary_are_not_read_and_are_replaced(tmp_path: Path, monkeypatch):
    from intents import phonetic
    phonetic.write_readings(tmp_path, {"校对": ("jiao", "dui")})
    assert phonetic.read_readings(tmp_path) == {"校对": ("jiao", "dui")}
    # pypinyin upgraded: another file name, so the old table is not found
    monkeypatch.setattr(phonetic, "_readings_file", lambda d: d / "pypinyin-another.json")
    assert phonetic.read_readings(tmp_path) == {}
    phonetic.write_readings(tmp_path, {"重新": ("chong", "xin")})
    assert [p.name for p in tmp_path.glob("pypinyin-*.json")] == ["pypinyin-another.json"]


@pytest.mark.parametrize("damage", ["", "junk", '{"format": "pypinyin-phrase-readings 1"', '["校对"]',
                                    '{"format": "other", "words": {"校对": "jiao dui"}}',
                                    '{"format": "pypinyin-phrase-readings 1", "words": ["校对"]}'])
def test_damaged_readings_are_ignored(tmp_path: Path, damage):
    from intents import phonetic
    phonetic.write_readings(tmp_path, {"校对": ("jiao", "dui")})
    next(tmp_path.glob("pypinyin-*.json")).write_text(damage, encoding="utf-8")
    assert phonetic.read_readings(tmp_path) == {}


def test_readings_are_looked_up_where_the_directory_cannot_be_written(tmp_path: Path, monkeypatch):
    from intents import phonetic
    monkeypatch.setattr(phonetic, "_kept_readings", {})
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert phonetic.phrase_readings(["校对"], blocker / "cache") == {"校对": ("jiao", "dui")}
    assert phonetic.read_readings(blocker / "cache") == {}


def _longest_first(words: list[str], whole_latin: bool) -> re.Pattern[str]:
    """The alternation ``normalize.alternation`` stands for: every word, longest first."""
    alts = [rf"(?<![0-9a-z]){re.escape(w)}(?![0-9a-z])" if whole_latin and normalize._ASCII_WORD.match(w) else re.escape(w)
            for w in sorted(words, key=len, reverse=True)]
    return re.compile("|".join(alts) or r"(?!)")


@pytest.mark.parametrize("whole_latin", [False, True])
@pytest.mark.parametrize("seed", range(20))
def test_the_trie_regex_matches_what_the_longest_first_alternation_matches(seed: int, whole_latin: bool):
    rng = random.Random(seed)
    alphabet = "ab1 -.学信网号码"
    words = sorted({"".join(rng.choice(alphabet) for _ in range(rng.randint(1, 5))) for _ in range(rng.randint(0, 40))})
    trie, reference = re.compile(normalize.alternation(words, whole_latin)), _longest_first(words, whole_latin)
    for _ in range(200):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30)))
        assert [m.span() for m in trie.finditer(text)] == [m.span() for m in reference.finditer(text)], (words, text)


def test_the_lexicon_rewrites_the_faq_as_with_the_longest_first_alternation():
    faq = load_faq(settings.load())
    n = normalize.Normaliser(faq)
    texts = [normalize._KEEP.sub(" ", normalize.clean(q)) for e in faq.entries.values()
             for q in (e.question, *e.alternates, *e.answer.splitlines())]
    for table in (n._rewrite, n._typos):
        reference = _longest_first(list(table), whole_latin=True)
        pattern = normalize._alternation(table)
        assert all([m.span() for m in pattern.finditer(t)] == [m.span() for m in reference.finditer(t)] for t in texts)


def test_clean_drops_what_cannot_be_text_whether_or_not_a_message_is_printable():
    import unicodedata

    def reference(text: str) -> str:   # every character checked, as before the isprintable() shortcut
        text = text.encode("utf-8", "ignore").decode("utf-8", "ignore") if normalize._has_surrogate(text) else text
        text = unicodedata.normalize("NFKC", text[: normalize.MAX_CHARS * 2])
        text = "".join(ch if unicodedata.category(ch)[0] != "C" else " " for ch in text)
        return normalize.to_simplified(text.lower())[: normalize.MAX_CHARS]

    rng = random.Random(3)
    pool = "學信網账号 \t\n\u3000\u200b\ud800\ue000\u0085\u2028abcABC１２３！？\x00\x7f\u00ad\U0001F600\u0378"
    for _ in range(3000):
        text = "".join(rng.choice(pool) for _ in range(rng.randint(0, 20)))
        assert normalize.clean(text) == reference(text), repr(text)


@pytest.mark.parametrize("text, reads", [
    ("填完身份证那一栏，说这个号码已经有人用了", "证件号码"),       # the thing named last before it
    ("手机号填好了，身份证那步又说号码被占用", "证件号码"),
    ("身份证填好了，手机那步又说号码被占用", "手机号码"),
    ("号码被占用了怎么办", "手机号码"),                          # nothing named before it: its synonym's reading
])
def test_a_bare_number_is_the_thing_the_message_named_last_before_it(text, reads):
    n = normalize.Normaliser(load_faq(settings.load()))
    other = ({"证件号码", "手机号码"} - {reads}).pop()
    last_clause = n.clauses(text)[-1].norm.tokens          # clause by clause: the name stands in another clause
    assert reads in last_clause and other not in last_clause
    assert reads in n(text).tokens                         # and the whole message the same way


@pytest.mark.parametrize("text, reads", [("身份证号码已被注册", "证件号码"), ("我的手机号码已被注册", "手机号码")])
def test_a_number_right_after_its_naming_word_is_one_compound(text, reads):
    tokens = normalize.Normaliser(load_faq(settings.load()))(text).tokens
    assert tokens.count(reads) == 1 and ({"证件号码", "手机号码"} - {reads}).isdisjoint(tokens)


@pytest.mark.parametrize("text, reads", [
    ("征兵报名要我注册，我好像有学信网账号了，还要再注册吗", "再次注册"),     # for another platform: topic 1
    ("考研报名还得重新注册账号吗", "再次注册"),
    ("考研前想重新注册一个新账号，怎么弄", "重新注册"),                   # a phrase the referent keeps: starting over
    ("考研要用，旧号找不回来，我想重新注册", "重新注册"),                 # wanting to: starting over too
    ("账号找不回来了，想重新注册", "重新注册"),                           # no platform named before it
    ("今年考研，重新注册的时候手机号提示已被注册", "重新注册"),            # during or after starting over: topic 3 or 4
    ("考研重新注册以后学籍还在吗", "重新注册"),
    ("研招网报名时还要重新注册吗", "再次注册"),
    ("兵役登记不用重新注册吧", "再次注册"),                                # asked whether one must: only_after 用
    ("征兵网使唔使再註冊", "再次注册"),
    ("今年考研，重新注册步骤", "重新注册"),                                # said without asking whether one must
    ("考研报名需要登录，重新注册在哪个页面", "重新注册"),                  # the 要 of 需要 is in the clause before
])
def test_registering_again_for_a_platform_is_not_starting_over(text, reads):
    tokens = normalize.Normaliser(load_faq(settings.load()))(text).tokens
    assert reads in tokens and ({"再次注册", "重新注册"} - {reads}).isdisjoint(tokens)


def test_slips_are_fixed_before_anything_reads_the_message():
    n = normalize.Normaliser(load_faq(settings.load()))
    tokens = n("输入身份正后提示号码已存在").tokens          # a slip in the word a referent points back to
    assert "证件号码" in tokens and "手机号码" not in tokens
    tokens = n("支付宝账好被冻结了").tokens                  # a slip fixed completes a rewritten phrase (支付宝账号)
    assert "支付宝" in tokens and "账号" not in tokens
    assert [c.raw for c in n.clauses("邮向没填，还是失败")] == ["邮箱没填", "还是失败"]   # what the matcher reads raw
    assert [c.asks for c in n.clauses("注册不了，是不时号码有问题")] == [False, True]     # a slip in a question word
    assert "重新注册" in n("重新注注册一个").tokens and "账号" in n("账账号忘了").tokens   # a character typed twice
    assert n._undoubled("谢谢") == "谢谢" and n._undoubled("看看密码") == "看看密码"   # a pair that is a word stays


@pytest.mark.parametrize("text, plain", [
    ("忘记密码了[捂脸]怎么办", "忘记密码了怎么办"),          # WeChat's emoji as text codes
    ("[流泪][流泪]手机号已被注册", "手机号已被注册"),
    ("操作过于频繁[OK]", "操作过于频繁"),
    ("忘记密码了[Facepalm]", "忘记密码了"),                   # … in the English client
    ("/::)手机号已被注册/::<", "手机号已被注册"),              # its classic faces
    ("用户名忘了/:bye", "用户名忘了"),
    ("忘记密码怎么办555", "忘记密码怎么办"),                  # chat marks: crying, laughing, sighing, a bow
    ("emmm，手机号已被注册", "手机号已被注册"),
    ("用户名忘了orz", "用户名忘了"),
])
def test_emoji_codes_and_chat_marks_are_no_words(text, plain):
    n = normalize.Normaliser(load_faq(settings.load()))
    assert n(text).tokens == n(plain).tokens


@pytest.mark.parametrize("text, tokens", [
    ("我手机号是13812345678", ("手机号码",)),          # a phone number
    ("身份证11010119900101123x", ("身份证",)),         # an ID number
    ("用户名zhangsan2001", ("用户名",)),               # a user name with digits
    ("验证码是5678", ("验证码",)),                     # a code the page sent
    ("用163邮箱注册", ("用", "163", "邮箱", "注册")),  # a short number stays: a mail provider's name
    ("12306的账号", ("12306", "账号")),              # as does a number the lexicon names: another site
    ("我的邮箱是zhang.san@qq.com", ("邮箱",)),         # an e-mail address: its domain (qq) is no word asked
    ("忘记账号了 https://account.chsi.com.cn/account/password!retrive", ("忘记", "账号")),   # a link: its path neither
    ("@学信网客服 忘记密码", ("忘记", "密码")),          # a mention: the name of whoever is called
    ("@小助手\u2005忘记密码", ("忘记", "密码")),         # … as WeChat sends it, a narrow space after the name
    ("忘记密码 @小助手", ("忘记", "密码")),
    ("我@了客服", ("客服",)),                          # no space around it: text, not a mention
])
def test_a_value_the_user_gives_is_no_word(text, tokens):
    assert normalize.Normaliser(load_faq(settings.load()))(text).tokens == tokens


@pytest.mark.parametrize("text, plain", [
    ("昨天晚上10点，手机号已被注册", "手机号已被注册"),     # when it happened: a clock time, a time of day
    ("今天早上8点半提示操作过于频繁", "提示操作过于频繁"),
    ("21:30找回密码失败", "找回密码失败"),
    ("我是2020届毕业生", "我是毕业生"),                     # a class's year
])
def test_when_it_happened_is_no_word(text, plain):
    n = normalize.Normaliser(load_faq(settings.load()))
    assert n(text).tokens == n(plain).tokens


@pytest.mark.parametrize("text, kept", [
    ("等了2小时还是提示频繁", "2"),        # how long: the seed's own number
    ("途径3点击发送协助请求", "3"),        # a step clicked, no clock time
    ("最多3次", "3"),
])
def test_numbers_that_are_no_clock_time_stay(text, kept):
    assert kept in normalize.Normaliser(load_faq(settings.load()))(text).tokens


@pytest.mark.parametrize("text, given", [
    ("我叫张三", True), ("姓名：欧阳娜娜", True), ("我的名字是李四", True), ("我姓王", True),
    ("姓名填错了", False),          # the name field, no name
    ("我叫什么来着", False), ("我姓名写错了", False), ("我叫张三，忘记密码了", False),   # (a whole clause only)
])
def test_a_clause_giving_the_users_name(text, given):
    assert normalize.Normaliser.gives_name(text) is given


def test_a_bracketed_word_the_faq_knows_is_quoted_not_an_emoji():
    n = normalize.Normaliser(load_faq(settings.load()))
    assert {"找回", "密码"} <= set(n("点了[找回密码]没反应").tokens)      # a button's label, quoted
    assert n("[再见]").tokens == ("再见",)                                # small talk stays small talk


@pytest.mark.parametrize("text, known, asked", [
    ("用户名我记得，密码忘了", "用户名", "密码"),            # the thing, then its marker
    ("账号记得密码忘了怎么办", "账号", "密码"),               # no comma between them
    ("我没忘记用户名 只是密码忘了", "用户名", "密码"),         # the marker, then the thing
    ("密码倒是还记得，用户名想不起来了", "密码", "用户名"),     # words between the thing and its marker
    ("用戶名我記得，密碼唔記得", "用户名", "密码"),            # traditional; Cantonese 唔记得 forgets
    ("记得用户名 但是密码老是错 想重置一下", "用户名", "密码"), # sought (重置) rather than forgotten
    ("不是用户名忘了，是密码忘了", "用户名", "密码"),          # denied: not the one meant
    ("用户名没丢 密码丢了", "用户名", "密码"),
])
def test_a_thing_said_to_be_known_is_set_aside_when_another_is_lost(text, known, asked):
    n = normalize.Normaliser(load_faq(settings.load()))
    whole = n(text)
    assert known not in whole.full and asked in whole.full, whole
    assert normalize.merge([c.norm for c in n.clauses(text)]).tokens == whole.tokens   # clause by clause the same


@pytest.mark.parametrize("text, kept", [
    ("用户名和密码都记得，就是登不上", "用户名"),               # joined to another thing: both known
    ("账号密码都还记得，能直接登学职平台吗", "密码"),
    ("我不记得用户名了，密码也忘了", "用户名"),                # a negation before the marker
    ("唔记得用户名同密码", "用户名"),                          # Cantonese negation and 同 (and)
    ("找回密码一定要知道用户名吗", "用户名"),                  # a need before the marker
    ("用户名记得不太清了，密码也忘了", "用户名"),               # a doubt after it
    ("密码还记得。新职业网的证书国家认可吗", "密码"),            # nothing said to be lost
    ("我记得用户名是拼音加生日，密码也忘了，怎么把用户名找回来", "用户名"),  # the known thing asked again
    ("是不是用户名忘了 密码也要找回吗", "用户名"),               # 是不是 asks; it denies nothing
])
def test_a_thing_is_not_set_aside_unless_said_known_alone_while_another_is_lost(text, kept):
    assert kept in normalize.Normaliser(load_faq(settings.load()))(text).full


def test_an_ellipsis_ends_a_clause_but_a_dot_in_an_address_does_not():
    n = normalize.Normaliser(load_faq(settings.load()))
    assert [c.raw for c in n.clauses("离截止没几天了……现在咋整")] == ["离截止没几天了", "现在咋整"]
    assert len(n.clauses("打开www.chsi.com.cn注册")) == 1    # (a link too)
    assert len(n.clauses("我的邮箱是abc@163.com")) == 1     # (an e-mail address is read as a value given)


@pytest.mark.parametrize("text", ["我个手机号俾人注册咗", "帐号畀人盗用咗"])
def test_the_cantonese_passive_reads_as_by_someone(text):
    """俾人/畀人 is Cantonese for 被人 (by someone): the contrast words about what someone else did (被人改, 被人用了) see it."""
    assert "被人" in normalize.Normaliser(load_faq(settings.load())).rewrite(text)


@pytest.mark.parametrize("text, tokens", [
    ("好惊啲毕业证书资料会冇晒", ("学历", "消失")),     # 惊, 真系: afraid, really (Cantonese); 资料: the records
    ("真系好惊学籍资料冇咗", ("学籍", "消失")),
])
def test_a_cantonese_worry_about_the_records_reads_as_the_records_gone(text, tokens):
    assert normalize.Normaliser(load_faq(settings.load()))(text).tokens == tokens


def test_a_long_stretch_typed_without_punctuation_is_cut_where_a_clause_begins():
    n = normalize.Normaliser(load_faq(settings.load()))
    raws = [c.raw for c in n.clauses("我今天登学信档案输了好几次密码然后就弹出操作过于频繁操作被禁止有什么办法")]
    assert raws == ["我今天登学信档案输了好几次密码", "然后就弹出操作过于频繁操作被禁止", "有什么办法"]
    assert [c.asks for c in n.clauses("我今天登学信档案输了好几次密码然后就弹出操作过于频繁操作被禁止有什么办法")] == [False, False, True]
    # 通不过 (does not pass) is no 不过 (but); a short clause is left whole
    assert len(n.clauses("重新注册的时候手机号验证一直通不过换了好几个都不行")) == 1
    assert len(n.clauses("密码忘了然后怎么办")) == 1
    # and before 我 starting a clause again (……操作被禁止我急着……), not 我 as an object (告诉我, 帮我, 发我)
    assert [c.raw for c in n.clauses("学信档案一直显示操作过于频繁操作被禁止我急着下载学籍报告")] == \
        ["学信档案一直显示操作过于频繁操作被禁止", "我急着下载学籍报告"]
    assert len(n.clauses("能不能让客服直接告诉我那个旧账号是哪年注册的")) == 1
    # a clause that ends in punctuation keeps its break on its last piece
    pieces = n.clauses("我今天登学信档案输了好几次密码然后就弹出操作过于频繁操作被禁止。怎么办")
    assert [c.ends_sentence for c in pieces] == [False, True, False]
