"""The hand-off service: the one Python API over hand-offs, for the engine, the staff console
and any bridge to a help desk (each of those is a thin layer over it).

Engine side: ``open`` (a conversation joins the queue), ``from_user`` (a user message during the
hand-off), ``leave`` (the user goes back to the bot), ``status_text`` (queue place, office hours,
whether anyone is signed in — told honestly).
Staff side: ``list``, ``get``, ``claim``, ``reply``, ``close``, ``hand_back``. Each change is
published on the event bus topic ``staff`` (consoles update live) and what the user must see is
pushed to them through their channel (``deliver(channel, address, replies)``).

A push that fails for a passing reason (Redis down, a network error) is kept in the hand-off store
and sent again in order by ``handlers.redelivery.Redeliverer`` when the serving process runs one
(``redelivery``); a later push to the same hand-off waits behind it. Staff see each step as a
system line in the conversation.

Errors are ``HandoffError`` subclasses (``handlers.handoffs``) with a Chinese ``message``;
``ReplyRejected`` for an empty or over-long reply.
"""
from __future__ import annotations

import datetime as dt
import logging
import re
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .events import BusError, EventBus, MemoryBus
from .handoffs import (RESOLUTIONS, Handoff, HandoffClosed, HandoffConflict, HandoffError, HandoffMessage,
                       HandoffNotFound, HandoffStore, MemoryHandoffStore, NewHandoff)
from .types import Reply, Undeliverable

log = logging.getLogger(__name__)

STAFF_TOPIC = "staff"
MAX_REPLY_CHARS = 2000
LEAVE = "cmd:leave_handoff"
Deliver = Callable[[str, str, Sequence[Reply]], None]

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DAY_NAMES = ("周一", "周二", "周三", "周四", "周五", "周六", "周日")
_HOURS = re.compile(r"^\s*(?P<days>[A-Za-z,\-]+)\s+(?P<start>\d{1,2}:\d{2})-(?P<end>\d{1,2}:\d{2})"
                    r"(?:\s+(?P<tz>[A-Za-z_]+/[A-Za-z_/+\-]+|UTC))?\s*$")


# A queued user giving up in their own words ("算了不用了"): the whole message is made of these pieces,
# at least one of them a cancel phrase. Anything more (a question, a detail) is for the agent.
_CANCEL = ("算了", "不用了", "不用人工了", "不用转人工了", "不需要了", "不需要人工了", "不要了", "不要人工了", "不等了",
           "不想等了", "等不了了", "不排了", "不排队了", "取消排队", "取消吧", "没事了", "不麻烦了", "不用麻烦了",
           "不找人工了", "我自己看看", "我自己再看看", "我自己试试", "我自己再试试", "自己解决了", "已经解决了",
           "问题解决了", "解决了", "已经好了", "弄好了", "搞定了", "不问了")
_FILLER = ("那", "那就", "那我", "好吧", "好的", "好", "嗯", "哦", "噢", "唉", "哎", "还是", "我", "就", "先", "吧", "啦",
           "了", "啊", "呀", "哈", "呢", "谢谢", "谢谢你", "谢谢您", "多谢", "太慢了", "太久了", "等太久了", "没人理",
           "没人理我", "没人回", "没人回我", "人工", "客服")


def _alternation(words: Sequence[str]) -> str:
    return "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))


_GIVE_UP = re.compile(rf"(?:{_alternation(_FILLER)})*(?:(?:{_alternation(_CANCEL)})(?:{_alternation(_FILLER)})*)+")


def gives_up(text: str) -> bool:
    """Whether a message typed while queued says only "never mind" (算了不用了, 不等了，谢谢): the user
    leaves the queue. A question or any detail (算了，我想问下密码怎么改) is a message for the agent."""
    if not isinstance(text, str) or "?" in text or "？" in text or len(text) > 30:
        return False
    from .flows.base import command_word

    word = command_word(text)
    return bool(word) and _GIVE_UP.fullmatch(word) is not None


class ReplyRejected(HandoffError):
    """An agent's reply that cannot be sent (empty or too long)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def user_topic(session_key: str) -> str:
    """The bus topic a user's live stream reads (by the session's one-way key, never the id)."""
    return f"user:{session_key}"


@dataclass(frozen=True)
class OfficeHours:
    """When agents work, e.g. ``Mon-Fri 08:30-17:30 Asia/Shanghai``; empty means always."""

    days: frozenset[int] = frozenset(range(7))
    start: dt.time = dt.time(0, 0)
    end: dt.time = dt.time(23, 59, 59)
    tz: str = "Asia/Shanghai"
    always: bool = True

    @classmethod
    def parse(cls, spec: str | None) -> "OfficeHours":
        """``ValueError`` (naming what is wrong) for a spec it cannot read."""
        if not spec or not str(spec).strip():
            return cls()
        m = _HOURS.match(str(spec))
        if not m:
            raise ValueError(f"handoff.hours: {spec!r} is not like 'Mon-Fri 08:30-17:30 Asia/Shanghai'")
        days: set[int] = set()
        for part in m.group("days").lower().split(","):
            first, _, last = part.partition("-")
            if first not in _DAYS or (last and last not in _DAYS):
                raise ValueError(f"handoff.hours: unknown day in {part!r} (Mon Tue Wed Thu Fri Sat Sun)")
            a, b = _DAYS.index(first), _DAYS.index(last or first)
            days.update(range(a, b + 1) if a <= b else [*range(a, 7), *range(0, b + 1)])
        try:
            start = dt.time.fromisoformat(m.group("start").zfill(5))
            end = dt.time.fromisoformat(m.group("end").zfill(5))
        except ValueError:
            raise ValueError(f"handoff.hours: bad time in {spec!r}") from None
        tz = m.group("tz") or "Asia/Shanghai"
        try:
            ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"handoff.hours: unknown time zone {tz!r}") from None
        return cls(frozenset(days), start, end, tz, always=False)

    def is_open(self, now: float) -> bool:
        if self.always:
            return True
        local = dt.datetime.fromtimestamp(now, ZoneInfo(self.tz))
        return local.weekday() in self.days and self.start <= local.time().replace(tzinfo=None) < self.end

    def describe(self) -> str:
        """In Chinese, e.g. 周一至周五 08:30–17:30（北京时间）."""
        if self.always:
            return "全天"
        days = sorted(self.days)
        if len(days) == 7:
            when = "每天"
        elif days == list(range(days[0], days[-1] + 1)):
            when = f"{_DAY_NAMES[days[0]]}至{_DAY_NAMES[days[-1]]}"
        else:
            when = "、".join(_DAY_NAMES[d] for d in days)
        zone = "北京时间" if self.tz in ("Asia/Shanghai", "Asia/Chongqing", "PRC") else self.tz
        return f"{when} {self.start:%H:%M}–{self.end:%H:%M}（{zone}）"


class HandoffService:
    """Hand-off operations shared by the engine, the staff console and bridges."""

    def __init__(self, store: HandoffStore, bus: EventBus, *, hours: OfficeHours | None = None,
                 agents_online: Callable[[], int] | None = None, deliver: Deliver | None = None,
                 clock: Callable[[], float] = time.time, max_reply_chars: int = MAX_REPLY_CHARS,
                 staff: Any = None) -> None:
        self.store, self.bus = store, bus
        self.hours = hours or OfficeHours()
        self.staff = staff  # handlers.staff.StaffAccounts whose presence counts (the console signs in against it)
        self.agents_online = agents_online or ((lambda: len(staff.online())) if staff is not None else (lambda: 0))
        self.deliver = deliver
        self.clock = clock
        self.max_reply_chars = max_reply_chars
        self.listeners: list[Callable[[str, Handoff, HandoffMessage | None], None]] = []
        self.redelivery: Any = None   # a handlers.redelivery.Redeliverer: failed pushes are kept and sent again

    # ---- events -------------------------------------------------------------------------

    def _event(self, kind: str, h: Handoff, message: HandoffMessage | None = None) -> None:
        """Tell consoles (bus topic ``staff``) and listeners (e.g. a help-desk bridge)."""
        event: dict[str, Any] = {"type": kind, "handoff": _summary(h)}
        if message is not None:
            event["message"] = message.to_dict()
        try:
            self.bus.publish(STAFF_TOPIC, event)
        except BusError as e:
            log.error("hand-off %s: staff event not published: %s", h.id, e)
        for listener in self.listeners:
            try:
                listener(kind, h, message)
            except Exception:  # noqa: BLE001 - a listener never breaks a turn
                log.exception("hand-off listener failed on %s", kind)

    def _push(self, h: Handoff, replies: Sequence[Reply], message_id: int | None = None) -> None:
        """Push replies to the user through their channel (never raises). With redelivery on, a push
        that fails for a passing reason is kept and sent again, and one behind a kept push waits."""
        if self.deliver is None:
            log.warning("hand-off %s: no delivery configured for channel %s", h.id, h.channel)
            return
        if self.redelivery is not None and self._waiting(h):
            self._keep(h, replies, message_id, self.clock(),
                       "这条消息还没有送达用户：前面还有消息在等待补发，恢复后会按顺序补发给用户。")
            return
        try:
            self.deliver(h.channel, h.address, list(replies))
        except Exception as e:  # noqa: BLE001 - a failed push never fails the agent's action
            log.error("hand-off %s: delivery to %s failed (%s)", h.id, h.channel, e.__class__.__name__)
            if isinstance(e, Undeliverable):
                self.notice(h, f"这条消息没有送达用户：{e.reason}。")
            elif self.redelivery is None:
                self.notice(h, "这条消息没有送达用户：发送失败，请稍后再试或改用其他方式联系用户。")
            else:
                self._keep(h, replies, message_id, self.clock() + self.redelivery.wait_after(1),
                           "这条消息没有送达用户：发送失败（推送通道暂时不可用），系统会自动重试，送达后会提示“已补发给用户”。")

    def _waiting(self, h: Handoff) -> bool:
        """Whether earlier pushes to this hand-off wait to be sent again (a store failure: none known)."""
        try:
            return self.store.pushes_waiting(h.id) > 0
        except HandoffError as e:
            log.warning("hand-off %s: kept pushes not readable (%s)", h.id, e.__class__.__name__)
            return False

    def _keep(self, h: Handoff, replies: Sequence[Reply], message_id: int | None, due: float, notice: str) -> None:
        """Keep a push for redelivery (due at ``due``) and tell staff; when it cannot be kept, say so."""
        from .redelivery import replies_body

        try:
            self.store.queue_push(h.id, h.channel, h.address, replies_body(replies), message_id, due)
        except HandoffError as e:
            log.error("hand-off %s: push not kept for redelivery (%s)", h.id, e.__class__.__name__)
            self.notice(h, "这条消息没有送达用户：发送失败，且暂时无法保存以便补发，请稍后再试或改用其他方式联系用户。")
            return
        self.notice(h, notice)
        self.redelivery.wake()

    def notice(self, h: Handoff, text: str) -> None:
        """A system line that staff see live in the conversation (not sent to the user)."""
        try:
            m = self.store.add_message(h.id, "system", "系统", text)
        except HandoffError as e:  # closed meanwhile: the log line above is all there is
            log.warning("hand-off %s: notice not stored: %s", h.id, e.__class__.__name__)
            return
        self._event("message", h, m)

    # ---- engine side ----------------------------------------------------------------------

    def open(self, new: NewHandoff) -> Handoff:
        """A conversation joins the queue."""
        h = self.store.create(new)
        log.info("hand-off %s opened (%s, %s)", h.id, h.channel, h.reason)
        self._event("created", h)
        return h

    def get_open(self, handoff_id: str) -> Handoff | None:
        """The hand-off when it is still waiting or active."""
        h = self.store.get(handoff_id)
        return h if h is not None and h.is_open else None

    def from_user(self, h: Handoff, text: str) -> HandoffMessage:
        """A (masked) user message during the hand-off; staff see it live."""
        m = self.store.add_message(h.id, "user", "用户", text)
        self._event("message", self.store.get(h.id) or h, m)
        return m

    def leave(self, h: Handoff, why: str | None = None) -> Handoff:
        """The user goes back to the bot (取消转人工 / 结束) or leaves the channel: the hand-off is
        abandoned; ``why`` (e.g. 用户已取消关注公众号) is a system line staff see first."""
        if why:
            self.notice(h, why)
        done = self.store.finish(h.id, "abandoned", "user_left")
        self._event("closed", done)
        return done

    def status_text(self, h: Handoff) -> str:
        """Where the user stands, told honestly: queue place, office hours, nobody signed in."""
        if h.status == "active":
            return f"人工客服 {h.agent} 正在为您服务，请直接输入您的问题。"
        place = f"排在第 {max(1, self.store.position(h.id))} 位"
        if not self.hours.is_open(self.clock()):
            return (f"现在不是人工客服工作时间（{self.hours.describe()}）。您的会话已保留在队列中（{place}），"
                    "工作人员上班后会在本对话中回复您。")
        try:
            online = self.agents_online()
        except Exception:  # noqa: BLE001 - unknown presence: say nothing false
            log.exception("could not count agents online")
            online = 1
        if online <= 0:
            return f"目前没有人工客服在线。您的会话已排队（{place}），客服上线后会在本对话中回复您。"
        return f"您目前{place}，请稍候，工作人员接入后会在本对话中回复您。"

    # ---- staff side -------------------------------------------------------------------------

    def list(self, status: str, limit: int = 100) -> list[Handoff]:
        return self.store.list(status, limit)

    def get(self, handoff_id: str, after: int = 0) -> tuple[Handoff, list[HandoffMessage]]:
        """The hand-off and its messages; ``HandoffNotFound`` when unknown."""
        h = self.store.get(handoff_id)
        if h is None:
            raise HandoffNotFound(handoff_id)
        return h, self.store.messages(handoff_id, after)

    def claim(self, handoff_id: str, agent: str) -> Handoff:
        """Take a waiting conversation (exactly one of concurrent claims wins)."""
        before = self.store.get(handoff_id)
        h = self.store.claim(handoff_id, agent)
        if before is not None and before.status == "waiting":
            m = self.store.add_message(h.id, "system", agent, f"人工客服 {agent} 已接入")
            self._event("claimed", h, m)
            self._push(h, [Reply(f"人工客服 {agent} 已接入，正在查看您的问题，请稍候。", intent="handoff")], m.id)
        return h

    def reply(self, handoff_id: str, agent: str, text: Any) -> HandoffMessage:
        """An agent's message to the user (claims a waiting conversation first)."""
        if not isinstance(text, str) or not text.strip():
            raise ReplyRejected("回复内容不能为空。")
        text = text.strip()
        if len(text) > self.max_reply_chars:
            raise ReplyRejected(f"回复过长（{len(text)} 字），请控制在 {self.max_reply_chars} 字以内，内容已保留在输入框中。")
        h = self.store.get(handoff_id)
        if h is None:
            raise HandoffNotFound(handoff_id)
        if h.status == "waiting":
            h = self.claim(handoff_id, agent)
        elif h.status == "active" and h.agent != agent:
            raise HandoffConflict(handoff_id)
        elif not h.is_open:
            raise HandoffClosed(handoff_id)
        m = self.store.add_message(h.id, "agent", agent, text)
        self._event("message", h, m)
        self._push(h, [Reply(text, author=f"人工客服 {agent}", intent="handoff")], m.id)
        return m

    def _finish(self, handoff_id: str, agent: str, resolution: str, admin: bool, notice: str) -> Handoff:
        h = self.store.get(handoff_id)
        if h is None:
            raise HandoffNotFound(handoff_id)
        if h.status == "active" and h.agent != agent and not admin:
            raise HandoffConflict(handoff_id)
        done = self.store.finish(handoff_id, "closed", resolution, agent)
        self._event("closed", done)
        self._push(h, [Reply(notice, intent="handoff_closed")])  # the address as it was: the store forgot it
        return done

    def close(self, handoff_id: str, agent: str, resolution: str, admin: bool = False) -> Handoff:
        """End the conversation with a resolution tag; the bot answers the user again."""
        if resolution not in RESOLUTIONS or resolution in ("back_to_bot", "user_left"):
            raise ReplyRejected("请选择有效的结束原因。")
        return self._finish(handoff_id, agent, resolution, admin,
                            "人工客服已结束本次对话，感谢您的耐心。如还有其他问题，可以直接问我（智能助手）。")

    def hand_back(self, handoff_id: str, agent: str, admin: bool = False) -> Handoff:
        """Return the user to the bot (e.g. a guided flow can finish the job)."""
        return self._finish(handoff_id, agent, "back_to_bot", admin,
                            "人工客服已将您转回智能助手。您可以继续提问，或按提示办理业务。")


def _summary(h: Handoff) -> dict[str, Any]:
    d = h.to_dict()
    d.pop("transcript", None)
    return d


def build_service(cfg: Mapping[str, Any], *, store: HandoffStore | None = None, bus: EventBus | None = None,
                  agents_online: Callable[[], int] | None = None, clock: Callable[[], float] = time.time,
                  ) -> HandoffService:
    """The service as configured: store from ``handoff.database_url``/``DATABASE_URL``, bus from ``sessions``,
    office hours from ``handoff.hours``, presence from the staff accounts in the same database (or their
    in-memory twin, which the console then shares)."""
    from settings import HandoffConfig

    from .db import database_url, shared
    from .events import build_bus
    from .handoffs import SqlHandoffStore
    from .staff import build_staff_store

    h = HandoffConfig.of(cfg)
    url = database_url(cfg)
    if store is None:
        store = MemoryHandoffStore(clock) if url.startswith("memory:") else SqlHandoffStore(shared(url), clock)
    staff = build_staff_store(getattr(store, "db", None), clock)   # the in-memory twin for memory://
    service = HandoffService(store, bus or build_bus(cfg), hours=OfficeHours.parse(h.hours),
                             agents_online=agents_online, clock=clock, max_reply_chars=h.max_reply_chars, staff=staff)
    from .helpdesk import attach
    attach(service, cfg)   # the help-desk webhook listens when handoff.webhook_url is set
    return service


def memory_service(clock: Callable[[], float] = time.time, **kwargs: Any) -> HandoffService:
    """An in-process service (tests, the terminal chat)."""
    return HandoffService(MemoryHandoffStore(clock), MemoryBus(), clock=clock, **kwargs)
