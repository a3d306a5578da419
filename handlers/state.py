"""A conversation's state between two messages: typed, versioned, stored as JSON (never pickle).

``SessionState`` holds the engine's own fields; ``FlowState`` the active guided flow: where it
stands (step, answers that did not fit, the step attempt's idempotency key, the way back) and
``data``, the flow's own values — personal data included — which go when the flow ends.
A flow step never sees this object: it gets ``handlers.flows.base.Ctx`` (its flow's ``data``
and the chat login), so a flow cannot write the engine's fields.

The session stores keep ``to_json()`` (a dict of JSON types); ``from_json()`` reads it back or
raises ``Incompatible`` for anything it cannot read: the engine then starts the conversation
afresh with a restart message. Adding a field: give it a default here and read it in
``from_json`` (old sessions get the default); changing what a field means: bump
``SCHEMA_VERSION`` (sessions saved under the old one are dropped, or migrate them in ``_migrate``).

Versions: 1 = this layout. A dict without ``"v"`` is the layout from before versioning (the same
fields, the chat login under ``"auth"`` and the step attempt's key under ``"key"``): migrated.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, TypeVar

SCHEMA_VERSION = 1

T = TypeVar("T")


class Incompatible(ValueError):
    """A saved state this version cannot read (unknown schema version, or a field of the wrong type).
    ``had_flow`` says whether it held a flow (the restart message is about that flow)."""

    def __init__(self, why: str, had_flow: bool) -> None:
        super().__init__(why)
        self.had_flow = had_flow


@dataclass(slots=True)
class Reach:
    """Where to push a later reply (a person's answer after a hand-off): the channel and its address."""

    channel: str
    address: str


@dataclass(slots=True)
class Login:
    """The chat login a flow made (the account service's token only, no personal data) and until when."""

    token: str
    until: float

    def valid(self, now: float) -> bool:
        """Still usable at ``now``."""
        return self.until > now


@dataclass(slots=True)
class FlowState:
    """The active guided flow."""

    name: str
    step: str | None = None                 # None only while the flow is being entered
    data: dict[str, Any] = field(default_factory=dict)   # the flow's own values (its steps' Ctx.data)
    history: list[str] = field(default_factory=list)     # the prompts "返回" goes back to
    invalid: int = 0                        # answers at this step that did not fit
    idempotency_key: str = ""               # of this step attempt (kept for "重试", new for each step)
    touched: float = 0.0                    # last message, for the idle expiry


@dataclass(slots=True)
class SessionState:
    """Everything the engine keeps about one conversation."""

    flow: FlowState | None = None
    login: Login | None = None              # the chat login (written only through Ctx.login/logout)
    reach: Reach | None = None
    client_id: str | None = None            # keyed hash of the channel's client (limits, account API)
    handoff: str | None = None              # the open hand-off's id
    topic: str | None = None                # the last FAQ topic answered (a hand-off's topic)
    answered: str | None = None             # the last FAQ entry answered outside a flow: a follow-up is read after it
    offer: str | None = None                # the flow just offered: a typed yes next starts it
    offer_data: dict[str, str] = field(default_factory=dict)   # … with what its question said for it (Flow.reads)
    texted: str | None = None               # the flow that last finished by SMS (找回用户名): "没收到" is about it
    vote_for: str | None = None             # the answer a typed 有帮助/没帮助 next is about
    last_event: str | None = None           # api_failure / not_helpful this turn …
    prev_event: str | None = None           # … and the turn before (a hand-off's reason)
    oos_streak: int = 0                     # out-of-scope answers in a row
    labels: dict[str, str] = field(default_factory=dict)   # button payload → the label the user saw
    feedback_open: list[str] = field(default_factory=list)  # answers that may still get their one vote
    choices: list[str] = field(default_factory=list)   # the last turn's buttons (no votes), as shown: 第二个 picks one
    transcript: list[list[str]] = field(default_factory=list)  # masked [who, text] lines

    def to_json(self) -> dict[str, Any]:
        """The state as JSON types, with its schema version; empty fields left out. Lists and dicts are
        copies (the dict saved is not the live state); the fields of known shape are copied flat (a
        turn saves the state, so this is on every request's path)."""
        out: dict[str, Any] = {"v": SCHEMA_VERSION}
        flow, login, reach = self.flow, self.login, self.reach
        if flow is not None:
            out["flow"] = {"name": flow.name, "step": flow.step, "data": _copy(flow.data), "history": list(flow.history),
                           "invalid": flow.invalid, "idempotency_key": flow.idempotency_key, "touched": flow.touched}
        if login is not None:
            out["login"] = {"token": login.token, "until": login.until}
        if reach is not None:
            out["reach"] = {"channel": reach.channel, "address": reach.address}
        for name in _SCALARS:
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        if self.oos_streak:
            out["oos_streak"] = self.oos_streak
        if self.labels:
            out["labels"] = dict(self.labels)
        if self.offer_data:
            out["offer_data"] = dict(self.offer_data)
        if self.feedback_open:
            out["feedback_open"] = list(self.feedback_open)
        if self.choices:
            out["choices"] = list(self.choices)
        if self.transcript:
            out["transcript"] = [list(line) for line in self.transcript]
        return out

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> "SessionState":
        """The state saved by ``to_json`` (or a migrated older layout); Incompatible when it cannot be read."""
        if not isinstance(raw, Mapping):
            raise Incompatible("not an object", False)
        had_flow = bool(raw.get("flow"))
        try:
            d = _migrate(dict(raw))
            flow = _opt(d, "flow", dict)
            login = _opt(d, "login", dict)
            reach = _opt(d, "reach", dict)
            return cls(
                flow=None if not flow else FlowState(
                    name=_req(flow, "name", str), step=_opt(flow, "step", str),
                    data=dict(_opt(flow, "data", dict) or {}), history=_list(flow, "history", str),
                    invalid=_opt(flow, "invalid", int) or 0,
                    idempotency_key=_opt(flow, "idempotency_key", str) or "",
                    touched=float(_opt(flow, "touched", (int, float)) or 0.0)),
                login=None if not login else Login(_req(login, "token", str),
                                                   float(_req(login, "until", (int, float)))),
                reach=None if not reach else Reach(_req(reach, "channel", str), _req(reach, "address", str)),
                client_id=_opt(d, "client_id", str), handoff=_opt(d, "handoff", str), topic=_opt(d, "topic", str),
                answered=_opt(d, "answered", str),
                offer=_opt(d, "offer", str), texted=_opt(d, "texted", str), vote_for=_opt(d, "vote_for", str),
                last_event=_opt(d, "last_event", str), prev_event=_opt(d, "prev_event", str),
                oos_streak=_opt(d, "oos_streak", int) or 0,
                labels=_str_map(d, "labels"), offer_data=_str_map(d, "offer_data"),
                feedback_open=_list(d, "feedback_open", str),
                choices=_list(d, "choices", str), transcript=_transcript(d))
        except Incompatible as e:
            raise Incompatible(str(e), had_flow) from None
        except (TypeError, ValueError) as e:  # e.g. a transcript line that is not a pair
            raise Incompatible(f"unreadable: {e.__class__.__name__}", had_flow) from None


_SCALARS = ("client_id", "handoff", "topic", "answered", "offer", "texted", "vote_for", "last_event", "prev_event")


def _migrate(d: dict[str, Any]) -> dict[str, Any]:
    """The current layout of an older saved state (Incompatible when there is no way)."""
    version = d.pop("v", None)
    if version is None:  # before versioning: the same fields under two older names
        if "auth" in d:
            d["login"] = d.pop("auth")
        if isinstance(d.get("flow"), dict) and "key" in d["flow"]:
            d["flow"] = {**d["flow"], "idempotency_key": d["flow"]["key"]}
            del d["flow"]["key"]
        return d
    if version != SCHEMA_VERSION or isinstance(version, bool):
        raise Incompatible(f"schema version {version!r} is not {SCHEMA_VERSION}", False)
    return d


def _copy(value: Any) -> Any:
    """A JSON-typed copy (lists and dicts copied, so the dict saved is not the live state)."""
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_copy(v) for v in value]
    return value


def _check(value: Any, kind: type[T] | tuple[type, ...], name: str) -> T:
    if not isinstance(value, kind) or isinstance(value, bool):  # (True is an int to isinstance)
        raise Incompatible(f"field {name} has the wrong type", False)
    return value  # type: ignore[return-value]


def _opt(d: Mapping[str, Any], name: str, kind: Any) -> Any:
    value = d.get(name)
    return None if value is None else _check(value, kind, name)


def _req(d: Mapping[str, Any], name: str, kind: Any) -> Any:
    if d.get(name) is None:
        raise Incompatible(f"field {name} is missing", False)
    return _check(d[name], kind, name)


def _list(d: Mapping[str, Any], name: str, kind: Any) -> list[Any]:
    values = _opt(d, name, list)
    if not values:
        return []
    if not all(isinstance(v, kind) and not isinstance(v, bool) for v in values):
        raise Incompatible(f"field {name} has the wrong type", False)
    return list(values)


def _str_map(d: Mapping[str, Any], name: str) -> dict[str, str]:
    values = _opt(d, name, dict)
    if not values:
        return {}
    if not all(isinstance(v, str) for v in values.values()):
        raise Incompatible(f"field {name} has the wrong type", False)
    return {str(k): v for k, v in values.items()}


def _transcript(d: Mapping[str, Any]) -> list[list[str]]:
    """The transcript's ``[who, text]`` lines (checked in one pass: about twenty lines per turn)."""
    lines = _opt(d, "transcript", list)
    if not lines:
        return []
    for line in lines:
        if not isinstance(line, list):
            raise Incompatible("field transcript has the wrong type", False)
        if len(line) != 2:
            raise ValueError("a transcript line is not a pair")
        if not (isinstance(line[0], str) and isinstance(line[1], str)):
            raise Incompatible("field transcript has the wrong type", False)
    return [[who, text] for who, text in lines]



class LoginSlot:
    """The one session field a flow step may change — its chat login — handed to the step's
    ``Ctx`` instead of the session (``Ctx.token``, ``Ctx.login``, ``Ctx.logout``)."""

    __slots__ = ("_state",)

    def __init__(self, state: SessionState | None = None) -> None:
        self._state = state if state is not None else SessionState()

    def get(self) -> Login | None:
        """The chat login, if any (valid or not)."""
        return self._state.login

    def set(self, login: Login | None) -> None:
        """Remember a chat login (None forgets it)."""
        self._state.login = login
