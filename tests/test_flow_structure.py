"""Flow tables are checked at construction: a mistyped step or flow name fails at import; a session
saved under a flow or step that no longer exists is dropped with a restart message, not a crash."""
from __future__ import annotations

import inspect
import typing

import pytest

from accounts.local import LocalAccountClient
from handlers.flows import FLOWS
from handlers.flows.base import Act, Ask, Ctx, Finish, Flow, Goto, Input, step_targets
from handlers.flows.common import require_login, send_sms
from support import make_engine
from handlers.types import Message, Reply


def _prompt(ctx: Ctx) -> Reply:
    return ctx.say("?")


def _to_typo(ctx: Ctx, inp: Input) -> Goto:
    return Goto("confrim")


def _login_then_typo(ctx: Ctx) -> Goto:
    return require_login(ctx, "confrim")


def _send_to_typo(ctx: Ctx) -> Goto:
    return send_sms(ctx, "t", lambda: None, "challenge", "cdoe", "x")   # send_sms → sent → Goto(code_step)


def _made(then: str):  # type: ignore[no-untyped-def]
    def handle(ctx: Ctx, inp: Input) -> Goto:
        return Goto(then)
    return handle


def test_a_mistyped_goto_fails_when_the_flow_is_built():
    with pytest.raises(ValueError, match=r"step 'ask' goes to unknown step\(s\) \['confrim'\]"):
        Flow("t", "测试", "ask", {"ask": Ask(_prompt, _to_typo), "confirm": Act(lambda ctx: Finish())})
    with pytest.raises(ValueError, match="confrim"):   # a name handed to a helper that goes there
        Flow("t", "测试", "go", {"go": Act(_login_then_typo), "login_username": Act(lambda ctx: Finish())})
    with pytest.raises(ValueError, match="cdoe"):      # a name a helper hands on to another helper
        Flow("t", "测试", "go", {"go": Act(_send_to_typo), "code": Act(lambda ctx: Finish())})
    with pytest.raises(ValueError, match="nowhere"):   # a name closed over by a step factory
        Flow("t", "测试", "ask", {"ask": Ask(_prompt, _made("nowhere"))})
    assert Flow("t", "测试", "ask", {"ask": Ask(_prompt, _made("ask"))}).first == "ask"


def test_the_real_flows_name_their_targets_and_all_exist():
    targets = {t for f in FLOWS.values() for s in f.steps.values()
               for fn in ((s.prompt, s.handle) if isinstance(s, Ask) else (s.run,)) for t in step_targets(fn)}
    assert len(targets) > 20 and "code" in targets  # the check sees the tables' step names


@pytest.mark.parametrize("saved", [{"name": "no_such_flow", "step": "x"},
                                   {"name": "recover_username", "step": "no_such_step"}])
def test_a_session_saved_under_a_gone_flow_or_step_restarts_cleanly(tmp_path, saved):
    engine = make_engine(LocalAccountClient(), data_dir=tmp_path)
    flow = {**saved, "data": {"name": "张三"}, "history": [], "invalid": 0, "key": "k", "touched": engine.clock()}
    engine.store.save("old", {"flow": flow, "transcript": []}, 600)
    replies = engine.handle("old", Message.from_text("你好"))
    assert "重新开始" in replies[0].text
    assert "flow" not in engine.store.get("old")


def _step_functions():
    seen = {}
    for flow in FLOWS.values():
        for name, step in flow.steps.items():
            asks = (step.prompt, step.handle, *filter(None, (step.again,))) if isinstance(step, Ask) else ()
            for fn in asks or (step.run,):
                fn = inspect.unwrap(fn)
                seen.setdefault(f"{fn.__module__}.{fn.__qualname__}", (f"{flow.name}.{name}", fn))
        if flow.relogin is not None:
            seen.setdefault(flow.relogin.__qualname__, (f"{flow.name} relogin", flow.relogin))
    return seen.values()


def test_every_step_is_one_small_typed_function_with_a_one_line_docstring():
    functions = list(_step_functions())
    assert len(functions) > 50
    for where, fn in functions:
        doc = (fn.__doc__ or "").strip()
        assert doc and "\n" not in doc, f"{where}: {fn.__qualname__} needs a one-line docstring"
        hints = typing.get_type_hints(fn)
        assert "return" in hints and len(hints) == fn.__code__.co_argcount + 1, f"{where}: {fn.__qualname__} untyped"
        assert len(inspect.getsource(fn).splitlines()) <= 30, f"{where}: {fn.__qualname__} is not small"
