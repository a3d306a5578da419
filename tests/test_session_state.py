"""The session state is typed and versioned (handlers.state): it round-trips through JSON, a session
saved under a schema this version cannot read is dropped with a restart message (never a crash), the
layout from before versioning is migrated, and a flow step cannot write the engine's fields."""
from __future__ import annotations

import json

import pytest

from accounts.base import Unauthorized
from handlers.engine import STATE_DROPPED, STATE_RESET
from handlers.flows import FLOWS
from handlers.flows.base import Ctx
from handlers.state import SCHEMA_VERSION, FlowState, Incompatible, Login, LoginSlot, Reach, SessionState
from handlers.types import Message
from support import Chat, login


def full_state() -> SessionState:
    return SessionState(
        flow=FlowState(name="recover_password", step="code", data={"username": "zhangsan01", "n": 3},
                       history=["username", "name"], invalid=2, idempotency_key="k1", touched=1.5),
        login=Login("tok", 99.0), reach=Reach("telegram", "42"), client_id="c", handoff="h1", topic="t",
        answered="re_register.how", offer="bind_account", offer_data={"provider": "wechat"}, texted="recover_username",
        vote_for="e1",
        last_event="api_failure", prev_event="not_helpful",
        oos_streak=2, labels={"fb:up:e1": "有帮助"}, feedback_open=["e1"], choices=["faq:e1", "handoff"],
        transcript=[["用户", "你好"]])


def test_the_state_round_trips_through_json_text():
    state = full_state()
    saved = json.loads(json.dumps(state.to_json(), ensure_ascii=False))
    assert saved["v"] == SCHEMA_VERSION
    assert SessionState.from_json(saved) == state


def test_empty_fields_are_left_out_of_the_saved_json():
    assert SessionState().to_json() == {"v": SCHEMA_VERSION}
    assert SessionState.from_json({"v": SCHEMA_VERSION}) == SessionState()


def test_the_saved_dict_is_a_copy_not_the_live_state():
    state = full_state()
    saved = state.to_json()
    saved["flow"]["data"]["username"] = "x"
    saved["transcript"].append(["助手", "y"])
    assert state.flow.data["username"] == "zhangsan01" and len(state.transcript) == 1


@pytest.mark.parametrize("raw", [
    {"v": 99, "flow": {"name": "recover_password", "step": "code"}},          # a newer schema
    {"v": 0, "transcript": []},                                              # an unknown older one
    {"v": "1"},                                                               # not a version
    {"v": SCHEMA_VERSION, "flow": {"name": "recover_password", "step": 5}},   # a field of the wrong type
    {"v": SCHEMA_VERSION, "flow": {"step": "code"}},                          # a flow without its name
    {"v": SCHEMA_VERSION, "transcript": [["用户"]]},                           # a transcript line not a pair
    {"v": SCHEMA_VERSION, "oos_streak": True},
])
def test_what_this_version_cannot_read_is_incompatible(raw):
    with pytest.raises(Incompatible) as e:
        SessionState.from_json(raw)
    assert e.value.had_flow == bool(raw.get("flow"))


def test_a_session_of_an_unknown_schema_version_restarts_cleanly(engine):
    engine.store.save("newer", {"v": 99, "flow": {"name": "recover_username", "step": "id_type",
                                                  "data": {"name": "张三"}}, "transcript": []}, 600)
    replies = engine.handle("newer", Message.from_text("你好"))
    assert replies[0].text == STATE_DROPPED and len(replies) > 1   # then the greeting is answered
    saved = engine.store.get("newer")
    assert saved["v"] == SCHEMA_VERSION and "flow" not in saved
    assert "张三" not in json.dumps(saved, ensure_ascii=False)


def test_an_unreadable_session_without_a_flow_restarts_with_its_own_message(engine):
    engine.store.save("odd", {"v": SCHEMA_VERSION, "labels": ["not", "a", "dict"]}, 600)
    replies = engine.handle("odd", Message.from_text("你好"))
    assert replies[0].text == STATE_RESET and "重新开始" in STATE_RESET
    assert engine.store.get("odd")["v"] == SCHEMA_VERSION


def test_a_session_with_a_gone_step_in_the_current_schema_restarts_cleanly(engine):
    engine.store.save("gone", {"v": SCHEMA_VERSION, "flow": {"name": "recover_username", "step": "no_such",
                                                             "data": {"name": "张三"}}}, 600)
    assert engine.handle("gone", Message.from_text("你好"))[0].text == STATE_DROPPED
    assert "flow" not in engine.store.get("gone")
    assert not engine.expects_image("gone")


def test_a_session_saved_before_versioning_is_migrated_and_its_flow_goes_on(engine, acc, clock):
    chat = Chat(engine)
    engine.store.save(chat.session_id, {
        "flow": {"name": "recover_username", "step": "id_type", "data": {"name": "张三"}, "history": ["name"],
                 "invalid": 0, "key": "old-key", "touched": clock.now},
        "auth": {"token": "tok", "until": clock.now + 600}, "reach": {"channel": "web", "address": "a"},
        "transcript": [["用户", "找回用户名"]]}, 600)
    state = SessionState.from_json(engine.store.get(chat.session_id))
    assert state.flow.idempotency_key == "old-key" and state.login == Login("tok", clock.now + 600)
    chat.say("居民身份证")
    assert chat.flow_step == ("recover_username", "id_number") and "系统已更新" not in chat.text
    saved = engine.store.get(chat.session_id)
    assert saved["v"] == SCHEMA_VERSION and saved["login"]["token"] == "tok" and "auth" not in saved
    assert saved["flow"]["data"]["name"] == "张三" and saved["transcript"][0] == ["用户", "找回用户名"]


def test_a_store_value_that_makes_the_loader_fail_never_escapes_the_engine(engine, monkeypatch):
    engine.store.save("s", {"v": SCHEMA_VERSION}, 600)

    def broken(raw):
        raise KeyError("a bug while reading")
    monkeypatch.setattr(SessionState, "from_json", staticmethod(broken))
    replies = engine.handle("s", Message.from_text("你好"))
    assert replies[0].text == STATE_RESET


def test_a_flow_step_cannot_write_the_engines_fields():
    assert "session" not in Ctx.__dataclass_fields__   # a step gets its flow's data and the login only
    with pytest.raises(AttributeError):
        SessionState().handoff_by_flow = "x"              # typed: no field appears by assignment
    state = SessionState(flow=FlowState("recover_password", "code"))
    ctx = Ctx(flow="recover_password", data=state.flow.data, accounts=None, idempotency_key="k",  # type: ignore
              now=100.0, login_slot=LoginSlot(state))
    ctx.data["handoff"] = "x"
    ctx.login("tok", 600)
    assert state.handoff is None and state.flow.data == {"handoff": "x"}
    assert state.login == Login("tok", 100.0 + 600 - 30) and ctx.token == "tok"
    ctx.logout()
    assert state.login is None and ctx.token is None


def test_every_flow_with_the_chat_login_declares_how_to_log_in_again():
    for flow in FLOWS.values():
        assert ("login_username" in flow.steps) == (flow.relogin is not None), flow.name


def test_a_login_refused_mid_flow_logs_in_again_and_resumes_the_step(chat, acc):
    chat.say("怎么绑定微信")
    chat.press("开始绑定")   # (微信, named in the question, is not asked again)
    acc.fail["bind"].append(Unauthorized())
    login(chat, acc, "wangwu88", "13700137004")
    assert "登录已失效，请重新登录" in chat.text and chat.flow_step == ("bind_account", "login_username")
    login(chat, acc, "wangwu88", "13700137004")
    assert "请用微信扫描二维码完成绑定" in chat.text and chat.flow_step is None
