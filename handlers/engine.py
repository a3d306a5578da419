"""The conversation engine: one message in, the bot's replies out, for any channel.

``Engine.handle(session_id, message)`` loads the session under its lock, cleans the
input, then either answers from the FAQ (with follow-up and feedback buttons, a
clarifying question, or an honest "cannot answer"), hands off to a person, or moves
the active guided flow (``handlers.flows``) one step. It never raises: every problem
becomes a Chinese reply. Personal data lives only in the active flow's data and is
dropped when the flow ends or expires; transcripts and logs are masked.

What a session keeps is ``handlers.state.SessionState`` (typed, versioned, saved as JSON); a
session another version saved that cannot be read, or whose flow or step is gone, starts afresh
with a restart message. Flow steps never see it: they get ``flows.base.Ctx``.

Hand-off (``handlers.handoff_service``): 转人工 queues the conversation with its masked
transcript and the reason; from then on the user's messages go to the person (the bot
only says where they stand in the queue) until the agent closes or hands back, or the
user types 取消转人工 / 结束. The session keeps only the hand-off's id.
"""
from __future__ import annotations

import contextlib
import functools
import logging
import re
import secrets
import threading
import time
import unicodedata
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Callable, Mapping, Protocol

from accounts.base import AccountAPI, AccountError, ServiceUnavailable, TooFrequent, Unauthorized
from faq.model import FAQ, Entry, NotCovered
from intents.normalize import clean, is_question
from intents.types import SMALLTALK, MatchResult
from settings import AccountsConfig, HandoffConfig, SessionsConfig, resolve_path

from .flows import COMMANDS, FLOWS, Offer, offer_for
from .flows.base import (NO, Act, Ask, Ctx, Finish, Goto, Input, Invalid, Outcome, Step, Switch, at_place,
                         command_word, plain_wait, takes_offer, typed_yes_no)
from .flows.common import PHONE_GONE, phone_gone, wants_resend
from .flows.id_duplicate import START as START_DUPLICATE
from .handoff_service import LEAVE, HandoffService, gives_up, memory_service
from .handoffs import HandoffError, NewHandoff, transcript_lines
from .insights import MAX_TEXT, TurnEvent
from .privacy import mask_secrets
from .labels import remember_topics
from .images import ImageRejected, sanitize
from .limits import Limits, MemoryLimiter
from .records import FeedbackRecords
from .sessions import LockTimeout, SessionStore, StoreBusy, StoreError, storage_key
from .state import FlowState, Incompatible, LoginSlot, Reach, SessionState
from .types import Button, Message, Replies, Reply, md, plain

if TYPE_CHECKING:
    from intents.matcher import MatcherConfig

log = logging.getLogger(__name__)

HUMAN = "human_agent"
# Commands that work at every prompt (compared after flows.base.command_word).
CANCEL_WORDS = ("取消", "退出", "算了", "不办了", "结束", "不弄了", "cancel", "quit", "exit", "stop")
BACK_WORDS = ("返回", "上一步", "回上一步", "回到上一步", "返回上一步", "退回上一步", "后退", "back", "goback", "previousstep")
# not wanting to go on, in the user's words (算了不找了, 我不想继续了, 先不弄了): as 取消
_GIVES_UP = re.compile(r"^(算了|那)?(我)?(先|就|暂时)?(不想|不要|不用|不|别)(再)?(继续|找|弄|办|做|搞|填|处理)(下去)?(了)?(吧|啦|呀)?$")
# "不对，我输错了" in a flow: the answer refused just now is typed again, else the last one given (as 返回)
_TYPED_WRONG = re.compile(r"^(不对|不是|错了|哎呀|哎|啊|呀|等等|等一下|抱歉|不好意思|sorry)*(我|刚才|刚刚|上面|前面|上一个|上个|那个)*的?"
                          r"((输|输入|填|打|写|选|点|按)错|弄错|搞错|错)(了|啦)?(要改|想改|改一下|重新输|重新输入|重新填|重新选|重来)?(一下)?"
                          r"(了|啦|呀)?$")   # (错了 alone: what was typed last)
# "不是李四，是李斯" / "名字写错了，应该是李斯" / "改成李斯" in a flow: an answer given (or refused) replaced by the one
# typed after it (old: what was given, if said). No bare "应该是李斯": that may answer the prompt itself.
_CORRECTION = re.compile(
    r"^(?:不是(?P<old>[^，,。\s]{1,40}?)[，,。\s]*而?(?:应该是|应是|是)"
    r"|(?:不对|错了|(?:我|刚才|刚刚|上面|前面|上一个|上个|那个|的|姓名|名字|用户名|学号|证件类型|证件号码?|身份证号码?|手机号码?)*"
    r"(?:输入?|填|打|写|选)错了?)[，,。!！\s]*(?:应该是|应是|是|改成|改为|更正为)"
    r"|改成|改为|更正为|更正[:：])"
    r"[\s:：]*(?P<new>[^\s，,。!！?？][^，,。!！?？]{0,59}?)[\s。.!！吧啊呀哈]*$")
# where a message lists its questions apart: 1. … 2. …, ①, 另外, 还有一个问题, 顺便问一下 (after a break)
_ITEMS = re.compile(r"(?:^|(?<=[\s，,。；;！!？?：:]))(?:[1-9１-９][.．、)）]|[(（][1-9][)）]|[①②③④⑤]"
                    r"|另外|另一个问题|还有一个问题|还有个问题|还有一个|顺便问一?下|其次|第[二三四]个?问题?)")
MAX_ITEMS = 4
_POINTING = frozenset({"我", "你", "他", "她", "它", "这", "那", "这个", "那个"})   # (不是我，是王五: who, not what was typed)
# asking the bot to wait at a prompt (等一下, 我找一下): waited for, never taken as the answer (等下 is no name)
_HOLD_ON = re.compile(r"(请|你)?(稍等|稍候|等等|等下|等一下|等一会|等一会儿|等会|等会儿|稍等一下|稍等片刻|我找一下|我找找|我翻一下|我查一下|"
                      r"我去找一下|我去拿一下|我去查一下|马上|等阵|等一阵|等我一阵|等等我)(先)?(哈|啊|呀|哦|喔|噢)?"   # (等陣先: Cantonese)
                      r"|(please)?(wait|waitamoment|waitaminute|waitasec|holdon|onemoment|justamoment|justasec|justaminute)(please)?")
# asking how long the wait for a person is, with nothing else (还要等多久, 多久能轮到我): the queue's status answers it
_ASKS_WAIT = re.compile(r"(请问)?(我)?(还|还要|要|得|大概|大约|到底)*(再)?(等|排|排队)?(多久|多长时间|几分钟|多少分钟|多少时间|几耐)"
                        r"(才|能|才能|会)*(轮到我|有人|回复|回我|接入|处理)?(啊|呀|呢|吗|了|啦|哦)*")
# asking what the prompt wants (怎么填, 要填啥, 这是什么意思): the prompt again with a hint, not an FAQ answer that
# shares 填 with it, nor (at a name prompt) a name
_ABOUT_PROMPT = re.compile(r"(请问)?(这里|这个|这|这一步|这一项|这一栏|上面)?(要|该|应该|需要|得)?"
                           r"(((怎么|咋|如何|点样|点)(填|写|输入|输|选|回答)|(填|写|输入|输|选)(什么|啥|咩|哪个|哪些|哪一个|哪一项))|"
                           r"(是)?(什么|啥|咩)意思|(指的是|是指)(什么|啥))(啊|呀|呢|吗|哦|嘞)*")   # (點填, 填咩: Cantonese)
# saying the prompt or answer just shown was not understood, and nothing else (看不懂, 没明白你的意思, 睇唔明)
_NOT_UNDERSTOOD = re.compile(r"(我)?(还是|完全|真的|实在|有点|有些|不太|没太|没怎么)?(看不懂|没看懂|看不明白|没看明白|不懂|不明白|没明白|"
                             r"搞不懂|没搞懂|弄不懂|听不懂|不理解|不太懂|不太明白|睇唔明|睇唔明白|唔明|唔明白|唔系好明|唔太明|即系点|即系咩意思)"
                             r"(你说的|你的意思|你说的意思|什么意思|啥意思|这个|这些|了|啊|呀|呢|诶|欸|哦|耶|喔)*")
# asking whether there is more, and nothing else (还有呢, 没了吗): after an answer, the FAQ says no more than it
# (没了 / 就这些 alone close the conversation: only with 吗, 呢 … after them do they ask for more)
_ANY_MORE = re.compile(r"(那)?(还有|还有别的|还有其他|还有其它|还有别的办法|还有其他办法|仲有|仲有其他)"
                       r"(吗|呢|嘛|么|啊|了|不|没有|冇|咩|呀)*"   # (仲有冇: Cantonese)
                       r"|(那)?(没了|没别的了|就这些|就这样|就这么多|就咁多)(吗|么|嘛|呢|咩)(啊|呀)*")
# asking what to do now, and nothing else (那怎么办, 然后呢): after a question the FAQ does not answer, a person's turn
_WHAT_NOW = re.compile(r"(那|那我|那我们|所以)?(该|要|应该|到底)?(怎么办|咋办|咋整|怎么弄|怎么搞|怎么处理|点算|点办|如何是好)"
                       r"(才好)?(呢|啊|呀|嘞|哇)?|(那|那么)?然后呢|(那)?还有(什么|别的|其他)办法(吗|呢)?")
# putting the step off (明天再弄可以吗, 我晚点再填): told how long what was typed is kept
_LATER = re.compile(r"(明天|明早|今晚|晚上|晚点|晚些|回头|改天|下次|过会儿?|等会儿?|稍后|一会儿?|待会儿?|回家|找到|"
                    r"听日|第日|迟啲|迟些|阵间|返屋企)(再|后再|了再)(弄|办|填|来|做|搞|整|处理|继续|输|试)")   # (聽日再搞: Cantonese)
# asking to skip a prompt or not to answer it (跳过, 随便, 不想说): no step can be skipped (跳过 is no name either)
SKIP_WORDS = frozenset(("跳过", "跳过这一步", "先跳过", "可以跳过", "下一步", "下一个", "随便", "随便吧", "随便填", "不想说",
                        "不想告诉你", "不告诉你", "保密", "skip", "next"))
RETRY_WORDS = ("重试", "再试一次", "retry")
RESTART_WORDS = ("重新开始", "从头开始", "重来", "重新来", "重头开始", "restart")
NO_HANDOFF_WORDS = ("取消转人工", "不转人工", "不用转人工", "不要转人工", "取消人工", "不要人工", "不用人工")
HANDOFF = Button("转人工客服", "handoff")
NONE_OF_THEM = Button("都不是，转人工客服", "handoff")   # a clarification's last choice
# that choice typed (都不是, 以上都不是, 没有我要问的): pressed
_NONE_OF_THEM = re.compile(r"(以上|上面)?(都不是|都不对|全都不是|全不是|都没有|一个都不是)(我要问的|我想问的)?(的)?(啊|呀|呢|哦|诶)?|"
                           r"没有(我要问的|我想问的|我要的|我想要的)(问题)?(啊|呀|呢|哦)?")
RETRY = Button("重试", "cmd:retry")
CANCEL = Button("取消", "cmd:cancel")
LEAVE_HANDOFF = Button("取消转人工", LEAVE)
HANDOFF_WORDS = ("转人工", "人工", "人工客服", "转人工客服", "找人工", "真人", "人工服务")
LEAVE_WORDS = ("取消转人工", "不转人工", "退出人工", "取消人工", "回到机器人", "取消", "结束", "结束对话", "退出",
               "cancel", "quit", "exit")
HIDDEN = "（个人信息，已隐藏）"
FEELS = "非常抱歉让您着急了。"   # a message only saying how the user feels (烦死了, 什么破网站) is answered first with this
# what a session saved by another version says when it cannot be continued (handlers.state)
STATE_DROPPED = "系统已更新，您之前正在办理的事项需要重新开始，之前填写的信息已清除。"
STATE_RESET = "系统已更新，之前的对话进度已清除，如需办理请重新开始。"
STORE_DOWN = "抱歉，系统暂时无法保存对话进度，请稍后再试。"
STORE_DOWN_NOTE = "（系统暂时无法保存对话进度：此前的对话记录无法读取，用户在此期间转人工）"
# "密码改好了，谢谢": a closing statement after a flow (what was done, then thanks), not a question
_DONE = re.compile(r"^(好了|好的|好|行|ok|嗯|嗯嗯)?(密码|用户名|账号|帐号|验证|核验|绑定|登录|问题|微信|支付宝|二维码|都|已经|我)*"
                   r"(改好了|重置好了|设置好了|找回了|找到了|弄好了|搞定了|解决了|成功了|完成了|可以了|好了|没问题了|"
                   r"登上了|登录上了|登进去了|收到了|通过了|绑好了|绑上了|扫好了|扫完了|扫过了|明白了|知道了|懂了)"
                   r"(了|啦|呀|哈)?(谢谢|谢谢你|谢谢您|感谢|多谢|谢啦|谢了|thx|thanks|thankyou)*$")
_THANKS = re.compile(r"谢|感谢|thx|thank")
# the words around a typed command asked for (帮我查一下审核进度, 看看我的收件箱吧)
_ASKING_FOR = re.compile(r"^(请|麻烦)?(你)?(帮我|帮忙|我想|我要|想|要)?(查一下|查下|查查|查询一下|查看|看一下|看下|看看|打开)?(我的)?|(吧|呀|啊)$")
# going to try what was said (好的我试试, 我先去看看): after a yes or alone
_WILL_TRY = re.compile(r"(我)?(先|再|就)?(去)?(试试看|试试|试一下|看看|看一下|操作一下)(吧|看)?$")
# a resigned or bare acknowledgement (好吧, 那行吧, 哦哦): no yes to anything, no question, no thanks
_NODS = re.compile(r"(那|额|呃|嗯)?(好吧|好叭|行吧|也行|那好|那行|好|行|哦+|噢+|喔+|嗯哼)(吧|了|啦)?")
_SAYS_NOTHING = re.compile(r"[\d啊呀哦噢喔嗯呃额唉哎诶欸哈呵嘿喂么吗呢吧了的]*")   # (after command_word: no punctuation, no emoji)
MAX_HOPS = 25
# A session with a flow is kept this long past the flow's idle expiry: a user coming back shortly after
# still hears that the flow expired and its data is gone (by then dropped), instead of a bot that forgot.
FLOW_TTL_MARGIN = 15 * 60
TRANSCRIPT_CHARS = 200   # a transcript line (what a person sees after a hand-off) is cut here
SAID_CHARS = 2000        # the user's masked message handed to a person during a hand-off
LABELS_KEPT = 40         # button labels remembered, so a pressed button reads as its label
VOTES_OPEN = 20          # answers that may still get their one 有帮助/没帮助 vote


class Matcher(Protocol):
    """What the engine uses of ``intents.matcher.Matcher``: its decision on a text, its FAQ and thresholds."""

    faq: FAQ
    config: MatcherConfig   # suggest_threshold: which near misses "cannot answer" lists

    def match(self, text: str) -> MatchResult: ...

    def follow_up(self, text: str, after: str) -> MatchResult: ...   # ``text`` read after entry ``after``'s answer


# the feedback buttons' labels and what people type instead of tapping them (after command folding)
HELPFUL_WORDS = frozenset({"有帮助", "有用", "有帮到"})
NOT_HELPFUL_WORDS = frozenset({"没帮助", "没有帮助", "没用", "没有用", "无帮助", "没帮到",
                               # … and saying so in other words, right after the answer
                               "还是不行", "没解决", "还是没解决", "没有解决", "不管用", "不好使", "没帮上", "你说错了", "答错了",
                               "说错了", "错了", "不对", "不是这样的", "答非所问", "不是这个", "不是我要问的",
                               "冇用", "唔啱", "唔对", "唔得", "仲系唔得", "讲错咗", "唔系呢个"})   # (Cantonese)


class _MustWait(BaseException):
    """A quick turn (``Engine.try_handle``) reached something it must not wait on. A BaseException:
    it crosses the turn's catch-alls (which are for bugs) up to ``try_handle``."""


class Engine:
    """Channel-agnostic conversation engine (synchronous: ``handle`` runs off the event loop;
    ``try_handle`` may run on it)."""

    def __init__(self, faq: FAQ, matcher: Matcher, accounts: AccountAPI, store: SessionStore,
                 sessions: SessionsConfig | None = None, handoff: HandoffConfig | None = None,
                 records: FeedbackRecords | None = None, clock: Callable[[], float] = time.time,
                 handoffs: HandoffService | None = None, insights: Any = None,
                 limits: Limits | None = None) -> None:
        self.use(faq, matcher)
        self._pinned = threading.local()
        self.accounts = accounts
        self.store = store
        self.sessions = sessions or SessionsConfig()
        self.handoff = handoff or HandoffConfig()
        self.records = records or FeedbackRecords(self.sessions.data_dir)
        self.clock = clock
        self._handoffs = handoffs or memory_service(clock)
        self.insights = insights  # handlers.insights.EventWriter (``record(event)``, never blocks) or None
        self.limits = limits or Limits(MemoryLimiter(), secrets.token_bytes(32))

    # ---- the FAQ and matcher: swapped whole by a live reload, fixed for the length of a turn ----------

    @property
    def faq(self) -> FAQ:
        return (getattr(self._pinned, "knowledge", None) or self._knowledge)[0]

    @property
    def matcher(self) -> Matcher:
        return (getattr(self._pinned, "knowledge", None) or self._knowledge)[1]

    def use(self, faq: FAQ, matcher: Matcher) -> None:
        """Serve a new FAQ from the next turn on (one assignment: a turn sees the old pair or the new)."""
        remember_topics({t.intent: t.title for t in faq.topics})
        self._knowledge = (faq, matcher)

    @property
    def handoffs(self) -> HandoffService:
        """The hand-off service (a database: a quick turn stops here, see ``try_handle``)."""
        self._may_wait()
        return self._handoffs

    @handoffs.setter
    def handoffs(self, service: HandoffService) -> None:
        self._handoffs = service

    # ---- the entry points ------------------------------------------------------------------

    def try_handle(self, session_id: str, message: Message, busy: bool = False) -> "list[Reply] | BusySave | None":
        """``handle``, for a caller that must not wait (the web server's event loop): the replies when
        the turn needs nothing slower than the session store (an FAQ answer, a command outside a
        flow), else None, with nothing of the attempt kept (no state saved, no turn event),
        as soon as it would wait on the account API, the hand-off store, the feedback records or
        another message's lock (a try-lock: ``store.lock(sid, timeout=0)``), or the session store fails
        (SQLite: also when another process is writing, its no-wait connection says so at once); nor
        for an image (decoding it takes a while) or a store that is not ``quick``. Then run ``handle``
        where waiting is fine (a worker thread).
        A turn handed to a thread costs about as much CPU again as the turn (benchmarks/bench_web.py).
        ``busy=True``, for a caller that can come back later (an async one): a save that found the
        database busy with another writer's short transaction (``StoreBusy``) is a ``BusySave`` instead of
        None — the turn done, its lock still held, its save to try again soon (1 in 20 turns of two SQLite
        workers at c=32, each of which was done over again in a thread)."""
        if message.kind == "image" or not getattr(self.store, "quick", False):
            return None
        self._pinned.quick = True
        self._pinned.defer = busy
        try:
            return self.handle(session_id, message)
        except _MustWait:
            return None
        finally:
            self._pinned.quick = self._pinned.defer = False

    def _may_wait(self) -> None:
        """Stop a quick turn (``try_handle``) before it waits on something slow: an attempt, not a
        turn, so no turn event either."""
        if getattr(self._pinned, "quick", False):
            trace = getattr(self._pinned, "trace", None)
            if trace is not None:
                trace.clear()
            raise _MustWait()

    def handle(self, session_id: str, message: Message) -> list[Reply]:
        """The replies to one message; any session id works (unknown → a new session)."""
        tag = _tag(session_id)
        self._pinned.knowledge = self._knowledge
        self._pinned.trace = trace = {}
        started = time.perf_counter()
        quick = getattr(self._pinned, "quick", False)
        pending: BusySave | None = None
        try:
            lock = self.store.lock(session_id, timeout=0.0) if quick else self.store.lock(session_id)
            with contextlib.ExitStack() as held:
                held.enter_context(lock)
                state, notice = self._load(session_id)
                replies = Replies(self._turn(session_id, state, message, notice))
                replies.flow = state.flow.name if state.flow else None
                data, ttl = state.to_json(), self._ttl(state)
                try:
                    self.store.save(session_id, data, ttl)
                except StoreBusy:
                    if not (quick and getattr(self._pinned, "defer", False)):
                        raise
                    # the lock stays held (popped off the stack) until the BusySave is closed
                    pending = BusySave(self, session_id, message, data, ttl, replies, held.pop_all(), trace, started)
                    return pending  # type: ignore[return-value]
            return replies
        except LockTimeout:
            if quick:   # another message of this session holds the lock: wait for it in a thread
                self._may_wait()
            log.warning("session %s busy", tag)
            return [Reply("上一条消息还在处理中，请稍候再发送。")]
        except StoreError as e:
            if quick:   # said once, by the attempt where waiting is fine (a Redis outage is not a fast path)
                self._may_wait()
            log.error("session %s: store failed: %s", tag, e)
            return self._store_down(session_id, message)
        except Exception as e:  # a bug outside a flow step's guard (e.g. flow data JSON cannot hold): nothing saved
            log.error("session %s: turn failed: %s", tag, e.__class__.__name__, exc_info=log.isEnabledFor(logging.DEBUG))
            return [Reply("抱歉，系统出了点问题，这条消息没有处理。请稍后再试，或转人工客服。", buttons=(HANDOFF,))]
        finally:
            self._pinned.knowledge = self._pinned.trace = None
            if pending is None and self.insights is not None and "text" in trace:
                self._emit(session_id, trace, (time.perf_counter() - started) * 1000)

    def _store_down(self, session_id: str, message: Message) -> list[Reply]:
        """The session store is down: say so. The hand-off store may still be up, so a request for a
        person is queued without the session (staff are told they cannot see the conversation), and
        the messages of a conversation already queued still reach the person; if that fails too, the
        user is told that as well (no other contact is invented: the seed gives none)."""
        down = Reply(STORE_DOWN, buttons=(HANDOFF,))
        inp, problem = self._clean(message)
        wants = (inp.kind == "button" and inp.payload == "handoff") or \
                (inp.kind == "text" and command_word(inp.text) in HANDOFF_WORDS)
        if problem is not None:
            return [down]
        try:
            current = self._handoff_of(session_id)
            state = SessionState(handoff=current.id if current is not None else None)
            said = self._remember_user(state, inp, message)
            replies = self._with_person(state, inp, said) if current is not None else None
            if replies is not None or not wants:
                return replies if replies is not None else [down]
            h = self.handoffs.open(NewHandoff(
                session_key=storage_key(session_id), channel=str(message.channel or "web"),
                address=str(message.address or session_id), reason="user_request",
                transcript=(("助手", STORE_DOWN_NOTE), ("用户", said))))
        except HandoffError as e:
            log.error("session %s: hand-off without the session store failed: %s", storage_key(session_id)[:8],
                      e.__class__.__name__)
            return [Reply(STORE_DOWN + "人工客服系统也暂时无法接入，请稍后再点“转人工客服”。", buttons=(HANDOFF,))] \
                if wants else [down]
        self._note(decision="handoff", intent=HUMAN)
        log.info("session %s handed off without the session store", storage_key(session_id)[:8])
        return [Reply(f"{self.handoff.message}\n\n{self.handoffs.status_text(h)}\n\n"
                      "系统暂时无法保存对话进度，工作人员看不到您之前与智能助手的对话，请直接说明您的问题。"
                      "如需回到智能助手，请输入“取消转人工”。", buttons=(LEAVE_HANDOFF,), intent=HUMAN)]

    def _handoff_of(self, session_id: str) -> Any:
        """The session's open hand-off found in the hand-off store (not through the session state, which
        may be unreachable or may predate a hand-off queued while it was); None when there is none."""
        key = storage_key(session_id)
        for status in ("active", "waiting"):
            for h in self.handoffs.list(status, limit=1000):
                if h.session_key == key:
                    return h
        return None

    # ---- turn events (handlers.insights): what each turn decided, masked, recorded off the request path ----

    def _note(self, **fields: Any) -> None:
        """Record facts about the current turn for its event (later notes win)."""
        trace = getattr(self._pinned, "trace", None)
        if trace is not None:
            trace.update(fields)

    def _note_first(self, **fields: Any) -> None:
        """Record facts about the current turn unless already noted (earlier notes win)."""
        trace = getattr(self._pinned, "trace", None)
        if trace is not None:
            for k, v in fields.items():
                trace.setdefault(k, v)

    def _flow_outcome(self, outcome: str) -> None:
        """How the flow ended this turn (the first ending noted wins over a later "completed")."""
        trace = getattr(self._pinned, "trace", None)
        if trace is not None and trace.get("flow_event") in (None, "started"):
            trace["flow_event"] = outcome

    def _note_match(self, result: MatchResult) -> None:
        self._note(decision=result.decision, intent=result.intent, entry=result.entry, score=result.score,
                   candidates=tuple((c.entry, c.score) for c in result.candidates))

    def _emit(self, session_id: str, trace: dict[str, Any], latency_ms: float) -> None:
        try:
            self.insights.record(TurnEvent(ts=self.clock(), session=storage_key(str(session_id))[:16],
                                           latency_ms=round(latency_ms, 3), **trace))
        except Exception as e:  # insights must never break a conversation
            log.error("turn event not recorded: %s", e.__class__.__name__)

    def forget(self, session_id: str) -> None:
        """Delete the session — any flow with its data, the transcript, where to reach the user —
        because the user left the channel (e.g. unsubscribed from the WeChat account)."""
        tag = _tag(session_id)
        try:
            with self.store.lock(session_id):
                self._abandon_handoff(self._load(session_id)[0], "用户已取消关注（离开了该渠道），会话已结束，无法再联系到该用户。")
                self.store.delete(session_id)
            log.info("session %s deleted (the user left)", tag)
        except StoreError as e:
            log.error("session %s: could not be deleted: %s", tag, e)

    def _abandon_handoff(self, state: SessionState, why: str) -> None:
        """The user cannot be reached any more: their open hand-off (if any) leaves the queue."""
        try:
            h = self._open_handoff(state)
            if h is not None:
                self.handoffs.leave(h, why)
        except HandoffError as e:   # the session is deleted regardless; staff see it open until closed
            log.error("hand-off of a departed user not closed: %s", e.__class__.__name__)

    def expects_image(self, session_id: str) -> bool:
        """True while the session's flow waits for a picture (a channel downloads one only then)."""
        try:
            state, _ = self._load(session_id)
        except StoreError:
            return True  # cannot tell: let the message through, the turn decides
        step = self._step(state) if state.flow and state.flow.step is not None else None
        return isinstance(step, Ask) and step.expects == "image"

    def _load(self, session_id: str) -> tuple[SessionState, list[Reply]]:
        """The saved state, and a restart message when what was saved could not be kept: a schema this
        version cannot read (the whole state goes) or a flow or step it no longer has (the flow goes, with
        its data). Only StoreError escapes."""
        raw = self.store.get(session_id)
        if raw is None:
            return SessionState(), []
        try:
            state = SessionState.from_json(raw)
        except Exception as e:  # Incompatible, or a bug reading it: the conversation starts afresh
            log.info("session %s: saved state dropped (%s)", _tag(session_id),
                     e if isinstance(e, Incompatible) else e.__class__.__name__)
            had_flow = e.had_flow if isinstance(e, Incompatible) else bool(raw.get("flow"))
            return SessionState(), [Reply(STATE_DROPPED if had_flow else STATE_RESET)]
        flow = state.flow
        if flow is None or (flow.name in FLOWS and (flow.step is None or flow.step in FLOWS[flow.name].steps)):
            return state, []
        log.info("dropped a saved flow this version does not have (%s at %s)", flow.name, flow.step)
        state.flow = None
        return state, [Reply(STATE_DROPPED)]

    def _ttl(self, state: SessionState) -> int:
        """A day idle for a session; with a flow active, just past the flow's own expiry
        so its personal data does not outlive it."""
        if state.flow:
            return min(self.sessions.ttl_seconds, self.sessions.flow_idle_seconds + FLOW_TTL_MARGIN)
        return self.sessions.ttl_seconds

    def _turn(self, session_id: str, state: SessionState, message: Message, notice: list[Reply]) -> list[Reply]:
        """One message's replies (after ``notice``, what loading the session had to say)."""
        now = self.clock()
        if message.client:
            # the account API's per-client limits see one stable identity per user, not per conversation
            state.client_id = self.limits.client_id(message.client)
        inp, problem = self._clean(message)
        if message.channel:  # where to push later replies (a staff answer after a hand-off)
            state.reach = Reach(message.channel, message.address)
        state.prev_event, state.last_event = state.last_event, None
        said = self._remember_user(state, inp, message)
        self._note(text=said[:MAX_TEXT], channel=str(message.channel or ""))
        try:
            if problem is not None:
                replies = [problem] + self._reprompt(state, now)
                self._note(decision="rejected")
            else:
                replies = self._with_person(state, inp, said)
                if replies is None:
                    replies = self._dispatch(session_id, state, inp, now)
                else:
                    self._note_first(decision="person")
        except Exception as e:  # a bug must not lose the conversation or leak data
            log.error("session %s: %s in flow %s", _tag(session_id), e.__class__.__name__,
                      state.flow.name if state.flow else None, exc_info=log.isEnabledFor(logging.DEBUG))
            self._flow_outcome("error")
            self._end_flow(state)
            replies = [Reply("抱歉，系统出了点问题，当前办理已结束，您填写的信息已清除。请重新开始或转人工客服。",
                             buttons=(HANDOFF,))]
        if state.flow:
            state.flow.touched = now
            self._note(flow=state.flow.name, step=state.flow.step)
        self._note_first(decision="flow" if state.flow or "flow_event" in (self._pinned.trace or {})
                         else "command", intent=next((r.intent for r in replies if r.intent), None))
        replies = notice + replies
        self._remember_bot(state, replies)
        return replies

    # ---- input cleaning ------------------------------------------------------------------

    def _clean(self, message: Message) -> tuple[Input, Reply | None]:
        """A cleaned Input, or a reply explaining why the message cannot be used."""
        if message.kind == "image":
            image = message.image
            if image is None or not image.data:
                return Input("image"), Reply("图片是空的，请重新上传。")
            try:
                return Input("image", image=sanitize(image)), None
            except ImageRejected as e:
                return Input("image"), Reply(e.message)
        raw = message.text if message.kind == "text" else message.payload
        if not isinstance(raw, str):
            return Input("text"), Reply("无法识别这条消息，请用文字输入。")
        if len(raw) > self.sessions.max_text_chars:
            return Input("text"), Reply(f"您的消息太长了（超过 {self.sessions.max_text_chars} 字）。"
                                        "请只发送问题本身，或这一步需要填写的内容。")
        kept = [ch for ch in raw if ch in "\n\t" or unicodedata.category(ch) not in ("Cc", "Cs")]
        if len(raw) - len(kept) > max(2, len(raw) // 10):
            return Input("text"), Reply("消息里有很多无法识别的字符（可能是文件或乱码），请用文字重新输入。")
        text = "".join(kept).strip()
        if not text:
            return Input("text"), Reply("您好像没有输入内容，请输入您的问题。")
        if message.kind == "button":
            return Input("button", text=text, payload=text), None
        return Input("text", text=text), None

    # ---- routing ------------------------------------------------------------------------

    def _dispatch(self, session_id: str, state: SessionState, inp: Input, now: float) -> list[Reply]:
        flow = state.flow
        if flow:
            self._may_wait()   # a flow's turn: its steps have the account API at hand
        if flow and now - flow.touched > self.sessions.flow_idle_seconds:
            return self._expire(state)
        if inp.kind == "button":
            replies = self._button(session_id, state, inp, now)
            if replies is not None:
                return replies
        (offer, state.offer), (offer_data, state.offer_data) = (state.offer, None), (state.offer_data, {})
        vote_for, state.vote_for = state.vote_for, None
        word = command_word(inp.text) if inp.kind == "text" else ""
        if inp.kind == "text":
            vote = "up" if word in HELPFUL_WORDS else "down" if word in NOT_HELPFUL_WORDS else None
            if vote and vote_for in self.faq.entries and not state.flow:  # the 有帮助/没帮助 button, typed
                return self._feedback(session_id, f"{vote}:{vote_for}", state, now)
            answer = takes_offer(inp.text, FLOWS[offer].title) if offer in FLOWS and not state.flow else None
            if answer is not None:  # the answer to the offer just made ("需要我一步步帮您…吗？")
                return self._start(state, offer, now, offer_data) if answer else [Reply("好的。还有其他问题，随时问我。")]
            cancels = word in CANCEL_WORDS or bool(state.flow and _GIVES_UP.match(word))
            if cancels and not (word in NO and self._asks_yes_no(state)):
                return self._cancel(state)
            if word in BACK_WORDS:
                return self._back(state, now)
            about = self._about_prompt(state, word, now)
            if about is not None:
                return about
            if state.flow and _TYPED_WRONG.match(word):
                return self._typed_wrong(state, now)
            corrected = _CORRECTION.match(unicodedata.normalize("NFKC", inp.text).strip()) if state.flow else None
            if corrected and corrected["old"] not in _POINTING \
                    and not any(is_question(clean(said)) for said in corrected.group("old", "new") if said) \
                    and self._takes_corrections(state):
                return self._corrected(session_id, state, corrected["old"], corrected["new"], now)
            if word in RETRY_WORDS:
                return self._retry(state, now)
            if word in RESTART_WORDS:
                return self._restart(state, now)
            if word in HANDOFF_WORDS:
                return self._handoff(session_id, state)
            if word in NO_HANDOFF_WORDS:  # (during a hand-off these leave it: _with_person)
                return [Reply("好的，不转人工。")] + (self._reprompt(state, now, "我们继续：") if state.flow
                                                      else [Reply("有什么可以帮您？")])
            command = COMMANDS.get(word) or COMMANDS.get(_ASKING_FOR.sub("", word))
            if command:
                return self._start(state, command, now)
        if inp.kind == "text":   # (a step's own options, typed, are its answer-handler's to read: choose)
            pressed = self._typed_button(session_id, state, word, now)
            if pressed is not None:
                return pressed
        if state.flow:
            return self._flow_input(session_id, state, inp, now)
        if inp.kind == "image":
            return [Reply("我只在办理“客服协助验证”（上传身份证照片）时接收图片。请用文字描述您的问题。",
                          buttons=(START_DUPLICATE,))]
        if inp.kind == "button":
            return [Reply("这个选项已失效，请直接输入您的问题。")]
        if state.texted in FLOWS and wants_resend(inp.text):   # 短信一直没收到, after the username was texted
            return [Reply(FLOWS[state.texted].unreceived, buttons=(Button("重新填写", f"flow:{state.texted}"), HANDOFF))]
        closing = self._closing(inp.text)
        if closing is not None:
            return closing
        if typed_yes_no(inp.text) or _NODS.fullmatch(word):   # 好的 / 嗯 / 好吧 with nothing asked: an acknowledgement
            return [Reply("好的。还有其他账号问题，随时问我。", intent="thanks")]
        trying = _WILL_TRY.sub("", word)
        if trying != word and (not trying or typed_yes_no(trying.rstrip("吧"))):   # 好的我试试, 行吧我试试看
            return [Reply("好的，祝您顺利！如果还是不行，随时回来问我，也可以转人工客服。", intent="thanks")]
        if _NOT_UNDERSTOOD.fullmatch(word):   # 看不懂: the answer just given, or nothing
            return self._said_above(state, self.faq.entry(state.answered), offer, "抱歉没能说清楚。") \
                if state.answered in self.faq.entries else [self._what_problem()]
        if _ANY_MORE.fullmatch(word) and (state.answered in self.faq.entries or not state.oos_streak):
            # 还有呢: more of the answer just given, or of nothing (after a question with no answer: _WHAT_NOW)
            return self._said_above(state, self.faq.entry(state.answered), offer) if state.answered in self.faq.entries \
                else [self._what_problem()]
        result = self.matcher.follow_up(inp.text, state.answered) if state.answered else self.matcher.match(inp.text)
        if result.asks_again and result.entry == state.answered and result.entry in self.faq.entries:
            return self._said_above(state, self.faq.entry(result.entry), offer)
        taken = self._offer_taken_with(session_id, state, offer, offer_data, inp, result, now) if offer in FLOWS else None
        if taken is not None:
            return taken
        several = self._asked_apart(inp.text)
        if several:
            return self._several_answers(state, several)
        return self._answer(session_id, state, result, now, inp.text)

    def _asked_apart(self, text: str) -> list[tuple[Entry, str]]:
        """Questions listed apart in one message (1. 忘记用户名 2. 怎么绑定微信; …，另外…): each FAQ entry that answers
        one of them, with its words, when two or more different ones do; else none."""
        parts = [p for p in _ITEMS.split(text) if len(command_word(p)) >= 2]
        if len(parts) < 2:
            return []
        found: dict[str, tuple[Entry, str]] = {}
        for part in parts[:MAX_ITEMS]:
            result = self.matcher.match(part)
            if result.decision != "answer" or result.entry not in self.faq.entries:
                continue
            entry = self.faq.entry(result.entry)
            if entry.intent in SMALLTALK or entry.intent == HUMAN or entry.offer == HUMAN:
                return []   # (a greeting before a question is no second one; a person asked for is the hand-off's)
            found.setdefault(entry.id, (entry, part))
        return list(found.values()) if len(found) > 1 else []

    def _several_answers(self, state: SessionState, answered: list[tuple[Entry, str]]) -> list[Reply]:
        """Each question of ``answered`` answered in turn under its FAQ question; the last one's flow offered."""
        first = answered[0][0]
        self._note(decision="answer", intent=first.intent, entry=first.id)   # (the turn's event: its first answer)
        state.oos_streak = 0
        replies = [Reply(f"您问了 {len(answered)} 个问题，分别回答如下。")]
        for entry, _ in answered:
            one = self._entry_replies(entry, None)[0]
            replies.append(replace(one, text=f"**{md(entry.question)}**\n\n{entry.answer}"))
        entry, said = answered[-1]
        offer = offer_for(entry.offer, said)
        self._answered(state, entry, said, offer)
        return replies + self._entry_replies(entry, offer)[1:]

    def _offer_taken_with(self, session_id: str, state: SessionState, offer: str, data: Mapping[str, Any],
                          inp: Input, result: MatchResult, now: float) -> list[Reply] | None:
        """The offered flow started with what was typed instead of a yes (zhangsan01 after 需要我一步步帮您找回密码吗？;
        张三 110101… after the username one; 我选途径4 after the duplicate-ID one), when its first step takes it, it
        holds a digit (data, which no word the user could mean is: sorry or 张三 alone is not taken) and nothing else
        reads it (``result`` out of scope, or the offer's topic again and no question); else None."""
        spec = FLOWS[offer]
        first = spec.steps[spec.first]
        if not isinstance(first, Ask) or first.expects != "text" or not re.search(r"\d", inp.text):
            return None
        if result.decision != "out_of_scope" and (result.intent != state.topic or is_question(clean(inp.text))):
            return None
        try:
            first.handle(Ctx(flow=offer, data=dict(data), accounts=self.accounts, idempotency_key="", now=now), inp)
        except Invalid:
            return None
        if first.private:
            self._hide_last_said(state)   # (kept as the step keeps its answer)
        intro = self._start(state, offer, now, data)[0]   # (its prompt is what was typed: not asked)
        return [intro] + self._flow_input(session_id, state, inp, now)

    def _said_above(self, state: SessionState, entry: Entry, offered: str | None, sorry: str = "") -> list[Reply]:
        """A follow-up with no word of its own (那怎么办, 为什么会这样; 看不懂, after ``sorry``) right after ``entry``'s
        answer: the FAQ says no more than that answer, so it is not said again; its flow (the side ``offered`` before)
        is offered again (a typed yes takes it), and a person."""
        self._note(decision="answer", intent=entry.intent, entry=entry.id)
        offer = offer_for(entry.offer, "", offered)
        self._answered(state, entry, entry.question, offer)
        lead = sorry + "常见问题里关于这个问题的说明就是上面这些。"
        if offer is None:
            return [Reply(lead + "如果哪一步不清楚，可以说说具体卡在哪里，或转人工客服。", buttons=(HANDOFF,), intent=entry.intent)]
        return [Reply(lead + "需要的话，我可以一步步帮您办理，也可以转人工客服。",
                      buttons=(Button(offer.label, f"flow:{offer.flow}"), *offer.also, HANDOFF), intent=entry.intent)]

    def _about_prompt(self, state: SessionState, word: str, now: float) -> list[Reply] | None:
        """What is said about the current prompt rather than to it: asking to wait (等一下), to skip it (跳过),
        what it wants (怎么填) or to do it later (明天再弄); never an answer, never counted as a refused one. None
        for anything else."""
        if not state.flow or not isinstance(self._step(state), Ask):
            return None
        if _HOLD_ON.fullmatch(word):
            return [Reply("好的，不着急。准备好后直接输入即可；输入“取消”可以结束办理。", flow=state.flow.name)]
        if word in SKIP_WORDS:
            return self._reprompt(state, now, "这一步不能跳过，需要您回答后才能继续办理。不想继续的话，可以输入“取消”结束，"
                                              "或输入“转人工”请客服协助。")
        if _ABOUT_PROMPT.fullmatch(word) or _NOT_UNDERSTOOD.fullmatch(word):
            return self._reprompt(state, now, "按下面的提示填写或点选即可；不清楚的话，可以输入“转人工”请客服协助。")
        if _LATER.search(word):
            minutes = self.sessions.flow_idle_seconds // 60
            return [Reply(f"可以。{minutes} 分钟内回来，可以接着这一步办理；超过 {minutes} 分钟没有操作，这次办理会结束，"
                          "已填写的信息会清除，到时重新开始即可。想现在结束的话，可以输入“取消”。", flow=state.flow.name)]
        return None

    def _closing(self, text: str) -> list[Reply] | None:
        """A closing statement ("密码改好了，谢谢") answered as one; None for anything else."""
        word = command_word(text)
        if not _DONE.match(word):
            return None
        lead = "不客气，很高兴能帮到您！" if _THANKS.search(word) else "太好了！"
        return [Reply(f"{lead}还有其他账号问题，随时问我。", intent="thanks")]

    def _asks_yes_no(self, state: SessionState) -> bool:
        """True when the current step is a yes/no question (so 算了/不用 answer it)."""
        if not state.flow or state.flow.step is None:
            return False
        step = self._step(state)
        return isinstance(step, Ask) and step.yes_no

    def _button(self, session_id: str, state: SessionState, inp: Input, now: float) -> list[Reply] | None:
        """Engine-level buttons; None lets the active flow's step handle the payload."""
        kind, _, arg = inp.payload.partition(":")
        if kind == "fb" and arg.partition(":")[2] in self.faq.entries:
            return self._feedback(session_id, arg, state, now)
        if kind == "faq" and arg in self.faq.entries:
            entry = self.faq.entry(arg)
            self._note(decision="answer", intent=entry.intent, entry=arg)
            offer = offer_for(entry.offer, entry.question) if not state.flow else None
            if not state.flow:
                self._answered(state, entry, entry.question, offer)
            return self._entry_replies(entry, offer) + self._reprompt(state, now)
        if kind == "flow" and arg in FLOWS:   # (the offer's button: with what its question said)
            return self._start(state, arg, now, state.offer_data if arg == state.offer else None)
        if inp.payload == "handoff":
            return self._handoff(session_id, state)
        if kind == "cmd":
            action = {"cancel": self._cancel, "back": lambda s: self._back(s, now),
                      "retry": lambda s: self._retry(s, now), "restart": lambda s: self._restart(s, now)}.get(arg)
            return action(state) if action else None
        return None

    def _typed_button(self, session_id: str, state: SessionState, word: str, now: float) -> list[Reply] | None:
        """The label of an engine-level button shown before (a flow to start, an FAQ question, a command), typed
        instead of pressed (重新填写, 先找回用户名), or its place among the last turn's buttons (第二个): that button;
        else None. (A flow's own options are its answer-handler's to count, choose: 第四个 at the route picker is
        route 4, whatever the buttons before it.)"""
        for payload, label in reversed(state.labels.items()):
            if word and command_word(label) == word and not payload.startswith("fb:"):
                return self._button(session_id, state, Input("button", text=label, payload=payload), now)
        payload = at_place(word, state.choices)
        if payload is None and _NONE_OF_THEM.fullmatch(word) and NONE_OF_THEM.payload in state.choices \
                and state.labels.get(NONE_OF_THEM.payload) == NONE_OF_THEM.label:
            payload = NONE_OF_THEM.payload   # 都不是, right after a clarification (its hand-off button last shown)
        if payload is None:
            return None
        return self._button(session_id, state, Input("button", text=state.labels.get(payload, ""), payload=payload), now)

    # ---- FAQ answers ------------------------------------------------------------------------

    def _answer(self, session_id: str, state: SessionState, result: MatchResult, now: float,
                text: str = "") -> list[Reply]:
        """The reply to the question ``text`` outside a flow."""
        self._note_match(result)
        after_none = state.oos_streak > 0   # (the question before got no answer either)
        state.oos_streak = state.oos_streak + 1 if result.decision == "out_of_scope" else 0
        if result.decision != "answer":   # a follow-up next is about this question, which got no answer
            state.answered = None
        if result.decision == "answer" and result.entry in self.faq.entries:
            entry = self.faq.entry(result.entry)
            if entry.intent == HUMAN or entry.offer == HUMAN:
                return self._handoff(session_id, state)
            offer = offer_for(entry.offer, text)
            self._answered(state, entry, text, offer)
            return self._entry_replies(entry, offer)
        if result.outrun in self.faq.entries:   # the user has followed this answer's advice: repeating it helps no one
            title = next(t.title for t in self.faq.topics if t.intent == self.faq.entry(result.outrun).intent)
            return [Reply(f"您说已经按“{title}”的解决办法操作过，仍然没有解决。我这里能给出的办法就是这些了，"
                          "再说一遍也帮不上忙；请点击“转人工客服”，由客服为您进一步查看。",
                          buttons=(HANDOFF,), intent="out_of_scope")]
        if after_none and result.decision == "out_of_scope" and (_WHAT_NOW.fullmatch(word := command_word(text))
                                                                 or _ANY_MORE.fullmatch(word)):
            return [Reply("刚才的问题官方常见问题里没有说明，我这里给不出办法。请点击“转人工客服”，由工作人员为您处理。",
                          buttons=(HANDOFF,), intent="out_of_scope")]
        if result.feels:   # 烦死了, 什么破网站: no question, and no "cannot answer" for it
            return [Reply(FEELS + "请告诉我您具体遇到了什么问题（例如页面提示了什么），我尽力帮您解决；也可以直接转人工客服。",
                          buttons=(HANDOFF,), intent="out_of_scope")]
        group = self.faq.not_covered_groups.get(result.not_covered or "")
        if result.decision == "out_of_scope" and group is not None:  # a neighbouring service we do not cover
            return [Reply(group.reply, buttons=(HANDOFF,), intent="out_of_scope")]
        candidates = [c for c in result.candidates if c.entry in self.faq.entries and c.intent not in SMALLTALK
                      and (result.decision == "clarify" or c.score >= self.matcher.config.suggest_threshold)]
        buttons = tuple(Button(self.faq.entry(c.entry).question, f"faq:{c.entry}") for c in candidates)
        if result.decision == "clarify" and buttons:
            return [Reply("您想问的是下面哪一个？请点选：", buttons=buttons + (NONE_OF_THEM,),
                          intent=result.intent)]
        related = "".join(f"\n- {b.label}" for b in buttons)
        personal = mask_secrets(text) != text   # a phone, an ID number … sent with nothing asked
        if not personal and not buttons and (_SAYS_NOTHING.fullmatch(command_word(text)) or result.faq_words):
            return [self._what_problem()]   # ？, 啊, 😭, 1, 为什么, 怎么弄: no question of anything
        lead = ("为保护您的隐私，请不要在对话中直接发送手机号、证件号码等个人信息：需要时，我会在办理步骤中请您填写。"
                if personal else "抱歉，这个问题我暂时无法回答。")
        return [Reply(lead + "我能解答学信网账号相关的问题，例如找回用户名和密码、"
                      "证件号码已被注册、手机号已被注册、绑定微信或支付宝。"
                      + (f"\n\n以下话题可能和您的问题相关：\n{related}" if buttons else "")
                      + "\n\n也可以转人工客服为您解答。",
                      buttons=buttons + (HANDOFF,), intent="out_of_scope")]

    @staticmethod
    def _what_problem() -> Reply:
        """Asking what the problem is, when a message names nothing to answer."""
        return Reply("请直接描述您遇到的账号问题，例如“忘记密码了”“提示证件号码已被注册怎么办”。我能解答找回用户名和密码、"
                     "证件号码已被注册、手机号已被注册、操作过于频繁、邮箱 IP 受限、绑定微信或支付宝等问题。",
                     buttons=(HANDOFF,), intent="out_of_scope")

    @staticmethod
    def _answered(state: SessionState, entry: Entry, text: str, offer: Offer | None) -> None:
        """Remember an FAQ answer given outside a flow: its topic, the entry a follow-up is read after, and the flow
        it offers (with what ``text`` said for it), which a typed yes next takes; one offering none drops an offer."""
        if entry.intent not in SMALLTALK:
            state.topic, state.answered = entry.intent, entry.id
        state.offer = offer.flow if offer is not None else None
        reads = FLOWS[state.offer].reads if state.offer else None
        state.offer_data = dict(reads(text)) if reads is not None else {}

    def _entry_replies(self, entry: Entry, offer: Offer | None) -> list[Reply]:
        """The answer, its related questions and the feedback pair; then ``offer`` (None in a flow)."""
        buttons = [Button(self.faq.entry(r).question, f"faq:{r}") for r in entry.related if r in self.faq.entries]
        if entry.intent not in SMALLTALK:
            buttons += [Button("有帮助", f"fb:up:{entry.id}"), Button("没帮助", f"fb:down:{entry.id}")]
        replies = [Reply(entry.answer, tuple(buttons), intent=entry.intent, entry=entry.id)]
        if offer is not None:
            replies.append(Reply(offer.question, (Button(offer.label, f"flow:{offer.flow}"), *offer.also),
                                 intent=entry.intent, entry=entry.id))
        return replies

    def _feedback(self, session_id: str, arg: str, state: SessionState, now: float) -> list[Reply]:
        vote, _, entry = arg.partition(":")
        awaiting = state.feedback_open
        if entry not in awaiting:   # one vote per answer shown: a replayed button counts nothing
            return [Reply("您已经评价过这个回答了，感谢您的反馈！")] + self._reprompt(state, now)
        awaiting.remove(entry)
        self._may_wait()   # a file append
        self.records.feedback(session_id, entry, vote == "up")
        self._note(decision="feedback", entry=entry, intent=self.faq.entry(entry).intent,
                   feedback="up" if vote == "up" else "down")
        if vote != "up":
            state.last_event = "not_helpful"
            if state.answered == entry:   # (what follows is not read after an answer that did not help: 错了 again)
                state.answered = None
        if vote == "up":
            return [Reply("感谢您的反馈！")] + self._reprompt(state, now)
        return [Reply("抱歉没能帮到您。您可以换个说法再问一次，或转人工客服。", buttons=(HANDOFF,))] + self._reprompt(state, now)

    # ---- hand-off to a person ------------------------------------------------------------

    def _reason(self, state: SessionState) -> str:
        """Why the conversation reaches a person (for staff and statistics)."""
        if state.flow and state.flow.invalid >= self.sessions.max_invalid_tries:
            return "invalid_tries"
        if state.prev_event in ("api_failure", "not_helpful"):
            return str(state.prev_event)
        if state.oos_streak >= 2:
            return "out_of_scope_twice"
        return "user_request"

    def _handoff(self, session_id: str, state: SessionState) -> list[Reply]:
        """Queue the conversation for a person with a masked transcript; any flow ends."""
        current = self._open_handoff(state)
        if current is None:
            try:   # one queued while the session store was down: join it, never a second one
                current = self._handoff_of(session_id)
            except HandoffError:
                current = None
            if current is not None:
                self._end_flow(state)
                state.handoff = current.id
        if current is not None:
            return [Reply("您已在人工客服队列中。" + self.handoffs.status_text(current), buttons=(LEAVE_HANDOFF,),
                          intent=HUMAN)]
        flow, reach = state.flow, state.reach
        new = NewHandoff(session_key=storage_key(session_id), channel=(reach.channel if reach else "") or "web",
                         address=(reach.address if reach else "") or session_id, reason=self._reason(state),
                         flow=flow.name if flow else None, step=flow.step if flow else None,
                         topic=flow.name if flow else state.topic, transcript=transcript_lines(state.transcript))
        try:
            h = self.handoffs.open(new)
        except HandoffError as e:
            log.error("session %s: hand-off failed: %s", _tag(session_id), e.__class__.__name__)
            return [Reply("抱歉，人工客服系统暂时无法接入，请稍后再点“转人工客服”。", buttons=(HANDOFF,))]
        self._note(decision="handoff", intent=HUMAN)
        if state.flow:
            self._flow_outcome("handed_off")
        self._end_flow(state)
        state.handoff = h.id
        state.oos_streak = 0
        log.info("session %s handed off (%s)", _tag(session_id), new.reason)
        return [Reply(f"{self.handoff.message}\n\n{self.handoffs.status_text(h)}\n\n"
                      "如需回到智能助手，请输入“取消转人工”。", buttons=(LEAVE_HANDOFF,), intent=HUMAN)]

    def _open_handoff(self, state: SessionState) -> Any:
        """The session's hand-off while waiting/active; forgets one that has ended."""
        if not state.handoff:
            return None
        h = self.handoffs.get_open(state.handoff)
        if h is None:
            state.handoff = None
        return h

    def _with_person(self, state: SessionState, inp: Input, said: str) -> list[Reply] | None:
        """During a hand-off the user's messages go to the person; None when there is none (the bot answers)."""
        try:
            h = self._open_handoff(state)
        except HandoffError:
            return [Reply("抱歉，人工客服系统暂时无法连接，您的消息没有送达，请稍后再发送一次。")]
        if h is None:
            return None
        leaving = (inp.kind == "button" and inp.payload in (LEAVE, "cmd:cancel")) or \
                  (inp.kind == "text" and (command_word(inp.text) in LEAVE_WORDS
                                           or (h.status == "waiting" and gives_up(inp.text))))
        try:
            if leaving:
                self.handoffs.leave(h)
                state.handoff = None
                return [Reply("好的，已取消转人工，回到智能助手。有什么可以帮您？", intent="handoff_left")]
            if inp.kind == "image":
                return [Reply("人工客服对话中暂不支持发送图片，请用文字描述您的问题。", buttons=(LEAVE_HANDOFF,))]
            if (inp.kind == "button" and inp.payload == "handoff") or \
                    (inp.kind == "text" and command_word(inp.text) in HANDOFF_WORDS):
                return [Reply("您已在人工客服队列中。" + self.handoffs.status_text(h), buttons=(LEAVE_HANDOFF,),
                              intent=HUMAN)]
            self.handoffs.from_user(h, said)
        except HandoffError:
            if self._open_handoff(state) is None:  # closed in the meantime: the bot answers
                return None
            return [Reply("抱歉，您的消息没有送达人工客服，请稍后再发送一次。")]
        if h.status != "waiting":
            return []
        waiting = "已收到，人工客服接入后会看到您的消息。" + self.handoffs.status_text(h)
        entry = self._answers_while_waiting(inp)
        if entry is None:
            return [Reply(waiting, buttons=(LEAVE_HANDOFF,), intent=HUMAN)]
        self.handoffs.notice(h, f"智能助手已用常见问题“{entry.question}”的解答回复了用户的这条消息。")
        return [Reply(entry.answer, intent=entry.intent, entry=entry.id),
                Reply(f"{waiting}\n\n上面是常见问题中的解答，供您等待时参考；问题已经解决的话，可以输入“取消转人工”。",
                      buttons=(LEAVE_HANDOFF,), intent=HUMAN)]

    def _answers_while_waiting(self, inp: Input) -> Entry | None:
        """The FAQ entry that answers a question typed while waiting for a person (the person still gets it, and is
        told what the user was answered); None for anything else: small talk, a request for a person, no answer."""
        if inp.kind != "text" or _ASKS_WAIT.fullmatch(command_word(inp.text)):   # (还要等多久: the queue's wait)
            return None
        result = self.matcher.match(inp.text)
        entry = self.faq.entries.get(result.entry or "") if result.decision == "answer" else None
        if entry is None or entry.intent in SMALLTALK or HUMAN in (entry.intent, entry.offer):
            return None
        return entry

    # ---- flows ---------------------------------------------------------------------------------

    def _ctx(self, state: SessionState, now: float) -> Ctx:
        self._may_wait()   # a flow step with the account API at hand
        flow = self._flow(state)
        # the user's keyed identity from the channel (Message.client), else a random one for this conversation
        if not state.client_id:
            state.client_id = secrets.token_hex(8)
        return Ctx(flow=flow.name, data=flow.data, accounts=self.accounts.with_client_id(state.client_id),
                   idempotency_key=flow.idempotency_key, now=now, limits=self.limits, client=state.client_id,
                   login_slot=LoginSlot(state))

    @staticmethod
    def _flow(state: SessionState) -> FlowState:
        """The active flow (callers check there is one)."""
        assert state.flow is not None
        return state.flow

    def _step(self, state: SessionState) -> Step:
        flow = self._flow(state)
        return FLOWS[flow.name].steps[flow.step or ""]

    def _start(self, state: SessionState, name: str, now: float,
               data: Mapping[str, Any] | None = None) -> list[Reply]:
        self._may_wait()   # before "flow started" is logged: its steps have the account API at hand
        self._end_flow(state)
        spec = FLOWS[name]
        state.flow, state.texted, state.answered = FlowState(name=name, data=dict(data or {}), touched=now), None, None
        log.info("flow %s started", name)
        self._note(flow_event="started", flow=name)
        replies = self._advance(state, Goto(spec.first), now)
        if not state.flow:  # done at once (e.g. a status shown to a logged-in user): no prompt hints
            return replies
        intro = Reply(f"好的，我们开始**{spec.title}**。随时可以输入“返回”回到上一步，“取消”结束，"
                      "或“转人工”找工作人员。", flow=name)
        return [intro] + replies

    def _restart(self, state: SessionState, now: float) -> list[Reply]:
        if not state.flow:
            return [Reply("当前没有正在办理的事项。有什么可以帮您？")]
        return [Reply("好的，从头开始，之前填写的信息已清除。")] + self._start(state, state.flow.name, now)

    def _end_flow(self, state: SessionState) -> None:
        """Drop the flow and all its data."""
        flow, state.flow = state.flow, None
        if flow:
            log.info("flow %s ended at %s", flow.name, flow.step)
            self._note(flow=flow.name, step=flow.step)

    def _expire(self, state: SessionState) -> list[Reply]:
        name = self._flow(state).name
        self._flow_outcome("expired")
        self._end_flow(state)
        minutes = self.sessions.flow_idle_seconds // 60
        return [Reply(f"由于超过 {minutes} 分钟没有操作，“{FLOWS[name].title}”已结束，您填写的信息已清除。"
                      "如需继续，请重新开始。", buttons=(Button("重新开始", f"flow:{name}"),), flow=name)]

    def _cancel(self, state: SessionState, goodbye: str = "") -> list[Reply]:
        """End the flow and drop its data; ``goodbye`` closes the conversation instead of asking what else."""
        if not state.flow:
            return [Reply("当前没有正在办理的事项。有什么可以帮您？")]
        title = FLOWS[state.flow.name].title
        self._flow_outcome("cancelled")
        self._end_flow(state)
        return [Reply(f"好的，已结束“{title}”，您填写的信息已清除。" + (goodbye or "还有什么可以帮您？"))]

    def _back(self, state: SessionState, now: float) -> list[Reply]:
        flow = state.flow
        if not flow:
            return [Reply("当前没有正在办理的事项。有什么可以帮您？")]
        if not flow.history:
            return [Reply("已经回到可以返回的最早一步了。如需重新开始，请输入“取消”后再开始。")] + self._reprompt(state, now)
        step = flow.history.pop()
        return self._advance(state, Goto(step), now, record=False)

    def _typed_wrong(self, state: SessionState, now: float) -> list[Reply]:
        """"我输错了": after an answer this step refused, its prompt again; else back to the step before (返回)."""
        flow = self._flow(state)
        if flow.invalid or not flow.history:
            return self._reprompt(state, now, lead="好的，请重新输入。")
        return [Reply("好的，我们回到上一步重新填写。")] + self._back(state, now)

    def _takes_corrections(self, state: SessionState) -> bool:
        """The current step is a prompt for data, not a yes/no question (a review reads "学号填错了" itself)."""
        step = self._step(state)
        return isinstance(step, Ask) and not step.yes_no

    def _corrected(self, session_id: str, state: SessionState, old: str | None, new: str, now: float) -> list[Reply]:
        """"不是李四，是李斯": ``new`` replaces the answer the step before was given; it answers the current step
        instead when that step refused an answer just now, or when ``old`` is said and is nothing the flow holds
        (不是身份证，是护照 before any type was chosen)."""
        flow = self._flow(state)
        given = old is None or any(old in str(v) for v in flow.data.values())
        if given and not flow.invalid and flow.history:
            self._back(state, now)   # (its prompt is not shown: the answer follows)
        step = self._step(state)
        if isinstance(step, Ask) and step.private:
            self._hide_last_said(state)   # (as that step hides its answers)
        tries = flow.invalid
        replies = self._flow_input(session_id, state, Input("text", text=new), now)
        refused = state.flow is not None and state.flow.invalid > tries   # (the step's message says why)
        return replies if refused else [Reply("好的，已按您更正的内容填写。")] + replies

    def _retry(self, state: SessionState, now: float) -> list[Reply]:
        if not state.flow:
            return [Reply("当前没有需要重试的操作。有什么可以帮您？")]
        step = self._step(state)
        if isinstance(step, Ask):
            return self._reprompt(state, now)
        outcome = self._run(state, step, now)
        return outcome if isinstance(outcome, list) else self._advance(state, outcome, now)

    def _reprompt(self, state: SessionState, now: float, lead: str = "") -> list[Reply]:
        """The current step's prompt again (nothing outside a flow)."""
        if not state.flow:
            return []
        step = self._step(state)
        if isinstance(step, Act):
            return [Reply("上一步还没有完成，请点“重试”，或输入“取消”结束。", buttons=(RETRY, CANCEL),
                          flow=state.flow.name)]
        prompt = self._prompt(state, step, now, again=True)
        if lead:
            prompt = Reply(f"{lead}\n\n{prompt.text}", prompt.buttons, flow=prompt.flow, expects_image=prompt.expects_image)
        return [prompt]

    def _prompt(self, state: SessionState, step: Ask, now: float, again: bool = False) -> Reply:
        """The step's prompt (asked ``again``: its shorter one, ``Ask.again``, where it has one), marked for the
        channel when the step waits for a picture (``Ask.expects``)."""
        prompt = (again and step.again or step.prompt)(self._ctx(state, now))
        return replace(prompt, expects_image=True) if step.expects == "image" else prompt

    def _flow_input(self, session_id: str, state: SessionState, inp: Input, now: float) -> list[Reply]:
        """The user's answer to the current step, or a question asked in between."""
        step = self._step(state)
        question = inp.kind == "text" and is_question(clean(inp.text))
        if isinstance(step, Act):
            interrupted = self._interrupt(session_id, state, inp.text, self.matcher.match(inp.text), now, 0.0,
                                          aside=True) if question else None
            return interrupted if interrupted is not None else self._reprompt(state, now)
        min_score = 0.0 if question else self.sessions.interrupt_min_score   # (a non-question needs a confident match)
        # a name can look like a sentence: what the FAQ answers is not one (but 陈学信, a name it half-answers, is one)
        said = self.matcher.match(inp.text) if inp.kind == "text" and step.loose else None
        if said is not None:
            interrupted = self._interrupt(session_id, state, inp.text, said, now, min_score)
            if interrupted is not None:
                return interrupted
        kept = dict(self._flow(state).data) if said is not None else None
        try:
            outcome = step.handle(self._ctx(state, now), inp)
            if said is not None and (said.faq_words or said.feels or self._for_prompts(said, min_score) is not None):
                # 邮箱, 学信网, 哈哈, 好烦, 说人话 taken for a name: no one's name (what the step refuses itself, it says
                # why; a complaint gets a word of regret, a remark about the assistant its group's reply)
                self._flow(state).data = kept
                raise Invalid(f"“{clean(inp.text)}”不像是这一步要填写的内容。想问这方面的问题的话，请把问题说完整，"
                              "我答完再继续办理。")
        except Invalid as e:
            if inp.kind == "text":
                result = said or self.matcher.match(inp.text)
                interrupted = self._interrupt(session_id, state, inp.text, result, now, min_score, aside=True)
                if interrupted is not None:
                    return interrupted
                logged_in = state.login is not None and state.login.valid(now)
                if not e.answers and not logged_in and phone_gone(command_word(inp.text)):
                    return self._invalid(state, PHONE_GONE, now)   # (我换手机号了 at the name prompt: a code is ahead)
                if question and not e.answers and result.decision == "out_of_scope" \
                        and is_question(clean(inp.text).rstrip("?？ ")):
                    # 明天天气怎么样？ at the username prompt (张三？ is a name typed with doubt: the step's message)
                    return self._unanswered_aside(state, result, now)
            return self._invalid(state, e.message, now)
        return self._advance(state, outcome, now)

    def _interrupt(self, session_id: str, state: SessionState, text: str, result: MatchResult, now: float,
                   min_score: float, aside: bool = False) -> list[Reply] | None:
        """A confident FAQ answer (or a hand-off) in the middle of a flow, then the same step again; with ``aside``
        (what the step cannot take), also the reply of a not-covered group for prompts (你们会保存我的身份证号吗), and
        for a complaint (烦死了) a word of regret. ``result`` is the matcher's reading of ``text``."""
        if aside and result.feels:   # 烦死了 at a prompt: heard, and the same step
            return self._reprompt(state, now, FEELS + "我们一步步来：")
        group = self._for_prompts(result, min_score) if aside else None
        if group is not None:
            self._note_match(result)
            return [Reply(group.reply, buttons=(HANDOFF,), intent="out_of_scope")] + \
                self._reprompt(state, now, "我们继续刚才的办理：")
        if result.decision != "answer" or result.entry not in self.faq.entries:
            return None
        entry = self.faq.entry(result.entry)
        if result.score < min_score and entry.intent != HUMAN:   # (我要投诉你们: a person is asked for, however said)
            return None
        if entry.intent == "thanks" and not _THANKS.search(command_word(text)):
            return None   # 收到了 / 好的 at a prompt acknowledge it: 不客气 would answer a thanks never said
        self._note_match(result)
        if entry.intent == HUMAN or entry.offer == HUMAN:
            return self._handoff(session_id, state)
        if entry.intent == "goodbye":   # 先这样吧 in a flow: leaving it, not a question in between
            return self._cancel(state, goodbye=entry.answer)
        return self._entry_replies(entry, None) + self._reprompt(state, now, "我们继续刚才的办理：")

    def _unanswered_aside(self, state: SessionState, result: MatchResult, now: float) -> list[Reply]:
        """A question asked at a prompt that the FAQ does not answer: said so (with its not-covered group's reply, if
        any) and a person offered, then the same step again — not the step's format message, nor a wrong try."""
        self._note_match(result)
        # (a group's reply only where the question names something the FAQ never does: 还有别的办法吗 at a prompt
        # asks about the step, not about the group its words are nearest)
        group = None if result.faq_words else self.faq.not_covered_groups.get(result.not_covered or "")
        said = group.reply if group is not None else ("抱歉，这个问题我暂时无法回答，官方常见问题里没有说明。"
                                                      "需要的话，可以转人工客服为您解答。")
        return [Reply(said, buttons=(HANDOFF,), intent="out_of_scope")] + self._reprompt(state, now, "我们继续刚才的办理：")

    def _for_prompts(self, result: MatchResult, min_score: float) -> NotCovered | None:
        """The not-covered group the result refuses the message for at ``min_score`` or more, when its reply is for
        prompts too (``at_prompts``: 你们会保存我的身份证号吗, 你是机器人吗)."""
        group = self.faq.not_covered_groups.get(result.not_covered or "")
        ok = group is not None and group.at_prompts and result.decision == "out_of_scope" and result.score >= min_score
        return group if ok else None

    def _invalid(self, state: SessionState, message: str, now: float) -> list[Reply]:
        flow = self._flow(state)
        flow.invalid += 1
        replies = self._reprompt(state, now, lead=message)
        if flow.invalid >= self.sessions.max_invalid_tries:
            replies.append(Reply("这一步好像不太顺利。需要的话，可以转人工客服协助您，或输入“取消”结束办理。",
                                 buttons=(HANDOFF, CANCEL), flow=flow.name))
        return replies

    def _advance(self, state: SessionState, outcome: Outcome, now: float, record: bool = True) -> list[Reply]:
        """Apply an outcome: say its replies, then enter steps until one waits for the user."""
        replies: list[Reply] = []
        for _ in range(MAX_HOPS):
            flow = self._flow(state)
            replies.extend(outcome.say)
            if isinstance(outcome, Finish):
                self._flow_outcome("completed")
                self._end_flow(state)
                state.texted = flow.name if FLOWS[flow.name].unreceived else None
                return replies
            if isinstance(outcome, Switch):
                return replies + self._start(state, outcome.flow, now, outcome.data)
            leaving = flow.step
            if record and leaving is not None and isinstance(FLOWS[flow.name].steps[leaving], Ask):
                flow.history.append(leaving)
            record = True
            flow.step, flow.idempotency_key, flow.invalid = outcome.step, secrets.token_urlsafe(16), 0
            step = self._step(state)
            if isinstance(step, Ask):
                return replies + [self._prompt(state, step, now)]
            flow.history = []  # no going back past an action already taken
            next_outcome = self._run(state, step, now)
            if isinstance(next_outcome, list):  # the step stays: say why
                return replies + next_outcome
            outcome = next_outcome
        raise RuntimeError(f"flow {self._flow(state).name} did not settle")

    def _run(self, state: SessionState, step: Act, now: float) -> Outcome | list[Reply]:
        """Run an action step; when the service is unavailable or asks to wait, the step stays
        (its data and key kept for "重试") and the replies say so."""
        flow = self._flow(state)
        ctx = self._ctx(state, now)
        try:
            return step.run(ctx)
        except ServiceUnavailable:
            log.warning("flow %s step %s: account service unavailable", flow.name, flow.step)
            return self._failed(state)
        except TooFrequent as e:
            log.info("flow %s step %s: rate limited by the account service", flow.name, flow.step)
            return [Reply(f"请求太频繁，账号服务暂时不受理，请{plain_wait(e.retry_after)}点“重试”。"
                          "您已填写的信息都还在。", buttons=(RETRY, CANCEL), flow=flow.name)]
        except Unauthorized:
            ctx.logout()
            relogin = FLOWS[flow.name].relogin
            if relogin is not None:  # the flow logs in again, then resumes at this step
                return relogin(ctx, flow.step or "")
            return Finish((ctx.say("登录已失效，请重新开始。"),))
        except AccountError as e:
            log.warning("flow %s step %s: refused (%s)", flow.name, flow.step, e.code)
            state.last_event = "api_failure"
            self._flow_outcome("failed")
            return Finish((ctx.say(f"抱歉，操作没有成功：{md(e.message) if e.message else '服务拒绝了请求'}。如需帮助，可以转人工客服。",
                                   HANDOFF),))

    def _failed(self, state: SessionState) -> list[Reply]:
        state.last_event = "api_failure"
        return [Reply("抱歉，学信网账号服务暂时无法连接，这一步没有完成，您已填写的信息都还在。请稍后点“重试”。",
                      buttons=(RETRY, CANCEL), flow=self._flow(state).name)]

    # ---- transcript (masked, short) -----------------------------------------------------

    def _remember_user(self, state: SessionState, inp: Input, message: Message) -> str:
        """Add the user's message to the masked transcript (buttons by their label); the line kept."""
        private = False
        if state.flow and state.flow.step:
            step = self._step(state)
            private = isinstance(step, Ask) and step.private
        if inp.kind == "image" or message.kind == "image":
            text = "［图片］"
        elif private and inp.kind == "text":
            text = HIDDEN
        elif inp.kind == "button":
            text = mask_secrets(state.labels.get(inp.payload) or "［按钮］")
        else:
            text = mask_secrets(inp.text)[:SAID_CHARS]
        self._append_transcript(state, "用户", text[:TRANSCRIPT_CHARS])
        return text

    def _remember_bot(self, state: SessionState, replies: list[Reply]) -> None:
        labels = {b.payload: b.label for r in replies for b in r.buttons}
        state.choices = [p for p in labels if not p.startswith("fb:")]
        votes = [p for p in labels if p.startswith("fb:")]
        if votes:  # the answer a typed 有帮助/没帮助 on the next turn is about
            state.vote_for = votes[-1].split(":", 2)[2]
        if labels:  # the labels the user saw, so a pressed button reads as its label in the transcript
            kept = {**state.labels, **labels}
            state.labels = dict(list(kept.items())[-LABELS_KEPT:])
        for r in replies:
            self._append_transcript(state, "助手", _faq_line(r.text) if r.entry else _bot_line(r.text))
            if r.entry and any(b.payload.startswith("fb:") for b in r.buttons):
                awaiting = state.feedback_open   # answers that may still get their one vote
                if r.entry not in awaiting:
                    awaiting.append(r.entry)
                del awaiting[:-VOTES_OPEN]

    def _hide_last_said(self, state: SessionState) -> None:
        """The user's message just kept in the transcript (and the turn's event) hidden: a private step takes it."""
        if state.transcript and state.transcript[-1][0] == "用户":
            state.transcript[-1] = ["用户", HIDDEN]
            self._note(text=HIDDEN)

    def _append_transcript(self, state: SessionState, who: str, text: str) -> None:
        state.transcript.append([who, text])
        del state.transcript[:-self.sessions.transcript_turns]


def _bot_line(text: str) -> str:
    """A reply's transcript line: the words the user saw, masked, cut."""
    return mask_secrets(plain(text))[:TRANSCRIPT_CHARS]


# the lines of FAQ answers (replies with an entry: the FAQ's own text, nothing of the user's), kept
_faq_line = functools.lru_cache(maxsize=1024)(_bot_line)


class BusySave:
    """A quick turn (``Engine.try_handle(..., busy=True)``) whose save found the session database busy
    with another writer's short transaction: its ``replies``, the session's lock still held by the thread
    that tried (the event loop), and the save to try again. That thread calls ``retry()`` (True: saved)
    a ``busy_for`` or so apart, for as long as it cares to; if it gives up, ``finish()`` where waiting is
    fine (a worker thread: the save waits for the writer; the replies, or the store-down ones when the
    store failed, as ``handle`` says); and at the end, whatever happened, ``close()`` in the thread that
    tried, which releases the lock and records the turn's event (none when it was never saved: an
    attempt that keeps nothing, like ``try_handle``'s None)."""

    busy_for = StoreBusy.busy_for

    def __init__(self, engine: Engine, session_id: str, message: Message, data: dict[str, Any], ttl: int,
                 replies: list[Reply], held: contextlib.ExitStack, trace: dict[str, Any], started: float) -> None:
        self.replies = replies
        self._engine, self._session_id, self._message = engine, session_id, message
        self._data, self._ttl, self._held, self._trace, self._started = data, ttl, held, trace, started
        self._done = False

    def retry(self) -> bool:
        """The save again (this thread's no-wait connection, the lock being its try-lock): True when saved."""
        try:
            self._engine.store.save(self._session_id, self._data, self._ttl)
        except StoreError:   # busy still, or failing: finish() says so, where waiting is fine
            return False
        self._done = True
        return True

    def finish(self) -> list[Reply]:
        """The save in a thread where waiting is fine: the turn's replies, or the store-down ones."""
        engine = self._engine
        try:
            engine.store.save(self._session_id, self._data, self._ttl)
            return self.replies
        except StoreError as e:
            log.error("session %s: store failed: %s", _tag(self._session_id), e)
            return engine._store_down(self._session_id, self._message)
        finally:
            self._done = True

    def close(self) -> None:
        """Release the session's lock (in the thread that took it) and record the turn's event if it counted."""
        held, self._held = self._held, None
        if held is None:
            return
        held.close()
        engine = self._engine
        if self._done and engine.insights is not None and "text" in self._trace:
            engine._emit(self._session_id, self._trace, (time.perf_counter() - self._started) * 1000)


def _tag(session_id: str) -> str:
    """A session's short one-way tag for logs (never the id itself)."""
    return storage_key(str(session_id))[:8]


def build_engine(cfg: Mapping[str, Any], accounts: AccountAPI | None = None,
                 store: SessionStore | None = None, *, matcher: Matcher | None = None,
                 clock: Callable[[], float] = time.time, handoffs: HandoffService | None = None,
                 limits: Limits | None = None) -> Engine:
    """The engine as configured: FAQ + matcher, the account client, the session store."""
    from intents.matcher import Matcher as FaqMatcher

    from .handoff_service import build_service
    from .sessions import build_store

    sessions = SessionsConfig.of(cfg)
    if matcher is None:
        matcher = FaqMatcher.from_settings(cfg)
    faq = matcher.faq
    if accounts is None:
        from accounts.client import HttpAccountClient

        accounts = HttpAccountClient(AccountsConfig.of(cfg))
    if store is None:
        store = build_store(sessions)
    if limits is None:
        from settings import server_secret

        from .limits import build_limits
        limits = build_limits(cfg, server_secret(cfg))
    records = FeedbackRecords(resolve_path(sessions.data_dir), clock=clock, max_bytes=sessions.records_max_bytes)
    from .insights import build_writer

    return Engine(faq, matcher, accounts, store, sessions, HandoffConfig.of(cfg), records, clock,
                  handoffs or build_service(cfg, clock=clock), insights=build_writer(cfg, clock=clock), limits=limits)

