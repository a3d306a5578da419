/*
 * 学信网账号助手 — staff console. Plain JS, no dependencies, no CDN.
 *
 * The queue updates live from server-sent events (/staff/api/events); the page title shows how
 * many conversations wait. Every text from users (and agents) is inserted with textContent /
 * createTextNode: nothing here parses markup. Every POST carries the CSRF token of the page.
 */
(function () {
  "use strict";

  var CSRF = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";
  // one time zone for every agent (config handoff.timezone), the one the Overview counts days in
  var TZ = (document.querySelector('meta[name="time-zone"]') || {}).content || "Asia/Shanghai";
  var TITLE = "人工客服工作台";
  var CHANNELS = { web: "网页", telegram: "Telegram", wechat: "微信", console: "终端" };
  var STATUS = { waiting: "等待接入", active: "处理中", closed: "已结束", abandoned: "用户已离开" };
  var me = { name: "", role: "" };
  var current = null;      // the open hand-off
  var lastMessageId = 0;
  var shown = {};          // message ids already on screen

  function $(id) { return document.getElementById(id); }
  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (k === "text") node.textContent = attrs[k];
      else if (k === "className") node.className = attrs[k];
      else node.setAttribute(k, attrs[k]);
    });
    (children || []).forEach(function (c) { if (c) node.appendChild(c); });
    return node;
  }
  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }

  function ApiError(status, body) {
    this.status = status;
    this.code = (body && body.error) || "http_" + status;
    this.message = (body && body.message) || "操作失败，请稍后重试。";
  }

  function api(path, method, body) {
    var init = { method: method || "GET", credentials: "same-origin", headers: {} };
    if (init.method !== "GET") init.headers["X-CSRF-Token"] = CSRF;
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    return fetch(path, init).then(function (res) {
      return res.json().catch(function () { return null; }).then(function (data) {
        if (res.status === 401) {
          location.href = "/staff/login";
        }
        if (!res.ok || !data) throw new ApiError(res.status, data);
        return data;
      });
    }, function () {
      throw new ApiError(0, { message: "无法连接服务器，请检查网络后重试。" });
    });
  }

  function minutes(seconds) {
    seconds = Math.max(0, Math.round(seconds));
    if (seconds < 60) return seconds + " 秒";
    if (seconds < 3600) return Math.floor(seconds / 60) + " 分钟";
    return Math.floor(seconds / 3600) + " 小时 " + Math.floor((seconds % 3600) / 60) + " 分";
  }
  function clock(ts) {
    var d = new Date(ts * 1000);
    try {
      return d.toLocaleString("zh-CN", { hour12: false, timeZone: TZ });
    } catch (e) {   // a zone this browser does not know
      return d.toLocaleString("zh-CN", { hour12: false });
    }
  }

  function showError(text) {
    var box = $("conv-error");
    if (!text) { box.setAttribute("hidden", ""); box.textContent = ""; return; }
    box.textContent = text;
    box.removeAttribute("hidden");
  }

  // ---- the queue ---------------------------------------------------------------------
  function item(h, extra) {
    var label = (CHANNELS[h.channel] || h.channel) + " · " + (h.reason_label || h.reason);
    var meta = extra + (h.topic ? " · " + (h.topic_title || h.topic) : "") + (h.flow ? " · 流程 " + (h.flow_title || h.flow) : "");
    var btn = el("button", { type: "button", "data-id": h.id }, [
      el("span", { text: label }), el("span", { className: "meta", text: meta })]);
    if (current && current.id === h.id) btn.setAttribute("aria-current", "true");
    btn.addEventListener("click", function () { openHandoff(h.id); });
    return el("li", {}, [btn]);
  }

  function fill(listId, items, extra) {
    var list = $(listId);
    clear(list);
    if (!items.length) list.appendChild(el("li", { className: "meta", text: "（无）" }));
    items.forEach(function (h) { list.appendChild(item(h, extra(h))); });
  }

  var loading = null;
  function loadQueue() {
    if (loading) return loading;
    loading = Promise.all([api("/staff/api/handoffs?status=waiting"), api("/staff/api/handoffs?status=active"),
      api("/staff/api/handoffs?status=closed&limit=10")]).then(function (r) {
      var waiting = r[0].handoffs, mine = r[1].handoffs.filter(function (h) { return h.agent === me.name; });
      fill("list-waiting", waiting, function (h) { return "已等待 " + minutes(h.waited); });
      fill("list-mine", mine, function (h) { return "接入于 " + clock(h.claimed_at); });
      fill("list-closed", r[2].handoffs, function (h) { return (h.resolution_label || "") + " · " + (h.agent || ""); });
      $("count-waiting").textContent = String(waiting.length);
      $("count-mine").textContent = String(mine.length);
      document.title = (waiting.length ? "(" + waiting.length + ") " : "") + TITLE;
    }).catch(function (err) {
      $("live").textContent = err.message;
    }).then(function () { loading = null; });
    return loading;
  }

  // ---- one conversation -------------------------------------------------------------------
  function fact(dl, name, value) {
    if (value === null || value === undefined || value === "") return;
    dl.appendChild(el("div", {}, [el("dt", { text: name }), el("dd", { text: String(value) })]));
  }

  function addMessage(m) {
    if (shown[m.id]) return;
    shown[m.id] = true;
    lastMessageId = Math.max(lastMessageId, m.id);
    var who = m.kind === "user" ? "用户" : m.kind === "agent" ? "人工客服 " + m.author : "系统";
    var box = $("messages");
    box.appendChild(el("div", { className: "msg " + m.kind, "data-id": String(m.id) }, [
      el("span", { className: "who", text: who + " · " + clock(m.created_at) }),
      document.createTextNode(String(m.text))]));
    box.scrollTop = box.scrollHeight;
  }

  function renderHandoff(h) {
    current = h;
    $("empty").setAttribute("hidden", "");
    $("conversation").removeAttribute("hidden");
    $("conv-title").textContent = "会话 " + h.id + " · " + (STATUS[h.status] || h.status);
    var facts = $("conv-facts");
    clear(facts);
    fact(facts, "渠道", CHANNELS[h.channel] || h.channel);
    fact(facts, "原因", h.reason_label || h.reason);
    fact(facts, "话题", h.topic_title || h.topic);
    fact(facts, "流程", h.flow ? (h.flow_title || h.flow) + (h.step ? " / " + (h.step_label || h.step) : "") : "");
    fact(facts, "开始", clock(h.created_at));
    fact(facts, "客服", h.agent);
    fact(facts, "结果", h.resolution_label);
    var open = h.status === "waiting" || h.status === "active";
    var mine = h.status === "active" && h.agent === me.name;
    $("btn-claim").disabled = h.status !== "waiting";
    $("btn-send").disabled = !open || (h.status === "active" && !mine);
    $("btn-back").disabled = !open || (h.status === "active" && !mine && me.role !== "admin");
    $("btn-close").disabled = $("btn-back").disabled;
    $("reply").disabled = $("btn-send").disabled;
    document.querySelectorAll(".list button").forEach(function (b) {
      if (b.getAttribute("data-id") === h.id) b.setAttribute("aria-current", "true");
      else b.removeAttribute("aria-current");
    });
  }

  function openHandoff(id) {
    var switching = !current || current.id !== id;
    if (switching) showError("");   // a refresh keeps the last error in view
    return api("/staff/api/handoffs/" + encodeURIComponent(id)).then(function (data) {
      if (switching) {
        clear($("messages"));
        shown = {};
        lastMessageId = 0;
        var t = $("transcript");
        clear(t);
        (data.handoff.transcript || []).forEach(function (line) {
          t.appendChild(el("li", { text: String(line[0]) + "：" + String(line[1]) }));
        });
        $("reply").value = "";
      }
      renderHandoff(data.handoff);
      data.messages.forEach(addMessage);
      if (switching && !$("reply").disabled) $("reply").focus();
    }).catch(function (err) { showError(err.message); });
  }

  function refreshCurrent() {
    if (current) openHandoff(current.id);
  }

  function act(path, body) {
    showError("");
    return api("/staff/api/handoffs/" + encodeURIComponent(current.id) + path, "POST", body).then(function (data) {
      if (data.handoff) renderHandoff(data.handoff);
      loadQueue();
      return data;
    });
  }

  var sending = false;
  function send() {
    var text = $("reply").value;
    if (!current || sending) return;
    if (!text.trim()) { showError("回复内容不能为空。"); return; }
    sending = true;
    $("btn-send").disabled = true;
    act("/messages", { text: text }).then(function (data) {
      if ($("reply").value === text) $("reply").value = "";
      addMessage(data.message);
      refreshCurrent();
    }).catch(function (err) {
      showError(err.message);   // the text stays in the box
      refreshCurrent();
    }).then(function () {
      sending = false;
      if (current) $("btn-send").disabled = $("reply").disabled;
    });
  }

  // ---- FAQ search ------------------------------------------------------------------------
  function searchFaq() {
    var q = $("faq-q").value.trim();
    var list = $("faq-results");
    clear(list);
    if (!q) return;
    api("/staff/api/faq?q=" + encodeURIComponent(q)).then(function (data) {
      if (!data.results.length) list.appendChild(el("li", { text: "没有找到相关的 FAQ 答案。" }));
      data.results.forEach(function (r) {
        var insert = el("button", { type: "button", text: "插入" });
        insert.addEventListener("click", function () {
          var box = $("reply");
          box.value = (box.value ? box.value + "\n\n" : "") + r.answer;
          box.focus();
        });
        list.appendChild(el("li", {}, [el("span", { text: r.question }), insert]));
      });
    }).catch(function (err) { showError(err.message); });
  }

  // ---- live events ---------------------------------------------------------------------------
  var pending = null;
  function connect() {
    var source = new EventSource("/staff/api/events");
    source.addEventListener("open", function () {
      $("live").textContent = "已连接：新会话会自动出现";
      $("live").className = "status";
      loadQueue();
    });
    source.addEventListener("error", function () {
      $("live").textContent = "连接中断，正在重新连接…";
      $("live").className = "status off";
    });
    source.addEventListener("handoff", function (e) {
      var event;
      try { event = JSON.parse(e.data); } catch (err) { return; }
      if (current && event.handoff && event.handoff.id === current.id) {
        if (event.message) addMessage(event.message);
        if (event.type !== "message") refreshCurrent();
      }
      if (!pending) pending = setTimeout(function () { pending = null; loadQueue(); }, 150);
    });
  }

  // ---- wiring ---------------------------------------------------------------------------------
  var composing = false;
  $("reply").addEventListener("compositionstart", function () { composing = true; });
  $("reply").addEventListener("compositionend", function () { setTimeout(function () { composing = false; }, 0); });
  $("reply").addEventListener("keydown", function (e) {
    if (e.key !== "Enter" || e.shiftKey) return;
    if (e.isComposing || e.keyCode === 229 || composing) return;   // the IME is choosing characters
    e.preventDefault();
    send();
  });
  $("btn-send").addEventListener("click", send);
  $("btn-claim").addEventListener("click", function () {
    act("/claim").then(refreshCurrent).catch(function (err) { showError(err.message); refreshCurrent(); });
  });
  $("btn-back").addEventListener("click", function () {
    act("/hand-back").catch(function (err) { showError(err.message); refreshCurrent(); });
  });
  $("btn-close").addEventListener("click", function () {
    act("/close", { resolution: $("sel-resolution").value }).catch(function (err) {
      showError(err.message);
      refreshCurrent();
    });
  });
  $("btn-faq").addEventListener("click", searchFaq);
  $("faq-q").addEventListener("keydown", function (e) {
    if (e.key === "Enter" && !e.isComposing && e.keyCode !== 229) { e.preventDefault(); searchFaq(); }
  });

  api("/staff/api/me").then(function (data) {
    me = data;
    var sel = $("sel-resolution");
    Object.keys(data.resolutions).forEach(function (k) {
      sel.appendChild(el("option", { value: k, text: data.resolutions[k] }));
    });
    loadQueue();
    connect();
    setInterval(loadQueue, 30000);   // wait times move on even when nothing happens
  }).catch(function (err) { $("live").textContent = err.message; });
})();
