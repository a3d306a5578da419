"""config.yaml: one place for every setting, secrets from the environment, one typed model per section.

Values may reference environment variables as ``${NAME}`` or ``${NAME:-default}``.
``load()`` reads the file, expands the variables and checks the whole of it against
``Config`` (one pydantic model per section), so an unknown key or a bad value stops the
start with the key's path (``config.yaml: web.max_body_bytes: ...``). It returns plain
dicts; each component takes its typed section with ``WebConfig.of(cfg)`` (absent keys get
the defaults below; a key with no value, YAML ``~``, counts as absent; 0 stays 0).

The models live here, in a module that imports nothing of the project, so every component
(channels, handlers, intents, accounts) can import its own without an import cycle.
Adding a key: a field on its section model here and the line in config.yaml.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, ClassVar, Literal, Mapping, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

ROOT = Path(__file__).resolve().parent
DEFAULT_PATH = ROOT / "config.yaml"
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")

S = TypeVar("S", bound="Section")


class ConfigError(ValueError):
    """config.yaml is missing, malformed, names an unset variable without default,
    or has a key or value its section does not accept (the message names the key's path)."""


def _problems(e: ValidationError, prefix: str, key_prefix: str = "") -> str:
    """Pydantic's errors as ``section.key: message`` lines (``key_prefix`` before each top-level key)."""
    lines = []
    for err in e.errors():
        loc = [f"{key_prefix}{p}" if i == 0 else p for i, p in enumerate(err["loc"])]
        path = ".".join(str(p) for p in (prefix, *loc) if p != "")
        message = "unknown key" if err["type"] == "extra_forbidden" else err["msg"].removeprefix("Value error, ")
        lines.append(f"{path}: {message}")
    return "; ".join(lines)


class Section(BaseModel):
    """One section of config.yaml: unknown keys are errors, values are checked and converted."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: ClassVar[str] = ""

    @model_validator(mode="before")
    @classmethod
    def _absent_is_default(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            return {k: v for k, v in data.items() if v is not None}
        return data

    @classmethod
    def of(cls: type[S], cfg: Mapping[str, Any]) -> S:
        """This section of a loaded config (defaults when it is absent); ConfigError naming the key."""
        return cls.parse(section(cfg, cls.name), cls.name)

    @classmethod
    def parse(cls: type[S], values: Mapping[str, Any], where: str = "") -> S:
        """The section from its mapping; ConfigError naming the key (prefixed with ``where``)."""
        try:
            return cls.model_validate(dict(values))
        except ValidationError as e:
            raise ConfigError(f"config.yaml: {_problems(e, where or cls.name)}") from None


def _stripped(cls: type, v: str) -> str:
    """A secret or URL without the spaces a paste leaves around it."""
    return v.strip()


def _rooted(cls: type, v: str) -> str:
    """A URL path that starts with "/"."""
    return v if v.startswith("/") else "/" + v


def _http_url(value: str, key: str) -> str:
    if not re.match(r"https?://[^/\s]+", value):
        raise ValueError(f"{key} must be an http(s) URL")
    return value


# ---- faq/ and intents/ ----------------------------------------------------------------------

class FaqConfig(Section):
    """``faq``: where the maintainers' YAML is."""

    name: ClassVar[str] = "faq"
    dir: str = "faq/data"
    watch: bool = True                     # serve/demo: reload a saved edit without a restart
    watch_interval: float = Field(1.0, gt=0)   # seconds between checks of the files' modification times


class MatcherConfig(Section):
    """``matcher``: thresholds and every weight of the FAQ matcher (intents/matcher.py)."""

    name: ClassVar[str] = "matcher"
    answer_threshold: float = 0.5
    clarify_threshold: float = 0.5
    clarify_margin: float = 0.04
    one_word_margin: float = 0.10          # the same for a message of one word, which says less (身份证, 学信网)
    specific_weight: float = 0.35          # a rival explaining a part of what the best entry explains, short of words weighing this much (more than a one-character word): no choice
    max_candidates: int = Field(3, ge=0)
    prune_limit: int = Field(48, ge=1)     # questions scored in full after the inverted-index pre-selection
    # weights of the three pieces of evidence (sum to 1 with the keyword bonus capped)
    w_coverage: float = 0.35
    w_similarity: float = 0.65
    keyword_bonus: float = 0.10
    unknown_floor: float = 0.6             # least weight of a content word the FAQ never uses
    focus_tokens: int = Field(12, ge=1)    # beyond this many words, words the entry does not explain count less
    contrast_penalty: float = 0.45         # score factor when the question holds a contrast word the entry lacks
    anchor_penalty: float = 0.8            # score factor when the message lacks every word all the entry's questions use
    anchor_min_questions: int = Field(9, ge=1)  # ... counted for entries with at least this many questions
    suggest_threshold: float = 0.35        # out of scope: candidates below this are not worth suggesting
    follow_coverage: float = Field(1.0, ge=0, le=1)   # a follow-up no answer alone, read with the question answered before: share of its words' weight the entry must use
    window_discount: float = 0.95          # long messages: factor on the score of the question clause alone
    window_weight: float = 0.4             # long messages: share of the question clause in that score
    clause_weight: float = 0.5             # several clauses: share of the best single clause's score lifting the whole's
    clause_min_weight: float = 0.7         # ... a clause counts when its words weigh at least this much
    clause_max: int = Field(4, ge=0)       # ... the most informative clauses scored on their own, at most
    clause_span: float = 0.0               # ... lifting only entries the whole message scores this close to its best
    clause_min_tokens: int = Field(4, ge=2)  # ... in messages of at least this many words
    paired_span: float = 0.05              # an entry naming two of its paired keywords is the answer when this close to the best (0: off)
    long_tokens: int = Field(8, ge=1)      # a message of at least this many words is long: ...
    long_answer_threshold: float | None = 0.45  # ... answered from this score (None: answer_threshold, as any other)
    w_tfidf: float = 0.15                  # share of the character n-gram TF-IDF cosine in the final score
    # a word's weight: general informativeness g (jieba frequencies) times the FAQ's own specificity
    short_token_weight: float = 0.3        # weight of a one-character word or a number
    ascii_unknown_weight: float = 0.5      # g of a Latin-letter word jieba does not know
    min_general_weight: float = 0.3        # least g of any other word
    idf_base: float = 0.4                  # weight = g * (idf_base + idf_share * idf) for a word the FAQ uses
    idf_share: float = 0.6
    bigram_weight: float = 0.25            # pre-selection credit of a character bigram of an unknown word
    dilution_power: float = 0.5            # long messages: unexplained words count (focus_tokens / words) ** this
    # a question's similarity: token F1 and character similarity
    w_token_f1: float = 0.5                # similarity = w_token_f1 * F1 + w_char * character ratio
    w_char: float = 0.5
    partial_min_chars: int = 4             # a question this long or longer may match inside a longer message
    partial_length_ratio: float = 1.5      # ... when the message is this many times longer
    partial_discount: float = 0.85         # ... at this factor on the partial character ratio


# ---- accounts/ ---------------------------------------------------------------------------------

class AccountsConfig(Section):
    """``accounts``: where the account API is and how patient to be with it."""

    name: ClassVar[str] = "accounts"
    base_url: str = "http://127.0.0.1:8765"     # the sandbox's default address
    api_key: str = ""
    connect_timeout: float = Field(3.0, gt=0)
    read_timeout: float = Field(10.0, gt=0)
    retries: int = Field(2, ge=0)          # extra tries for GETs and idempotent POSTs
    backoff: float = Field(0.3, ge=0)      # seconds, doubled each retry

    @field_validator("base_url")
    @classmethod
    def _url(cls, v: str) -> str:
        return _http_url(v.rstrip("/"), "accounts.base_url")


class SandboxLimits(Section):
    """``sandbox.limits``: the sandbox's time limits and rate limits (counts per window in seconds)."""

    name: ClassVar[str] = "sandbox.limits"
    code_ttl: int = 300                    # SMS codes live 5 minutes
    code_attempts: int = 5                 # wrong codes before the challenge dies
    token_ttl: int = 1800                  # chat login token
    reset_ttl: int = 1800                  # password reset link
    recovery_per_identity: tuple[int, int] = (5, 600)
    login_per_username: tuple[int, int] = (5, 600)
    per_client: tuple[int, int] = (20, 600)   # recovery + login starts per X-Client-Id
    email_per_client: tuple[int, int] = (5, 3600)
    bind_after_recovery: int = 7200        # seed topic 7: bind WeChat/Alipay 2 hours after a recovery
    idempotency_ttl: int = 86400


class SandboxConfig(Section):
    """``sandbox``: ``python bot.py sandbox``, the account API twin."""

    name: ClassVar[str] = "sandbox"
    host: str = "127.0.0.1"
    port: int = Field(8765, ge=0, le=65535)
    database: str = "var/sandbox.db"
    api_key: str = ""
    admin_key: str = ""
    public_base_url: str = ""              # in reset / QR links; empty: http://host:port
    limits: SandboxLimits = SandboxLimits()

    @property
    def base_url(self) -> str:
        """Where the sandbox's links point."""
        return self.public_base_url or f"http://{self.host}:{self.port}"


# ---- handlers/ ---------------------------------------------------------------------------------

class SessionsConfig(Section):
    """``sessions``: where conversation state lives and how long; the engine's limits."""

    name: ClassVar[str] = "sessions"
    backend: Literal["sqlite", "redis", "memory"] = "sqlite"
    sqlite_path: str = "var/sessions.db"
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_prefix: str = "chsi-bot:"                # keys of this deployment in a shared Redis
    records_max_bytes: int = Field(10 * 1024 * 1024, gt=0)   # a record file is rotated past this size
    ttl_seconds: int = Field(86400, gt=0)          # a whole session expires after a day idle
    flow_idle_seconds: int = Field(1800, gt=0)     # a guided flow expires after 30 minutes idle
    max_invalid_tries: int = Field(3, ge=1)        # invalid answers at one prompt before offering a person
    data_dir: str = "var"                          # feedback and hand-off records
    max_text_chars: int = Field(2000, gt=0)        # the engine's own limit on one message
    transcript_turns: int = Field(20, ge=0)        # masked lines kept per session for a hand-off
    interrupt_min_score: float = 0.85              # a non-question at a prompt needs this score to be a question

    @field_validator("backend", mode="before")
    @classmethod
    def _lower(cls, v: Any) -> Any:
        return v.lower() if isinstance(v, str) else v


class HandoffConfig(Section):
    """``handoff``: what the user is told, and the bridge to an existing help desk."""

    name: ClassVar[str] = "handoff"
    message: str = "已为您转接人工客服，工作人员接入后会在本对话中回复您，请稍候。"
    webhook_url: str = ""                  # POST hand-off events here; empty = off
    webhook_secret: str = ""               # signs each body; required (16+ characters) with a URL
    webhook_timeout: float = Field(5.0, gt=0)
    webhook_retries: int = Field(6, ge=0)
    webhook_backoff: float = Field(1.0, gt=0)
    webhook_queue_size: int = Field(1000, ge=1)
    database_url: str = ""                 # hand-offs and staff; DATABASE_URL wins; empty: SQLite under var/
    hours: str = ""                        # office hours told to users ("Mon-Fri 08:30-17:30 Asia/Shanghai"); empty: always
    max_reply_chars: int = Field(2000, gt=0)   # longest staff reply
    api_token: str = ""                    # bearer token of /api/handoffs; empty = the API is off
    api_requests_per_minute: int = Field(120, ge=1)    # per client address, every /api/handoffs route
    api_failed_auth_per_minute: int = Field(10, ge=1)  # wrong or missing tokens per client address before 429
    timezone: str = "Asia/Shanghai"        # the staff console's times and the Overview's days, one zone everywhere
    redeliver_interval: float = Field(5.0, gt=0)       # first wait before a failed push to a user is tried again
    redeliver_max_interval: float = Field(60.0, gt=0)  # the wait doubles up to this
    redeliver_give_up: float = Field(3600.0, gt=0)     # seconds after the first failure: stop, and tell staff

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, v: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r} (e.g. Asia/Shanghai)") from None
        return v

    @field_validator("message")
    @classmethod
    def _message(cls, v: str) -> str:
        return v or cls.model_fields["message"].default

    @field_validator("webhook_url")
    @classmethod
    def _webhook_url(cls, v: str) -> str:
        v = v.strip()
        return _http_url(v, "webhook_url") if v else v

    @model_validator(mode="after")
    def _secret_with_url(self) -> "HandoffConfig":
        if self.webhook_url and len(self.webhook_secret) < 16:
            raise ValueError("handoff.webhook_url is set but HANDOFF_WEBHOOK_SECRET "
                             "(handoff.webhook_secret) is empty or shorter than 16 characters")
        return self


class _HandoffPart(BaseModel):
    """A part's view of the ``handoff`` section: its keys ``<prefix><field>`` (types, ranges and defaults
    are HandoffConfig's, so unknown keys and bad values are refused there, with their path)."""

    model_config = ConfigDict(frozen=True)
    prefix: ClassVar[str] = ""

    @classmethod
    def of(cls: type[P], cfg: Mapping[str, Any]) -> P:
        """The part from a loaded config; ConfigError naming the key."""
        values = HandoffConfig.of(cfg).model_dump()
        try:
            return cls.model_validate({k: values[cls.prefix + k] for k in cls.model_fields})
        except ValidationError as e:
            raise ConfigError(f"config.yaml: {_problems(e, 'handoff', cls.prefix)}") from None


P = TypeVar("P", bound=_HandoffPart)


class WebhookConfig(_HandoffPart):
    """``handoff.webhook_*``: the bridge to a help desk (handlers/webhook.py); off without a URL."""

    prefix: ClassVar[str] = "webhook_"
    url: str
    secret: str
    timeout: float          # seconds to connect and per read; a whole try ends within twice this
    retries: int            # extra tries after the first (about 63 s of waiting at backoff 1)
    backoff: float          # first wait in seconds, doubled each retry
    queue_size: int         # events waiting to be sent; beyond it new ones are dropped

    @property
    def enabled(self) -> bool:
        return bool(self.url)


class RedeliveryConfig(_HandoffPart):
    """``handoff.redeliver_*``: pushes to users that failed for a passing reason (the event bus down, a
    network error) are sent again from the hand-off store (handlers/redelivery.py)."""

    prefix: ClassVar[str] = "redeliver_"
    interval: float         # seconds before the first retry; doubled after each failed one
    max_interval: float     # the longest wait between two tries
    give_up: float          # seconds after the first failure: no more tries, staff are told


MIN_API_TOKEN_CHARS = 24


class HandoffApiConfig(_HandoffPart):
    """``handoff.api_*``: the help-desk API at /api/handoffs (channels/handoff_api.py); off without a token."""

    prefix: ClassVar[str] = "api_"
    token: str
    requests_per_minute: int        # per client address, every route
    failed_auth_per_minute: int     # per client address, wrong or missing token

    @field_validator("token")
    @classmethod
    def _long_enough(cls, v: str) -> str:
        if v and len(v) < MIN_API_TOKEN_CHARS:
            raise ValueError(f"HANDOFF_API_TOKEN must be at least {MIN_API_TOKEN_CHARS} characters; "
                             "make one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'")
        return v

    @property
    def enabled(self) -> bool:
        return bool(self.token)


class InsightsConfig(Section):
    """``insights``: turn events (masked) for the staff console and ``bot.py unanswered``."""

    name: ClassVar[str] = "insights"
    enabled: bool = True
    retention_days: float = Field(90, gt=0)            # older events are purged
    queue_size: int = Field(10000, ge=1)               # a full queue drops (and counts) events
    batch_size: int = Field(200, ge=1)
    purge_interval_seconds: float = Field(3600, gt=0)


class RateRule(Section):
    """One abuse limit: at most ``limit`` events in any ``window`` seconds (``{limit: 30, window: 60}``)."""

    limit: int = Field(ge=1)
    window: int = Field(ge=1)


class LimitsConfig(Section):
    """``limits``: the abuse limits (handlers/limits.py); each rule overrides its default as a whole."""

    name: ClassVar[str] = "limits"
    backend: Literal["auto", "memory", "sqlite", "redis"] = "auto"   # auto: redis with Redis sessions; sqlite under
                                                                     # `serve` with SQLite sessions; else memory
    redis_url: str = ""                                    # empty: sessions.redis_url
    sqlite_path: str = ""                                  # empty: beside sessions.sqlite_path (<name>.limits.db)
    chat_per_ip: RateRule = RateRule(limit=300, window=60)          # POST /api/chat from one address
    chat_per_session: RateRule = RateRule(limit=30, window=60)      # POST /api/chat in one conversation
    upload_per_ip: RateRule = RateRule(limit=20, window=600)        # POST /api/upload from one address
    upload_per_session: RateRule = RateRule(limit=6, window=600)    # POST /api/upload in one conversation
    session_per_ip: RateRule = RateRule(limit=60, window=60)        # POST /api/session from one address
    sms_per_client: RateRule = RateRule(limit=10, window=3600)      # SMS-sending steps by one client
    sms_per_target: RateRule = RateRule(limit=3, window=3600)       # SMS to one account, whoever asks
    lookup_per_client: RateRule = RateRule(limit=20, window=3600)   # account look-ups (login, recovery) by one client

    @field_validator("backend", mode="before")
    @classmethod
    def _lower(cls, v: Any) -> Any:
        return v.lower() if isinstance(v, str) else v

    @classmethod
    def rule_names(cls) -> tuple[str, ...]:
        return tuple(k for k, f in cls.model_fields.items() if f.annotation is RateRule)

    def rules(self, *, only_set: bool = False) -> dict[str, RateRule]:
        """Every rule by name (``only_set``: those the config names)."""
        return {k: getattr(self, k) for k in self.rule_names() if not only_set or k in self.model_fields_set}


# ---- channels/ ---------------------------------------------------------------------------------

class WebConfig(Section):
    """``web``: the web chat's address, limits and signing secret."""

    name: ClassVar[str] = "web"
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    public_url: str = "http://127.0.0.1:8000"
    cors_origins: tuple[str, ...] = ()
    max_body_bytes: int = Field(6 * 1024 * 1024, gt=0)   # /api/upload
    max_json_bytes: int = Field(64 * 1024, gt=0)         # every other request body
    max_text_chars: int = Field(2000, gt=0)
    session_secret: str = ""                             # empty: generated once into secret_file
    secret_file: str = "var/web_session.key"
    events_per_minute: int = Field(60, ge=1)             # GET /api/chat/events connections per client address
    trusted_proxies: str = "127.0.0.1"                   # X-Forwarded-For/-Proto believed from these (comma-separated
                                                         # addresses or networks; "" = from nobody)

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, v: str) -> str:
        return v.rstrip("/")

    @field_validator("cors_origins")
    @classmethod
    def _origins(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(o.rstrip("/") for o in v)


class StaffConfig(Section):
    """``staff``: the staff console at /staff."""

    name: ClassVar[str] = "staff"
    session_hours: float = Field(12.0, gt=0)   # a sign-in lasts this long
    rate_limit: int = Field(240, ge=1)         # staff requests per client address per minute
    login_rate_limit: int = Field(10, ge=1)    # sign-in attempts per client address per minute


class TelegramConfig(Section):
    """``telegram``: the bot token and the webhook."""

    name: ClassVar[str] = "telegram"
    token: str = ""
    webhook_secret: str = ""
    webhook_path: str = "/telegram/webhook"
    base_url: str = "https://api.telegram.org/bot"             # the Bot API (a local Bot API server, a stand-in)
    base_file_url: str = "https://api.telegram.org/file/bot"   # where files are downloaded from

    _strip = field_validator("token", "base_url", "base_file_url")(_stripped)
    _path = field_validator("webhook_path")(_rooted)


class WeChatConfig(Section):
    """``wechat``: the Official Account (公众号) channel; on when token, app_id and app_secret are set."""

    name: ClassVar[str] = "wechat"
    token: str = ""
    app_id: str = ""
    app_secret: str = ""
    aes_key: str = ""                      # EncodingAESKey (43 characters): safe mode; empty: plain mode
    path: str = "/wechat"
    base_url: str = "https://api.weixin.qq.com"
    passive_seconds: float = 4.0           # answer passively when the engine is done by then (WeChat waits 5 s)
    follow_up_delay: float = Field(0.3, ge=0)  # seconds from the passive reply to the customer-service messages
    max_body_bytes: int = Field(16384, gt=0)
    max_text_bytes: int = Field(2000, gt=0)    # WeChat takes at most 2048 bytes in a text message
    max_text_chars: int = Field(2000, gt=0)
    max_clock_skew: int = Field(300, ge=0)     # seconds a request's timestamp may be off (0: not checked)
    dedupe_seconds: int = Field(600, ge=0)
    token_refresh_margin: int = Field(300, ge=0)   # refresh the access_token this long before it expires
    http_timeout: float = Field(5.0, gt=0)
    media_max_bytes: int = Field(5 * 1024 * 1024, gt=0)
    msgmenu: bool = True                   # buttons as customer-service menus (False: numbered text)
    user_messages_per_minute: int = Field(30, ge=1)   # more from one user in a minute: "too fast", no engine turn
    sqlite_path: str = "var/wechat.db"

    _strip = field_validator("token", "app_id", "app_secret", "aes_key")(_stripped)
    _path = field_validator("path")(_rooted)

    @field_validator("aes_key")
    @classmethod
    def _aes_key(cls, v: str) -> str:
        if v and len(v) != 43:
            raise ValueError("an EncodingAESKey has 43 characters")
        return v

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, v: str) -> str:
        return v.rstrip("/")

    @property
    def enabled(self) -> bool:
        return bool(self.token and self.app_id and self.app_secret)


class MetricsConfig(Section):
    """``metrics``: ``GET /metrics`` (Prometheus) for operators; off by default, a bearer token when on."""

    name: ClassVar[str] = "metrics"
    enabled: bool = False
    token: str = ""

    @field_validator("enabled", mode="before")
    @classmethod
    def _empty_is_off(cls, v: Any) -> Any:
        return False if isinstance(v, str) and not v.strip() else v


class LoggingConfig(Section):
    """``logging``."""

    name: ClassVar[str] = "logging"
    level: Literal["CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG"] = "INFO"

    @field_validator("level", mode="before")
    @classmethod
    def _upper(cls, v: Any) -> Any:
        return v.upper() if isinstance(v, str) else v


class Config(Section):
    """The whole of config.yaml: its sections and nothing else."""

    faq: FaqConfig = FaqConfig()
    matcher: MatcherConfig = MatcherConfig()
    accounts: AccountsConfig = AccountsConfig()
    sandbox: SandboxConfig = SandboxConfig()
    sessions: SessionsConfig = SessionsConfig()
    handoff: HandoffConfig = HandoffConfig()
    insights: InsightsConfig = InsightsConfig()
    web: WebConfig = WebConfig()
    telegram: TelegramConfig = TelegramConfig()
    wechat: WeChatConfig = WeChatConfig()
    metrics: MetricsConfig = MetricsConfig()
    staff: StaffConfig = StaffConfig()
    limits: LimitsConfig = LimitsConfig()
    logging: LoggingConfig = LoggingConfig()


# ---- loading ----------------------------------------------------------------------------------------

def _expand(value: Any, where: str) -> Any:
    if isinstance(value, str):
        def sub(m: re.Match[str]) -> str:
            name, default = m.group(1), m.group(2)
            if name in os.environ:
                return os.environ[name]
            if default is None:
                raise ConfigError(f"{where}: environment variable {name} is not set and has no default")
            return default
        return _ENV.sub(sub, value)
    if isinstance(value, dict):
        return {k: _expand(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def load(path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Read config.yaml (or ``path``), expand ``${VAR:-default}``, check every section; plain dicts."""
    p = Path(path) if path else Path(os.environ.get("CHSI_BOT_CONFIG", DEFAULT_PATH))
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except FileNotFoundError as e:
        raise ConfigError(f"{p}: not found") from e
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: {e}") from e
    if not isinstance(raw, dict):
        raise ConfigError(f"{p}: top level must be a mapping")
    cfg = _expand(raw, p.name)
    Config.parse(cfg, "")
    return cfg


def resolve_path(value: str) -> Path:
    """A path from config: absolute as given, relative to the project root otherwise."""
    p = Path(value)
    return p if p.is_absolute() else ROOT / p


def server_secret(cfg: Mapping[str, Any]) -> bytes:
    """The secret every worker and instance must share (signed session ids, keyed hashes):
    ``web.session_secret`` (env WEB_SESSION_SECRET), else one generated once into ``web.secret_file``."""
    import secrets
    import time

    web = WebConfig.of(cfg)
    if web.session_secret:
        return web.session_secret.encode()
    path = resolve_path(web.secret_file or WebConfig().secret_file)
    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(50):
        try:
            value = path.read_text(encoding="ascii").strip()
            if len(value) >= 32:
                return value.encode()
        except FileNotFoundError:
            try:   # two workers racing: one creates the file, the other reads it
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                continue
            with os.fdopen(fd, "w", encoding="ascii") as f:
                f.write(secrets.token_hex(32) + "\n")
            continue
        time.sleep(0.05)   # being written by another worker
    raise ConfigError(f"{path}: unreadable session secret; set WEB_SESSION_SECRET")


def section(cfg: Mapping[str, Any], name: str) -> dict[str, Any]:
    """One section of the config as a dict (empty when absent); ``name`` may be dotted (``sandbox.limits``)."""
    value: Any = cfg
    for part in name.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
        value = value or {}
        if not isinstance(value, dict):
            raise ConfigError(f"config.yaml: section {name!r} must be a mapping")
    return dict(value)
