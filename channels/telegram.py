"""Telegram channel: a python-telegram-bot ``Application`` over the conversation engine.

- ``run_polling(cfg)`` for ``python bot.py telegram`` (development).
- ``TelegramChannel`` for the web app: its ``router()`` is the webhook
  ``POST {telegram.webhook_path}`` (production), checking Telegram's
  ``X-Telegram-Bot-Api-Secret-Token`` header; its ``send(chat_id, replies)`` pushes
  replies through the Bot API.
- ``build_application(cfg, engine, request=None)`` wires both; ``request`` (a
  ``telegram.request.BaseRequest``) replaces the HTTP client, e.g. in tests.

One private chat is one engine session (``tg-<chat id>``). Text → text message,
inline-keyboard button → button message, a photo (or an image sent as a file)
→ image message; ``/start``, ``/help``, ``/cancel``. Replies go out as Telegram
HTML (escaped, split under 4096 characters), buttons as an inline keyboard on
the last part. Anything else is answered with what the bot can take; updates
without a message (edits, member changes) are ignored.

Chats are served concurrently, each chat's updates one at a time in arrival order
(``PerChatUpdateProcessor``); a used keyboard is removed and a second tap on it
ignored; a 429 from the Bot API is waited out and retried (``AIORateLimiter``);
a photo is downloaded only while a flow waits for one.
"""
from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import hmac
import json
import logging
import os
import sys
from collections import OrderedDict
from typing import Any, Mapping, Sequence
from urllib.parse import urlsplit

# Durations as datetime.timedelta, the behaviour of python-telegram-bot's next major version (we read
# none ourselves; its own RetryAfter otherwise warns on every 429 from the Bot API).
os.environ.setdefault("PTB_TIMEDELTA", "true")

from fastapi import APIRouter, Request  # noqa: E402
from fastapi.responses import JSONResponse, Response
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, LinkPreviewOptions, Update
from telegram.constants import ParseMode
from telegram import BotCommand
from telegram.error import BadRequest, Forbidden, InvalidToken, NetworkError, TelegramError
from telegram.ext import (AIORateLimiter, Application, BaseUpdateProcessor, CallbackQueryHandler, CommandHandler,
                          ContextTypes, MessageHandler, filters)

from accounts.contract import MAX_IMAGE_BYTES
from handlers.types import Message, Reply, Undeliverable
from settings import TelegramConfig, WebConfig

from . import render
from .base import Channel, ConversationEngine, InputRejected, clean_payload, clean_text

log = logging.getLogger(__name__)

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
CALLBACK_LIMIT = 64  # bytes Telegram allows in callback_data

WELCOME = ("您好！我是**学信网账号助手**，可以解答学信网账号的常见问题，并一步步帮您办理：\n\n"
           "- 找回用户名、找回密码\n- 证件号码已被注册（身份证重复）的核验\n- 手机号已被注册、操作过于频繁、邮箱 IP 受限、绑定微信或支付宝\n\n"
           "请直接输入您的问题。")
HELP = ("直接输入您的问题即可，例如“忘记用户名怎么办”“证件号码已被注册”。\n\n"
        "- 点击消息下方的按钮进行选择\n- 需要上传证件照片时，直接发送照片\n"
        "- /cancel 结束当前办理流程\n- /start 查看欢迎说明")
UNSUPPORTED = "暂时只能处理文字、按钮和照片。请用文字描述您的问题，或在需要时发送证件照片。"
FAILED = "抱歉，服务暂时出现问题，请稍后再试。您刚才的消息没有丢失，可以稍后重新发送。"
STALE_BUTTON = "这个按钮已失效，请重新输入您的问题。"
USED_BUTTON = "这个按钮已经使用过了。"
NO_PHOTO_WANTED = ("目前不需要照片：我只在办理“客服协助验证”（上传身份证照片）时接收图片。"
                   "请用文字描述您的问题。")
TOO_LARGE = f"照片超过本助手接收的 {MAX_IMAGE_BYTES // (1024 * 1024)} MB，请压缩后重新发送。"
COMMANDS = (("start", "欢迎说明"), ("help", "使用帮助"), ("cancel", "结束当前办理"))
CANCEL_TEXT = "取消"  # the engine ends a flow on 取消/退出/算了


class TelegramConfigError(RuntimeError):
    """Telegram is not configured (no bot token)."""


def session_id(chat_id: int) -> str:
    """The engine session of one Telegram chat."""
    return f"tg-{chat_id}"


class CallbackData:
    """Button payloads ↔ callback_data: short payloads as they are, long ones by a digest kept in memory."""

    def __init__(self, capacity: int = 10_000) -> None:
        self._long: OrderedDict[str, str] = OrderedDict()
        self._capacity = capacity

    def encode(self, payload: str) -> str:
        if len(payload.encode()) <= CALLBACK_LIMIT and not payload.startswith("~"):
            return payload
        key = "~" + hashlib.sha256(payload.encode()).hexdigest()[:40]
        self._long[key] = payload
        self._long.move_to_end(key)
        while len(self._long) > self._capacity:
            self._long.popitem(last=False)
        return key

    def decode(self, data: str) -> str | None:
        """The payload behind ``data``; None when it was a digest we no longer hold."""
        return self._long.get(data) if data.startswith("~") else data


class PerChatUpdateProcessor(BaseUpdateProcessor):
    """Updates of different chats run concurrently; one chat's updates run one at a time, in the
    order they arrived (a second quick message, or a double tap, waits for the first)."""

    def __init__(self, max_concurrent_updates: int = 256) -> None:
        super().__init__(max_concurrent_updates)
        self._locks: dict[int, asyncio.Lock] = {}
        self._waiting: dict[int, int] = {}

    async def do_process_update(self, update: object, coroutine: Any) -> None:
        chat = getattr(update, "effective_chat", None)
        if chat is None:
            await coroutine
            return
        key = chat.id
        lock = self._locks.setdefault(key, asyncio.Lock())
        self._waiting[key] = self._waiting.get(key, 0) + 1
        try:
            async with lock:  # asyncio.Lock wakes waiters first come, first served
                await coroutine
        finally:
            self._waiting[key] -= 1
            if not self._waiting[key]:
                del self._waiting[key], self._locks[key]

    async def initialize(self) -> None:
        pass

    async def shutdown(self) -> None:
        pass


class Bridge:
    """The handlers: Telegram updates → engine messages, engine replies → Telegram messages."""

    def __init__(self, engine: ConversationEngine, web: WebConfig) -> None:
        self.engine, self.web, self.callbacks = engine, web, CallbackData()
        self._used: OrderedDict[tuple[int, int], None] = OrderedDict()  # keyboards already used

    def _first_use(self, chat_id: int, message_id: int) -> bool:
        """True the first time a keyboard message is used (a double tap is dropped)."""
        key = (chat_id, message_id)
        if key in self._used:
            return False
        self._used[key] = None
        while len(self._used) > 10_000:
            self._used.popitem(last=False)
        return True

    async def _ask(self, chat_id: int, message: Message) -> list[Reply] | None:
        message = dataclasses.replace(message, channel="telegram", address=str(chat_id),
                                      client=f"telegram:{chat_id}")   # client: the stable user key for limits
        try:
            return list(await asyncio.to_thread(self.engine.handle, session_id(chat_id), message))
        except Exception:  # noqa: BLE001 - the user gets an apology, the log the traceback
            log.exception("engine failed for a Telegram %s message", message.kind)
            return None

    async def _send(self, update: Update, context: ContextTypes.DEFAULT_TYPE, replies: list[Reply] | None) -> None:
        chat_id = update.effective_chat.id
        if replies is None:
            await context.bot.send_message(chat_id, FAILED)
            return
        for reply in replies:
            await self.send_reply(context.bot, chat_id, reply)

    async def send_reply(self, bot: Bot, chat_id: int | str, reply: Reply) -> None:
        """One engine reply as one or more HTML messages; the keyboard rides on the last one."""
        chunks = render.telegram_chunks(reply.text) or (["请选择："] if reply.buttons else [])
        markup = InlineKeyboardMarkup(
            [[InlineKeyboardButton(b.label, callback_data=self.callbacks.encode(b.payload))] for b in reply.buttons]
        ) if reply.buttons else None
        for i, chunk in enumerate(chunks):
            await bot.send_message(
                chat_id, chunk, parse_mode=ParseMode.HTML, link_preview_options=LinkPreviewOptions(is_disabled=True),
                reply_markup=markup if i == len(chunks) - 1 else None)

    async def _text(self, update: Update, context: ContextTypes.DEFAULT_TYPE, text: str) -> None:
        try:
            message = Message.from_text(clean_text(text, self.web.max_text_chars), **_origin(update))
        except InputRejected as e:
            await context.bot.send_message(update.effective_chat.id, e.message)
            return
        await self._send(update, context, await self._ask(update.effective_chat.id, message))

    async def start(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """/start: the welcome text."""
        await self.send_reply(context.bot, update.effective_chat.id, Reply(WELCOME))

    async def help(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """/help: what the bot takes and the commands."""
        await self.send_reply(context.bot, update.effective_chat.id, Reply(HELP))

    async def cancel(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """/cancel: ends the current flow, as typing 取消 does."""
        await self._text(update, context, CANCEL_TEXT)

    async def text(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """A text message → the engine."""
        await self._text(update, context, update.effective_message.text)

    async def button(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """An inline-keyboard press: answer the query, then the payload → the engine."""
        query = update.callback_query
        if update.effective_chat is None:
            await query.answer()
            return
        if query.message is not None and not self._first_use(update.effective_chat.id, query.message.message_id):
            await query.answer(USED_BUTTON)
            return
        await query.answer()
        if query.message is not None:  # a used keyboard goes away, so an old choice cannot be made again
            try:
                await query.edit_message_reply_markup(reply_markup=None)
            except TelegramError:
                log.info("could not remove a used keyboard", exc_info=log.isEnabledFor(logging.DEBUG))
        payload = self.callbacks.decode(query.data or "")
        try:
            message = Message.from_button(clean_payload(payload), **_origin(update))
        except InputRejected:
            await context.bot.send_message(update.effective_chat.id, STALE_BUTTON)
            return
        await self._send(update, context, await self._ask(update.effective_chat.id, message))

    async def image(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """A photo (largest size) or an image document → an image message."""
        msg = update.effective_message
        if msg.photo:
            largest = max(msg.photo, key=lambda p: (p.width * p.height, p.file_size or 0))
            file_id, size, name, ctype = largest.file_id, largest.file_size, "photo.jpg", "image/jpeg"
        else:
            doc = msg.document
            file_id, size = doc.file_id, doc.file_size
            name, ctype = doc.file_name or "upload", doc.mime_type or "application/octet-stream"
        if not await self._wants_photo(update.effective_chat.id):
            await context.bot.send_message(update.effective_chat.id, NO_PHOTO_WANTED)
            return
        if size and size > MAX_IMAGE_BYTES:
            await context.bot.send_message(update.effective_chat.id, TOO_LARGE)
            return
        try:
            data = bytes(await (await context.bot.get_file(file_id)).download_as_bytearray())
        except TelegramError:
            log.warning("could not download a Telegram photo", exc_info=True)
            await context.bot.send_message(update.effective_chat.id, "照片下载失败，请重新发送一次。")
            return
        await self._send(update, context, await self._ask(update.effective_chat.id, Message.from_image(data, name, ctype, **_origin(update))))

    async def _wants_photo(self, chat_id: int) -> bool:
        """True while the chat's flow waits for a photo (engines that cannot tell: always)."""
        expects = getattr(self.engine, "expects_image", None)
        if expects is None:
            return True
        try:
            return bool(await asyncio.to_thread(expects, session_id(chat_id)))
        except Exception:  # noqa: BLE001 - cannot tell: take the photo, the engine decides
            log.warning("could not tell whether a photo is expected", exc_info=True)
            return True

    async def unsupported(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Stickers, voice, locations…: say what the bot can take."""
        await context.bot.send_message(update.effective_chat.id, UNSUPPORTED)


async def _on_error(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Log handler errors (type and traceback only: no message content)."""
    log.error("Telegram update failed: %s", type(context.error).__name__, exc_info=context.error)


def _origin(update: Update) -> dict[str, str]:
    """``Message.channel``/``address`` for an update: the chat id is what ``send`` needs."""
    return {"channel": TelegramChannel.name, "address": str(update.effective_chat.id)}


def build_application(cfg: Mapping[str, Any], engine: ConversationEngine, request: Any = None) -> Application:
    """The Application with every handler; ``request`` replaces the Bot API HTTP client (tests)."""
    conf = TelegramConfig.of(cfg)
    if not conf.token:
        raise TelegramConfigError("未配置 Telegram 机器人令牌：请设置环境变量 TELEGRAM_BOT_TOKEN（config.yaml 的 telegram.token）。")
    bridge = Bridge(engine, WebConfig.of(cfg))
    builder = (Application.builder().token(conf.token).base_url(conf.base_url).base_file_url(conf.base_file_url)
               .concurrent_updates(PerChatUpdateProcessor()).rate_limiter(AIORateLimiter(max_retries=3))
               .post_init(register_commands))
    if request is not None:
        builder = builder.request(request).get_updates_request(request)
    app = builder.build()
    app.bot_data["bridge"] = bridge  # TelegramChannel.send renders through the same bridge
    private = filters.ChatType.PRIVATE
    app.add_handler(CommandHandler("start", bridge.start, filters=private))
    app.add_handler(CommandHandler("help", bridge.help, filters=private))
    app.add_handler(CommandHandler("cancel", bridge.cancel, filters=private))
    app.add_handler(CallbackQueryHandler(bridge.button))
    new_message = filters.UpdateType.MESSAGE & private
    app.add_handler(MessageHandler(new_message & filters.TEXT & ~filters.COMMAND, bridge.text))
    app.add_handler(MessageHandler(new_message & (filters.PHOTO | filters.Document.IMAGE), bridge.image))
    app.add_handler(MessageHandler(new_message & ~filters.COMMAND, bridge.unsupported))
    app.add_error_handler(_on_error)
    return app


async def register_commands(app: Application) -> None:
    """The command menu users see (setMyCommands); run once at start-up."""
    await app.bot.set_my_commands([BotCommand(name, text) for name, text in COMMANDS])


class _QuietStartup(logging.Filter):
    """Polling mode's log hygiene: a failed start-up is said in one line by run_polling, so the
    library's traceback of it is dropped; the bot token never appears in a line."""

    def __init__(self, token: str) -> None:
        super().__init__()
        self.token = token

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "Bootstrap" in message and record.exc_info:
            return False
        if self.token and self.token in message:
            record.msg, record.args = message.replace(self.token, "***"), ()
        return True


def configure_logging(token: str = "") -> None:
    """Polling mode's log: INFO lines on stderr; the HTTP client's request lines (their URLs carry
    the bot token) are not logged, nor a start-up failure's traceback."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        handler.addFilter(_QuietStartup(token))
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def run_polling(cfg: Mapping[str, Any]) -> int:
    """``python bot.py telegram``: long polling until Ctrl+C. A missing or refused token, or an
    unreachable Bot API, is one Chinese line on stderr and a non-zero exit (never the token)."""
    conf = TelegramConfig.of(cfg)
    configure_logging(conf.token)
    try:
        if not conf.token:
            raise TelegramConfigError("未配置 Telegram 机器人令牌：请设置环境变量 TELEGRAM_BOT_TOKEN 后重试。")
        from handlers.engine import build_engine
        from intents.live import watched_engine

        engine, live = watched_engine(cfg, build_engine)   # saved FAQ edits are swapped in here too
        app = build_application(cfg, engine)
    except TelegramConfigError as e:
        print(e, file=sys.stderr)
        return 2
    print("Telegram 机器人正在启动（长轮询），按 Ctrl+C 停止。", flush=True)
    if live is not None:
        live.start()
    try:
        app.run_polling(allowed_updates=["message", "callback_query"], drop_pending_updates=False)
    except InvalidToken:
        print("Telegram 拒绝了机器人令牌：请在 @BotFather 核对 TELEGRAM_BOT_TOKEN 后重试。", file=sys.stderr)
        return 2
    except NetworkError:  # also TimedOut
        print(f"无法连接 Telegram Bot API（{urlsplit(conf.base_url).netloc or conf.base_url}）："
              "请检查网络、代理或 telegram.base_url 后重试。", file=sys.stderr)
        return 3
    return 0


class TelegramChannel(Channel):
    """The web app's Telegram side: the webhook route, and pushes through the Bot API."""

    name = "telegram"

    def __init__(self, cfg: Mapping[str, Any], engine: ConversationEngine, request: Any = None) -> None:
        conf = TelegramConfig.of(cfg)
        self.path, self._secret = conf.webhook_path, conf.webhook_secret.encode()
        if not self._secret:
            log.warning("telegram.webhook_secret is empty: the webhook refuses every request")
        self.application = build_application(cfg, engine, request)
        self._bridge: Bridge = self.application.bot_data["bridge"]
        self._ready = False
        self._lock = asyncio.Lock()

    async def _ensure_ready(self) -> None:
        async with self._lock:
            if not self._ready:
                await self.application.initialize()
                self._ready = True
                try:  # the command menu, as polling mode registers it at start-up
                    await register_commands(self.application)
                except TelegramError:
                    log.warning("could not register the Telegram command menu (setMyCommands)")

    async def send(self, address: str, replies: Sequence[Reply]) -> None:
        """Send replies to chat ``address`` (the chat id) through the Bot API. ``Undeliverable`` when
        Telegram refuses for good (the user blocked the bot, the chat is gone: not worth retrying);
        another ``TelegramError`` (network, 5xx, flood control) when it may pass."""
        await self._ensure_ready()
        try:
            for reply in replies:
                if reply.author:  # a person's message says who wrote it
                    reply = dataclasses.replace(reply, text=f"**{reply.author}**：\n\n{reply.text}")
                await self._bridge.send_reply(self.application.bot, int(address), reply)
        except Forbidden as e:
            raise Undeliverable("用户已屏蔽机器人或删除了与机器人的对话，Telegram 不允许再向其发送消息") from e
        except BadRequest as e:
            raise Undeliverable("Telegram 拒绝了这条消息（对话不存在或内容无效）") from e

    async def webhook(self, request: Request) -> Response:
        """One webhook call: 403 on a wrong secret, 400 on a malformed update, else 200 after processing."""
        given = request.headers.get(SECRET_HEADER, "").encode()
        if not self._secret or not hmac.compare_digest(given, self._secret):
            return JSONResponse({"error": "forbidden", "message": "密钥校验失败。"}, status_code=403)
        try:
            data = json.loads(await request.body())
            await self._ensure_ready()
            update = Update.de_json(data, self.application.bot)
        except (ValueError, TypeError, KeyError, AttributeError):
            return JSONResponse({"error": "invalid_update", "message": "无法解析的 Telegram 更新。"}, status_code=400)
        # the same per-chat order as in polling mode
        await self.application.update_processor.process_update(update, self.application.process_update(update))
        return Response(status_code=200)

    def router(self) -> APIRouter:
        r = APIRouter()
        r.add_api_route(self.path, self.webhook, methods=["POST"])
        return r

    async def aclose(self) -> None:
        if self._ready:
            await self.application.shutdown()
            self._ready = False
