"""config.yaml through the section models: unknown keys and bad values stop the start with the
key's path, 0 stays 0, an absent key takes the default (equal to what config.yaml says)."""
from __future__ import annotations

import pytest
import yaml

import settings
from settings import (AccountsConfig, Config, ConfigError, HandoffApiConfig, HandoffConfig, LimitsConfig,
                      MatcherConfig, RateRule, SandboxConfig, SessionsConfig, TelegramConfig, WebConfig, WebhookConfig)


def write(tmp_path, mutate) -> str:
    cfg = yaml.safe_load((settings.ROOT / "config.yaml").read_text(encoding="utf-8"))
    mutate(cfg)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    return str(path)


def test_config_yaml_is_valid_and_its_literal_values_are_the_model_defaults():
    cfg = settings.load()
    raw = yaml.safe_load((settings.ROOT / "config.yaml").read_text(encoding="utf-8"))
    compared = 0
    for name, model in Config.model_fields.items():
        default = model.annotation()
        for key, value in (raw.get(name) or {}).items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                assert getattr(default, key) == value, f"{name}.{key}: model default differs from config.yaml"
                compared += 1
    assert compared >= 10, f"only {compared} numeric values of config.yaml were compared"
    assert MatcherConfig.of(cfg) == MatcherConfig()
    for name, rule in raw["limits"].items():
        if isinstance(rule, dict):
            assert getattr(LimitsConfig(), name) == RateRule(**rule), f"limits.{name}: model default differs"


@pytest.mark.parametrize("mutate, path", [
    (lambda c: c["web"].update(max_bodybytes=1), "web.max_bodybytes: unknown key"),
    (lambda c: c["sandbox"].setdefault("limits", {}).update(code_tll=5), "sandbox.limits.code_tll: unknown key"),
    (lambda c: c.update(telegarm={}), "telegarm: unknown key"),
    (lambda c: c["matcher"].update(answer_threshold="high"), "matcher.answer_threshold: "),
    (lambda c: c["web"].update(max_body_bytes=0), "web.max_body_bytes: Input should be greater than 0"),
    (lambda c: c["sessions"].update(backend="pickle"), "sessions.backend: "),
    (lambda c: c["limits"].update(chat_per_moon={"limit": 5, "window": 10}), "limits.chat_per_moon: unknown key"),
    (lambda c: c["limits"]["chat_per_ip"].update(limt=5), "limits.chat_per_ip.limt: unknown key"),
    (lambda c: c["limits"]["chat_per_ip"].update(limit=0), "limits.chat_per_ip.limit: Input should be greater than"),
    (lambda c: c["limits"].update(backend="disk"), "limits.backend: "),
    (lambda c: c["handoff"].update(webhook_url="https://desk.example/hook", webhook_secret="short"),
     "HANDOFF_WEBHOOK_SECRET"),
])
def test_a_bad_key_or_value_stops_loading_with_its_path(tmp_path, mutate, path):
    with pytest.raises(ConfigError) as e:
        settings.load(write(tmp_path, mutate))
    assert path in str(e.value)


def test_zero_stays_zero_and_an_empty_key_takes_the_default(tmp_path):
    cfg = settings.load(write(tmp_path, lambda c: (c["web"].update(port=0, max_text_chars=None),
                                                   c["sessions"].update(transcript_turns=0),
                                                   c["accounts"].update(retries=0))))
    assert WebConfig.of(cfg).port == 0 and WebConfig.of(cfg).max_text_chars == 2000
    assert SessionsConfig.of(cfg).transcript_turns == 0 and AccountsConfig.of(cfg).retries == 0


def test_sections_normalise_what_they_always_did():
    assert WebConfig.parse({"public_url": "https://x.cn/", "cors_origins": ["https://a.cn/"]}).cors_origins == ("https://a.cn",)
    assert TelegramConfig.parse({"token": " t ", "webhook_path": "hook"}) == TelegramConfig(token="t", webhook_path="/hook")
    assert HandoffConfig.parse({"message": ""}).message == HandoffConfig().message
    assert SandboxConfig.parse({"port": 9000}).base_url == "http://127.0.0.1:9000"
    assert SessionsConfig.parse({"backend": "Redis"}).backend == "redis"
    assert AccountsConfig.of({}).base_url == "http://127.0.0.1:8765"  # the sandbox, as in config.yaml
    assert LimitsConfig.parse({"backend": "Redis"}).backend == "redis"


def test_a_limits_rule_set_in_config_replaces_its_default_and_the_others_stay():
    conf = LimitsConfig.of({"limits": {"chat_per_ip": {"limit": "7", "window": 30}}})
    assert conf.chat_per_ip == RateRule(limit=7, window=30) and conf.rules(only_set=True) == {"chat_per_ip": conf.chat_per_ip}
    assert conf.sms_per_target == LimitsConfig().sms_per_target == RateRule(limit=3, window=3600)
    assert set(conf.rules()) == set(LimitsConfig.rule_names()) and "lookup_per_client" in conf.rules()


def test_bot_refuses_a_bad_config_with_the_key_and_no_traceback(tmp_path):
    import subprocess
    import sys
    path = write(tmp_path, lambda c: c["sessions"].update(ttl_secs=5))
    done = subprocess.run([sys.executable, str(settings.ROOT / "bot.py"), "--config", path, "check"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "sessions.ttl_secs: unknown key" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_handoff_parts_are_views_of_the_handoff_section_with_its_checks_and_paths():
    cfg = {"handoff": {"webhook_retries": 0, "api_token": "t" * 24, "api_requests_per_minute": 5}}
    assert WebhookConfig.of(cfg).retries == 0 and not WebhookConfig.of(cfg).enabled
    assert HandoffApiConfig.of(cfg) == HandoffApiConfig(token="t" * 24, requests_per_minute=5, failed_auth_per_minute=10)
    assert not HandoffApiConfig.of({}).enabled and WebhookConfig.of({}).queue_size == HandoffConfig().webhook_queue_size
    for handoff, path in [({"api_requests_per_minute": 0}, "handoff.api_requests_per_minute: Input should be greater"),
                          ({"api_token": "short"}, "handoff.api_token: HANDOFF_API_TOKEN must be at least 24"),
                          ({"webhook_tries": 1}, "handoff.webhook_tries: unknown key")]:
        with pytest.raises(ConfigError, match=path):
            (HandoffApiConfig if "api" in path else WebhookConfig).of({"handoff": handoff})
