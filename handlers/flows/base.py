"""The pieces a guided flow is made of: steps, outcomes, and the context a step sees.

A flow is one table ``{step name: Ask | Act}``. An ``Ask`` shows a prompt and handles
the user's answer; an ``Act`` runs at once (it calls the account API). Step functions
are small and typed; they return an outcome (``Goto``, ``Finish``, ``Switch``) or raise
``Invalid`` with a friendly Chinese message, and the engine does the rest (re-asking,
counting invalid tries, retry after ``ServiceUnavailable``, going back, expiry).
"""
from __future__ import annotations

import ast
import base64
import functools
import inspect
import re
import textwrap
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Mapping, Sequence, TypeVar, Union

from accounts.base import AccountAPI, Validation
from handlers.limits import Limits
from handlers.state import Login, LoginSlot
from handlers.types import Button, Image, Message, Reply

T = TypeVar("T")


class Invalid(Exception):
    """The answer does not fit the prompt; ``message`` says why, in Chinese. ``answers``: the message replies to what
    was said (验证码发到哪个手机了？, 我护照号忘了), not only to its format: a question typed is then not refused as one
    the FAQ does not answer."""

    def __init__(self, message: str, answers: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.answers = answers


# What a step sees: the user's Message after the engine cleaned it (control characters
# gone, whitespace trimmed, length checked). The same type: only the guarantee differs.
Input = Message


@dataclass(frozen=True)
class Goto:
    """Move to ``step`` (its prompt follows ``say``)."""

    step: str
    say: tuple[Reply, ...] = ()


@dataclass(frozen=True)
class Finish:
    """End the flow (its data is purged) with ``say``."""

    say: tuple[Reply, ...] = ()


@dataclass(frozen=True)
class Switch:
    """End this flow and start ``flow`` (with optional data carried over)."""

    flow: str
    say: tuple[Reply, ...] = ()
    data: Mapping[str, Any] = field(default_factory=dict)


Outcome = Union[Goto, Finish, Switch]
LOGIN_MARGIN = 30   # seconds a chat login is given up before the account service's token expires


@dataclass
class Ctx:
    """What a step may use: the flow's data, the session's chat login, the account API.
    (Not the session: a step changes nothing of it but the login.)"""

    flow: str
    data: dict[str, Any]          # this flow's own values (purged when the flow ends)
    accounts: AccountAPI
    idempotency_key: str          # the Idempotency-Key of this step attempt (the same on "重试")
    now: float
    limits: Limits | None = None  # abuse limits (None: unlimited, e.g. in unit tests of a step)
    client: str = ""              # the user's stable keyed identity (see Engine._ctx)
    login_slot: LoginSlot = field(default_factory=LoginSlot, repr=False)

    def say(self, text: str, *buttons: Button) -> Reply:
        """A reply of this flow."""
        return Reply(text=text, buttons=tuple(buttons), flow=self.flow)

    @property
    def token(self) -> str | None:
        """The chat login's token while it is valid."""
        login = self.login_slot.get()
        return login.token if login and login.valid(self.now) else None

    def login(self, token: str, expires_in: int) -> None:
        """Remember a chat login for this session (the token only, no personal data), ending
        LOGIN_MARGIN seconds before the service's so a call never starts with a token about to lapse."""
        self.login_slot.set(Login(token, self.now + max(0, expires_in - LOGIN_MARGIN)))

    def logout(self) -> None:
        """Forget the chat login (expired or refused)."""
        self.login_slot.set(None)


Handler = Callable[[Ctx, Input], Outcome]   # an Ask step's answer-handler


@dataclass(frozen=True)
class Ask:
    """A step that prompts and waits for the user's answer."""

    prompt: Callable[[Ctx], Reply]
    handle: Handler
    expects: Literal["text", "image"] = "text"   # "image": the prompt asks for a picture (Engine.expects_image)
    private: bool = False          # the answer is personal: hidden in the transcript
    loose: bool = False            # free text that can look like a sentence (a name): a message the
                                   # FAQ matcher answers is a question in between, not the data
    yes_no: bool = False           # a yes/no question: 算了/不用 answer it instead of ending the flow
    again: Callable[[Ctx], Reply] | None = None   # the prompt asked again (an answer refused, a question in
                                                  # between), when the first one is long: its choices without the story


@dataclass(frozen=True)
class Act:
    """A step that runs at once (usually an account API call)."""

    run: Callable[[Ctx], Outcome]


Step = Union[Ask, Act]


@dataclass(frozen=True)
class Flow:
    """A guided flow: its name, title, first step and the one table of steps."""

    name: str
    title: str
    first: str
    steps: Mapping[str, Step]
    # what to do when the account service refuses the login at a step (the step's name given):
    # e.g. common.relogin, log in again and resume there; None ends the flow ("登录已失效，请重新开始")
    relogin: Callable[[Ctx, str], Outcome] | None = None
    # a flow whose result goes out by SMS (the username): what to say when the user, after it finished, says
    # the SMS did not come ("" for a flow that sends none at its end)
    unreceived: str = ""
    # what the question its offer answered already says for it (我想绑定微信: the provider), its data when the offer
    # is taken; nothing personal (it is kept in the session until then)
    reads: Callable[[str], Mapping[str, str]] | None = None

    def __post_init__(self) -> None:
        """A mistyped step name fails here, at import, not in a user's chat: the first step and every
        step name written in a step's code (``step_targets``) must be in the table."""
        if self.first not in self.steps:
            raise ValueError(f"flow {self.name}: first step {self.first!r} missing")
        if self.relogin is not None and step_targets(self.relogin) - set(self.steps):
            raise ValueError(f"flow {self.name}: relogin goes to unknown step(s) "
                             f"{sorted(step_targets(self.relogin) - set(self.steps))}")
        for name, step in self.steps.items():
            for fn in ((step.prompt, step.handle) if isinstance(step, Ask) else (step.run,)):
                missing = step_targets(fn) - set(self.steps)
                if missing:
                    raise ValueError(f"flow {self.name}: step {name!r} goes to unknown step(s) {sorted(missing)}")


# ---- static check of step names -------------------------------------------------

def _source_tree(fn: Any) -> ast.AST | None:
    """The parsed source of a function (None for what has no readable source)."""
    try:
        return ast.parse(textwrap.dedent(inspect.getsource(fn)))
    except (OSError, TypeError, SyntaxError):
        return None


@functools.lru_cache(maxsize=None)
def _target_params(fn: Callable[..., Any], kind: str) -> tuple[str, ...]:
    """The parameters of ``fn`` that it passes straight to ``kind`` (``Goto``/``Switch``) as the target."""
    tree = _source_tree(fn)
    if tree is None or not isinstance(getattr(tree, "body", [None])[0], ast.FunctionDef):
        return ()
    params = {a.arg for a in tree.body[0].args.args + tree.body[0].args.kwonlyargs}
    found = {c.args[0].id for c in ast.walk(tree) if isinstance(c, ast.Call)
             and isinstance(c.func, ast.Name) and c.func.id == kind and c.args
             and isinstance(c.args[0], ast.Name) and c.args[0].id in params}
    for call in (n for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)):
        helper = fn.__globals__.get(call.func.id)  # a parameter handed on to a helper that goes there
        if helper is fn or not inspect.isfunction(helper) or not _target_params(helper, kind):
            continue
        try:
            bound = inspect.signature(helper).bind_partial(*call.args, **{k.arg: k.value for k in call.keywords
                                                                            if k.arg})
        except TypeError:
            continue
        found |= {v.id for name in _target_params(helper, kind)
                  if isinstance(v := bound.arguments.get(name), ast.Name) and v.id in params}
    return tuple(sorted(found))


def step_targets(fn: Callable[..., Any], kind: str = "Goto") -> set[str]:
    """The step names (``kind="Switch"``: flow names) a step function can go to that are written in its
    code: ``Goto("name")``, a closure's step-name variable, and literal names handed to a helper that
    passes them to ``Goto``. Names computed at run time are not seen."""
    fn = inspect.unwrap(fn)
    tree = _source_tree(fn)
    if tree is None:
        return set()
    cells = dict(zip(fn.__code__.co_freevars, (c.cell_contents for c in fn.__closure__ or ())))
    found: set[str] = set()
    for call in (n for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)):
        if call.func.id == kind and call.args:
            arg = call.args[0]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                found.add(arg.value)
            elif isinstance(arg, ast.Name) and isinstance(cells.get(arg.id), str):
                found.add(cells[arg.id])
            continue
        helper = fn.__globals__.get(call.func.id)
        if not inspect.isfunction(helper) or not _target_params(helper, kind):
            continue
        try:
            bound = inspect.signature(helper).bind_partial(*call.args, **{k.arg: k.value for k in call.keywords
                                                                            if k.arg})
        except TypeError:
            continue
        for name in _target_params(helper, kind):
            value = bound.arguments.get(name)
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                found.add(value.value)
    return found


# ---- helpers for step functions -----------------------------------------------

# Typed answers to the bot's yes/no questions, as people write them (compared after command_word:
# traditional characters folded to simplified, width, case and punctuation ignored).
YES = frozenset((
    "是", "是的", "是啊", "是呀", "对", "对的", "对啊", "对呀", "有", "有的", "能", "可以", "可以的", "可以啊",
    "好", "好的", "好啊", "好呀", "好滴", "好哒", "好嘞", "好么", "嗯", "嗯嗯", "嗯呐", "恩", "恩恩", "行", "行的",
    "行啊", "要", "需要", "要的", "确认", "确定", "确认继续", "同意", "没问题", "继续", "开始", "当然", "麻烦了",
    "好的谢谢", "好的麻烦了", "需要的", "ok", "okay", "okk", "yes", "y", "yep", "sure", "👌", "👍",
    "yesplease", "yeah", "yup", "ofcourse", "okthanks", "alright", "goahead", "confirm",   # English, as command_word has it
    "系", "系的", "得", "冇问题", "唔该", "好唔该",          # Cantonese (after traditional → simplified: 係 → 系)
))
NO = frozenset((
    "否", "不", "不是", "不对", "没有", "没", "不能", "不可以", "不行", "不用", "不用了", "不要", "不要了",
    "不需要", "不需要了", "不了", "算了", "算了吧", "暂时不用", "暂时不用了", "先不用", "先不用了", "先不了", "不必", "不同意", "拒绝",
    "no", "n", "nope", "不用谢谢", "不用了谢谢", "不了谢谢",
    "nothanks", "nah", "notnow", "icant", "idont", "idonthave", "idonthaveone", "idontknow",   # English, as command_word has it
    "唔使", "唔使了", "唔要", "唔好", "唔系", "唔需要", "唔用", "冇", "唔使唔该", "唔得", "唔可以", "唔行", "冇得",   # Cantonese
))
# a yes or no with a particle after it (好呀, 不用啦, 係啊, 唔使喇): the word without it
_PARTICLES = re.compile(r"(?<=.)(啊|呀|啦|喇|哦|喔|嘛|咯|哈|噢|嘞)+$")   # (not 吧: 好吧 is a shrug, no consent)
_PUNCT = re.compile(r"[^0-9a-z\u3400-\u9fff\U0001f44c\U0001f44d·]+")


def command_word(text: str) -> str:
    """Typed text folded for comparing with command and answer words (one rule for the engine
    and the flows): NFKC, lower case, traditional → simplified, punctuation and spaces dropped.
    A pure function, asked up to three times a turn: the last texts' words are kept — only texts
    with nothing personal data needs (no digit, e-mail or link, the matcher's rule), so no ID
    number, phone or code stays in memory after its turn."""
    if _MAYBE_PERSONAL.search(text):
        return _command_word(text)
    return _cached_command_word(text)


def _command_word(text: str) -> str:
    from intents.normalize import clean

    return _PUNCT.sub("", clean(text))


_cached_command_word = functools.lru_cache(maxsize=4096)(_command_word)
_MAYBE_PERSONAL = re.compile(r"\d|@|://")


def typed_yes_no(text: str) -> bool | None:
    """True for a typed yes, False for a typed no, None for anything else."""
    word = command_word(text)
    for w in (word, _PARTICLES.sub("", word)):
        if w in YES or w in NO:
            return w in YES
    return None


def clauses_of(text: str) -> list[str]:
    """The text cut at punctuation and spaces (好的，帮我找回 → 好的, 帮我找回)."""
    return [c for c in re.split(r"[\W_]+", text) if c]


def asks(text: str) -> bool:
    """The text is a question (is_question over the cleaned text)."""
    from intents.normalize import clean, is_question

    return is_question(clean(text))


# besides its yes or no, an answer to an offer may only ask for it (好的，帮我找回; 麻烦你了) or say the user will
# do it themselves (不用，我自己来; 好的，我先自己试试): what is left after these words says something new
_ASKS_FOR_IT = re.compile(r"请|麻烦|唔该|帮忙|帮|带我|教我|开始|来吧|一步步|一步一步|弄|办|处理|操作|揾返|一下|吧|呗|谢谢|谢|你|您|我|了|那|就|现在")
_ASKED = re.compile(r"请|麻烦|帮|开始|来吧")
_ON_MY_OWN = re.compile(r"自己|先|试试|试|看看|去|来|会|找|搞")


def takes_offer(text: str, title: str) -> bool | None:
    """The answer typed to an offer of the flow ``title`` (需要我一步步帮您找回密码吗？): a yes or no alone, or with
    words that only ask for the flow (好的，帮我找回; 帮我找回吧) or say the user will do it themselves (不用，我自己来;
    好的，我自己试试: a no); None for anything else (好的，那手机号被注册怎么办: something new)."""
    answer = typed_yes_no(text)
    if answer is not None or asks(text):
        return answer
    clauses = clauses_of(text)
    first = typed_yes_no(clauses[0]) if clauses else None
    rest = command_word("".join(clauses[1:] if first is not None else clauses))
    if first is None:   # a yes or no run on into the rest (好的帮我弄一下, 不用我自己来)
        lead = next((rest[:k] for k in range(len(rest) - 1, 0, -1) if rest[:k] in YES or rest[:k] in NO), "")
        first, rest = (lead in YES, rest[len(lead):]) if lead else (None, rest)
    rest = "".join(ch for ch in rest if ch not in title)   # the flow's own words (找回, 绑 of 绑定微信或支付宝)
    left = _ASKS_FOR_IT.sub("", rest)
    if "自己" in rest:
        return False if not _ON_MY_OWN.sub("", left) else None
    if left:
        return None
    return first if first is not None else True if _ASKED.search(rest) else None


# the words around an option typed as a choice: 我选微信, 就用支付宝吧, 在校生吧, 我用的是回乡证
_CHOOSING = re.compile(r"^(?:我|那)?(?:就)?(?:要|想)?(?:选择|选|用|绑定|绑)?(?:的是|是)?|(?:吧|啊|呀|了|的|哈)+$")


NEGATION = re.compile(r"[不没无非别冇]|唔(?!该)")   # an option said with one is not picked (不用微信, 没有APP, 唔用微信)


_ORDINAL = re.compile(r"(?:我)?(?:要|想)?(?:选|点|选择)?(?:第([1-9一二三四五六七八九])(?:个|种|项|条|行|点)?|(最后)(?:一个|一项|一条|那个))"
                      r"(?:吧|啊|呀|的|那个|问题|选项)?")
_NUMERALS = "一二三四五六七八九"


def ordinal(word: str) -> int | None:
    """The index of the option an ordinal typed picks (第二个, 选第3个: 1, 2; 最后一个: -1); None for anything else
    (a bare 2 is no ordinal: in numbered-text channels it is already button 2)."""
    m = _ORDINAL.fullmatch(word)
    if m is None:
        return None
    if m.group(2):
        return -1
    n = m.group(1)
    return int(n) - 1 if n.isdigit() else _NUMERALS.index(n)


def at_place(word: str, items: Sequence[T]) -> T | None:
    """The item in the place an ordinal typed names (第二个: the second); None for no ordinal or no such place."""
    i = ordinal(word)
    return items[i] if i is not None and -len(items) <= i < len(items) else None


def choose(inp: Input, options: Mapping[str, str], message: str, *, yes: str | None = None, no: str | None = None,
           aliases: Mapping[str, str] | None = None, ordered: bool = False) -> str:
    """The payload picked by a button, its label typed, its payload typed, one of ``aliases``
    (word → payload, the everyday names people type), its place (第二个) where the options are the buttons
    as shown (``ordered``), a part (2+ characters) of exactly one label or exactly one whole label inside
    the text (not negated); a typed yes/no picks ``yes``/``no`` when given; else Invalid."""
    if inp.kind == "button" and inp.payload in options:
        return inp.payload
    typed = command_word(inp.text or inp.payload)
    said = {typed, _CHOOSING.sub("", typed)} - {""}   # the option itself, also out of 我选微信 / 微信吧
    for payload, label in options.items():
        if said & {command_word(label), command_word(payload)}:
            return payload
    for word, payload in (aliases or {}).items():
        if command_word(word) in said and payload in options:
            return payload
    placed = at_place(typed, list(options)) if ordered else None   # 第二个: the option in that place
    if placed is not None:
        return placed
    partial = [payload for payload, label in options.items() if len(typed) >= 2 and typed in command_word(label)]
    if len(partial) == 1:
        return partial[0]
    # one whole label inside the text: 中国护照, 用微信绑定吧 (not in a question about it: 微信绑定后怎么登录？)
    labels = {payload: command_word(label) for payload, label in options.items()}
    named = [payload for payload, label in labels.items() if len(label) >= 2 and label in typed]
    if len(named) == 1 and not NEGATION.search(typed) and not (inp.kind == "text" and asks(inp.text)):
        return named[0]
    answer = typed_yes_no(inp.text) if inp.kind == "text" else None
    if answer is True and yes is not None:
        return yes
    if answer is False and no is not None:
        return no
    raise Invalid(message)


def yes_no(inp: Input, message: str = "请回答“是”或“否”，也可以直接点选下方按钮。") -> bool:
    """True for a yes (button, typed, or a short answer leaning to it: 可以拍), False for a no (手机装不了APP); else Invalid."""
    if inp.kind == "button" and inp.payload in ("yes", "no"):
        return inp.payload == "yes"
    answer = typed_yes_no(inp.text)
    if answer is None:
        answer = leaning(inp.text)
    if answer is None:
        raise Invalid(message)
    return answer


# a short answer to a yes/no question in the user's own words: any of these says no, else any of those yes
_SAYS_NO = re.compile(r"不|没|无法|忘|冇|唔(?!该)")   # (唔可以, 冇APP: Cantonese; 唔该 is thanks)
_SAYS_YES = re.compile(r"能|可以|会|有|行|好|知道|记得|方便|是")
_FIXED = re.compile(r"没问题|没事|不错")   # phrases whose 没/不 is no no


def leaning(text: str) -> bool | None:
    """The yes or no a short answer (up to 20 characters, no question) leans to; None when it says neither."""
    word = _FIXED.sub("好", command_word(text))
    if not word or len(word) > 20 or asks(text):
        return None
    return False if _SAYS_NO.search(word) else True if _SAYS_YES.search(word) else None


YES_NO = (Button("是", "yes"), Button("否", "no"))


def said_value(text: str, names: str) -> str:
    """The value of a field said in a sentence (我的学号是1700012345。; 用户名：zhangsan01; 我嘅用戶名係…): what follows the
    field's name (one of ``names``, a regex alternation, in simplified characters) and 是/为/：, without the full stop;
    else the text."""
    from intents.normalize import to_simplified

    said = re.fullmatch(rf"\s*(?:我的|我嘅|我|他的|她的|佢嘅|佢的|我同学的|同学的)?(?:{names})\s*(?:是|系|为|叫)?\s*[:：]?\s*"
                        r"(.+?)\s*[。.!！]?\s*", to_simplified(text), re.IGNORECASE)
    return said.group(1) if said else text


def field_value(check: Callable[..., str], *args: object) -> str:
    """Run an accounts.validation check, turning its refusal into Invalid."""
    try:
        return check(*args)
    except Validation as e:
        raise Invalid(e.message or "格式不正确，请核对后重新输入。") from None


def text_of(inp: Input) -> str:
    """The typed text, or Invalid when the step got something else."""
    if inp.kind == "image":
        raise Invalid("这一步需要输入文字，请直接输入内容。")
    return inp.text if inp.kind == "text" else inp.payload


def pack_image(image: Image) -> dict[str, str]:
    """An uploaded image as JSON-safe flow data."""
    return {"data": base64.b64encode(image.data).decode("ascii"), "filename": image.filename,
            "content_type": image.content_type}


def unpack_image(packed: Mapping[str, str]) -> Image:
    """The image back from flow data."""
    return Image(base64.b64decode(packed["data"]), packed["filename"], packed["content_type"])


def plain_wait(seconds: int | None) -> str:
    """A wait in plain words: 约 2 小时 / 约 15 分钟 / 稍后."""
    if not seconds or seconds <= 0:
        return "稍后"
    if seconds >= 3600:
        hours = -(-seconds // 3600) if seconds % 3600 > 600 else seconds // 3600
        return f"约 {hours} 小时后"
    if seconds >= 60:
        return f"约 {-(-seconds // 60)} 分钟后"
    return "约 1 分钟后"
