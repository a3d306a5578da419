"""The matcher's result cache: the same results as matching afresh, a new config matches afresh,
and a text that may carry personal data (a digit, an e-mail, a link) is never kept."""
from __future__ import annotations

import settings
from intents.matcher import Matcher


def test_cached_results_are_the_fresh_ones_and_personal_texts_are_not_kept():
    m = Matcher.from_settings(settings.load())
    texts = ["忘记密码怎么办", "用户名忘了", "怎么绑定微信", "你好"]
    for t in texts:
        assert m.match(t) == m._match(t)
    assert m.match(texts[0]) is m.match(texts[0])          # the second one from the cache
    for t in ("手机13812345678收不到验证码", "邮箱 zhang@example.cn 改不了", "链接 https://x.cn/r/abc 打不开"):
        assert m.match(t) == m._match(t)
    cache = m._cached_match[1]
    assert cache.cache_info().currsize == len(texts)       # none of those three kept
    m.config = m.config.model_copy(update={"answer_threshold": 0.99})
    assert m.match(texts[0]) == m._match(texts[0]) and m._cached_match[1] is not cache
