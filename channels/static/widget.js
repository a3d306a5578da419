/*
 * 学信网账号助手 — embeddable chat widget. Plain JS, no dependencies.
 *
 *   <script src="https://HOST/widget.js" data-title="学信网账号助手" defer></script>
 *
 * Options (data-* attributes on the script tag), documented in channels/README.md:
 *   data-title     panel title                       (default 学信网账号助手)
 *   data-greeting  first bot message                 (default: a short introduction)
 *   data-position  "right" | "left" (bottom corner)  (default right)
 *   data-api-base  where the chat API lives          (default: the origin widget.js came from)
 *   data-open      "true" opens the panel on load    (default closed)
 *
 * Safety: every text (answers, button labels, the user's own text, file names)
 * goes into the page through textContent / createTextNode. Answers arrive as a
 * parsed block tree ("blocks"), so nothing here parses or injects markup; links
 * are kept only for http(s) URLs and open with rel="noopener noreferrer".
 */
(function () {
  "use strict";
  if (window.__chsiAssistantLoaded) return;
  window.__chsiAssistantLoaded = true;

  var script = document.currentScript || (function () {
    var all = document.querySelectorAll('script[src*="widget.js"]');
    return all[all.length - 1];
  })();
  var data = (script && script.dataset) || {};
  var scriptOrigin = script && script.src ? new URL(script.src, location.href).origin : location.origin;
  var API = String(data.apiBase || scriptOrigin).replace(/\/+$/, "");
  var TITLE = data.title || "学信网账号助手";
  var GREETING = data.greeting ||
    "您好！我是学信网账号助手，可以解答账号注册、找回用户名和密码、证件号码已被注册等问题，并一步步帮您办理。请直接输入您的问题。";
  var LEFT = data.position === "left";
  var STORE_KEY = "chsi-assistant:" + API;
  var MAX_HISTORY = 80;

  var TEXT = {
    open: "在线咨询",
    close: "关闭",
    reset: "新对话",
    placeholder: "请输入您的问题，按 Enter 发送",
    send: "发送",
    attach: "上传照片",
    typing: "助手正在输入…",
    offline: "无法连接到服务器，请检查网络后重试。您输入的内容已保留在输入框中。",
    failed: "发送失败，请稍后重试。",
    expired: "之前的会话已失效，已为您开始新的对话。",
    uploaded: "已上传照片：",
    uploading: "正在上传照片…"
  };

  // ---- storage: the session and the conversation survive reloads ----------------
  var memoryStore = {};
  function load() {
    try {
      return JSON.parse(localStorage.getItem(STORE_KEY) || "null") || {};
    } catch (e) {
      return memoryStore;
    }
  }
  var state = load();
  state.history = Array.isArray(state.history) ? state.history : [];
  function save() {
    state.history = state.history.slice(-MAX_HISTORY);
    try {
      localStorage.setItem(STORE_KEY, JSON.stringify(state));
    } catch (e) {
      memoryStore = state;
    }
  }

  // Personal data never stays in the browser in clear: ID numbers, phone numbers
  // and verification codes the user typed are masked in the saved history.
  function maskPersonal(text) {
    return String(text)
      .replace(/\d{17}[\dXx]|\d{15}/g, function (m) {
        return m.slice(0, 4) + new Array(m.length - 7).join("*") + m.slice(-4);
      })
      .replace(/1[3-9]\d{9}/g, function (m) { return m.slice(0, 3) + "****" + m.slice(-4); })
      .replace(/^\s*\d{4,8}\s*$/, function (m) { return new Array(m.trim().length + 1).join("*"); });
  }

  // ---- DOM helpers ----------------------------------------------------------------
  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (k) {
        if (k === "text") node.textContent = attrs[k];
        else if (k === "className") node.className = attrs[k];
        else node.setAttribute(k, attrs[k]);
      });
    }
    (children || []).forEach(function (c) { if (c) node.appendChild(c); });
    return node;
  }

  function safeHref(href) {
    try {
      var u = new URL(String(href));
      return (u.protocol === "http:" || u.protocol === "https:") ? u.href : null;
    } catch (e) {
      return null;
    }
  }

  function renderSpans(parent, line) {
    (line || []).forEach(function (span) {
      var node = document.createTextNode(String(span.text || ""));
      var href = span.href ? safeHref(span.href) : null;
      if (href) {
        var a = el("a", { href: href, target: "_blank", rel: "noopener noreferrer" });
        a.appendChild(node);
        node = a;
      }
      if (span.bold) {
        var b = el("strong");
        b.appendChild(node);
        node = b;
      }
      parent.appendChild(node);
    });
  }

  function renderLines(parent, lines) {
    (lines || []).forEach(function (line, i) {
      if (i > 0) parent.appendChild(el("br"));
      renderSpans(parent, line);
    });
  }

  function renderBlocks(parent, blocks, fallbackText) {
    if (!Array.isArray(blocks)) {
      var p = el("p");
      renderLines(p, String(fallbackText || "").split("\n").map(function (t) { return [{ text: t }]; }));
      parent.appendChild(p);
      return;
    }
    blocks.forEach(function (block) {
      if (block.type === "ul" || block.type === "ol") {
        var list = el(block.type);
        (block.items || []).forEach(function (item) {
          var li = el("li");
          if (block.type === "ol" && typeof item.n === "number") li.setAttribute("value", String(item.n));
          renderLines(li, item.lines);
          list.appendChild(li);
        });
        parent.appendChild(list);
      } else {
        var para = el("p");
        renderLines(para, block.lines);
        parent.appendChild(para);
      }
    });
  }

  // ---- the widget -------------------------------------------------------------------
  var CSS = [
    ":host{all:initial}",
    "*{box-sizing:border-box}",
    ".root{font-family:system-ui,-apple-system,'PingFang SC','Microsoft YaHei','WenQuanYi Micro Hei','Noto Sans CJK SC',sans-serif;",
    "font-size:15px;line-height:1.6;color:#1f2933}",
    ".launcher{position:fixed;bottom:20px;" + (LEFT ? "left" : "right") + ":20px;z-index:2147483000;border:0;border-radius:24px;",
    "padding:12px 20px;background:#0b5cad;color:#fff;font:inherit;font-weight:600;cursor:pointer;box-shadow:0 4px 14px rgba(0,0,0,.25)}",
    ".launcher:focus-visible,button:focus-visible,textarea:focus-visible,a:focus-visible{outline:3px solid #f5a623;outline-offset:2px}",
    ".panel{position:fixed;bottom:20px;" + (LEFT ? "left" : "right") + ":20px;z-index:2147483001;width:380px;max-width:calc(100vw - 16px);",
    "height:560px;max-height:calc(100vh - 40px);display:flex;flex-direction:column;background:#fff;border-radius:12px;",
    "box-shadow:0 8px 30px rgba(0,0,0,.3);overflow:hidden}",
    ".panel[hidden]{display:none}",
    "@media (max-width:480px){.panel{inset:0;width:100vw;max-width:100vw;height:100%;max-height:100%;border-radius:0}}",
    ".head{display:flex;align-items:center;gap:8px;padding:10px 12px;background:#0b5cad;color:#fff}",
    ".head h2{flex:1;margin:0;font-size:16px;font-weight:600;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}",
    ".head button{border:1px solid rgba(255,255,255,.6);background:transparent;color:#fff;border-radius:6px;padding:4px 10px;font:inherit;font-size:13px;cursor:pointer;min-height:32px}",
    ".log{flex:1;overflow-y:auto;padding:12px;background:#f4f6f8}",
    ".msg{width:fit-content;max-width:88%;margin:6px 0;padding:8px 12px;border-radius:10px;word-wrap:break-word;overflow-wrap:anywhere;white-space:normal}",
    ".bot{background:#fff;border:1px solid #dde3e9;margin-right:auto}",
    ".user{background:#0b5cad;color:#fff;margin-left:auto;white-space:pre-wrap}",
    ".notice{background:#fff4e5;border:1px solid #f5c27a;color:#7a4b00;max-width:100%;font-size:14px}",
    ".msg p{margin:0 0 6px}.msg p:last-child{margin-bottom:0}",
    ".msg ul,.msg ol{margin:4px 0 6px;padding-left:22px}",
    ".msg a{color:#0b5cad}",
    ".agent{border-color:#0b5cad;border-left-width:3px}",
    ".author{display:block;font-size:12px;font-weight:600;color:#0b5cad;margin-bottom:2px}",
    ".buttons{display:flex;flex-wrap:wrap;gap:6px;margin:4px 0 8px}",
    ".buttons button{border:1px solid #0b5cad;background:#fff;color:#0b5cad;border-radius:16px;padding:6px 12px;font:inherit;font-size:14px;cursor:pointer;min-height:36px;text-align:left}",
    ".buttons button:hover{background:#e8f1fb}",
    ".buttons button:disabled{opacity:.5;cursor:default}",
    ".typing{display:flex;gap:4px;align-items:center;padding:10px 12px}",
    ".typing i{width:7px;height:7px;border-radius:50%;background:#8a99a8;animation:blink 1.2s infinite both}",
    ".typing i:nth-child(2){animation-delay:.2s}.typing i:nth-child(3){animation-delay:.4s}",
    "@keyframes blink{0%,80%,100%{opacity:.25}40%{opacity:1}}",
    ".sr{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap}",
    ".composer{display:flex;flex-wrap:wrap;gap:6px;align-items:flex-end;padding:8px;border-top:1px solid #dde3e9;background:#fff}",
    ".composer textarea{flex:1;min-width:0;resize:none;border:1px solid #b8c4d0;border-radius:8px;padding:8px;font:inherit;max-height:120px;min-height:40px}",
    ".composer button{border:0;border-radius:8px;padding:0 14px;min-height:40px;font:inherit;cursor:pointer;background:#0b5cad;color:#fff;white-space:nowrap}",
    ".composer .attach{background:#e8f1fb;color:#0b5cad;border:1px solid #0b5cad;flex:1 0 100%}",
    ".composer .attach[hidden]{display:none}",
    ".composer button:disabled{opacity:.6;cursor:default}"
  ].join("");

  var host = el("div", { id: "chsi-assistant", "data-chsi-assistant": "" });
  var shadow = host.attachShadow({ mode: "open" });
  var style = el("style", { text: CSS });
  var launcher = el("button", { className: "launcher", type: "button", "aria-haspopup": "dialog",
    "aria-expanded": "false", "aria-controls": "chsi-panel", text: TEXT.open });
  var title = el("h2", { id: "chsi-title", text: TITLE });
  var resetBtn = el("button", { type: "button", className: "reset", text: TEXT.reset,
    "aria-label": "开始新对话（清除本机保存的对话）" });
  var closeBtn = el("button", { type: "button", className: "close", text: "×", "aria-label": TEXT.close });
  var log = el("div", { className: "log", role: "log", "aria-live": "polite", "aria-relevant": "additions",
    "aria-label": "对话记录", tabindex: "0" });
  var typing = el("div", { className: "msg bot typing", role: "status" },
    [el("i"), el("i"), el("i"), el("span", { className: "sr", text: TEXT.typing })]);
  var fileInput = el("input", { type: "file", accept: "image/jpeg,image/png", hidden: "", tabindex: "-1",
    "aria-hidden": "true" });
  var attachBtn = el("button", { type: "button", className: "attach", text: TEXT.attach, hidden: "" });
  var input = el("textarea", { rows: "1", placeholder: TEXT.placeholder, "aria-label": "输入您的问题" });
  var sendBtn = el("button", { type: "button", className: "send", text: TEXT.send });
  var panel = el("div", { className: "panel", id: "chsi-panel", role: "dialog", "aria-modal": "false",
    "aria-labelledby": "chsi-title", hidden: "" }, [
    el("div", { className: "head" }, [title, resetBtn, closeBtn]),
    log,
    el("div", { className: "composer" }, [fileInput, attachBtn, input, sendBtn])
  ]);
  shadow.appendChild(style);
  shadow.appendChild(el("div", { className: "root" }, [launcher, panel]));

  function scrollDown() { log.scrollTop = log.scrollHeight; }

  function showMessage(entry) {
    var node;
    if (entry.role === "user") {
      node = el("div", { className: "msg user", text: entry.text });
    } else if (entry.role === "notice") {
      node = el("div", { className: "msg notice", role: "alert", text: entry.text });
    } else {
      node = el("div", { className: entry.author ? "msg bot agent" : "msg bot" });
      if (entry.author) node.appendChild(el("span", { className: "author", text: String(entry.author) }));
      renderBlocks(node, entry.blocks, entry.text);
    }
    log.insertBefore(node, typing.parentNode === log ? typing : null);
    if (entry.role === "bot" && Array.isArray(entry.buttons) && entry.buttons.length) {
      var row = el("div", { className: "buttons", role: "group", "aria-label": "可选操作" });
      entry.buttons.forEach(function (b) {
        var btn = el("button", { type: "button", text: String(b.label || "") });
        btn.addEventListener("click", function () { sendPayload(String(b.payload || ""), String(b.label || "")); });
        row.appendChild(btn);
      });
      log.insertBefore(row, typing.parentNode === log ? typing : null);
    }
    scrollDown();
    return node;
  }

  function remember(entry) {
    var stored = { role: entry.role, text: maskPersonal(entry.text) };
    if (entry.role === "bot") {
      if (entry.author) stored.author = String(entry.author);
      stored.buttons = entry.buttons;
      stored.blocks = Array.isArray(entry.blocks) ? JSON.parse(JSON.stringify(entry.blocks, function (k, v) {
        return k === "text" && typeof v === "string" ? maskPersonal(v) : v;
      })) : undefined;
    }
    state.history.push(stored);
    save();
  }

  function notice(text) {
    showMessage({ role: "notice", text: text });
  }

  function setBusy(busy) {
    sendBtn.disabled = busy;
    attachBtn.disabled = busy;
    if (busy) log.appendChild(typing);
    else if (typing.parentNode) typing.parentNode.removeChild(typing);
    scrollDown();
  }

  function setExpectsImage(on) {
    state.expectsImage = !!on;
    if (on) attachBtn.removeAttribute("hidden");
    else attachBtn.setAttribute("hidden", "");
  }

  // ---- talking to the server ----------------------------------------------------------
  function ApiError(status, body) {
    this.status = status;
    this.code = (body && body.error) || "http_" + status;
    this.message = (body && body.message) || TEXT.failed;
  }

  function request(path, init) {
    return fetch(API + path, init).then(function (res) {
      return res.json().catch(function () { return null; }).then(function (body) {
        if (!res.ok || !body) throw new ApiError(res.status, body);
        return body;
      });
    });
  }

  function ensureSession() {
    if (state.session_id) return Promise.resolve(state.session_id);
    return request("/api/session", { method: "POST" }).then(function (body) {
      state.session_id = body.session_id;
      save();
      return state.session_id;
    });
  }

  // Send with the current session; an unknown session is replaced once and the message re-sent.
  function exchange(makeInit, path, retried) {
    return ensureSession().then(function (sid) {
      return request(path, makeInit(sid));
    }).catch(function (err) {
      if (err instanceof ApiError && err.code === "unknown_session" && !retried) {
        state.session_id = null;
        save();
        notice(TEXT.expired);
        return exchange(makeInit, path, true);
      }
      throw err;
    });
  }

  function showReplies(replies) {
    (replies || []).forEach(function (r) {
      var entry = { role: "bot", text: String(r.text || ""), blocks: r.blocks, buttons: r.buttons || [],
        author: r.author || undefined };
      showMessage(entry);
      remember(entry);
      if (r.intent === "human_agent") startLive();
      if (r.intent === "handoff_left" || r.intent === "handoff_closed") stopLive();
    });
  }

  // ---- live replies from a person (server-sent events) ----------------------------------
  // While a conversation is with staff, their replies arrive on /api/chat/events. The last
  // event id is saved, so a reload or a dropped connection resumes without losing any.
  var live = null;
  var liveRetry = null;
  function startLive() {
    state.live = true;
    save();
    if (live || !state.session_id || typeof EventSource === "undefined") return;
    var url = API + "/api/chat/events?session_id=" + encodeURIComponent(state.session_id) +
      (state.lastEventId ? "&last_event_id=" + encodeURIComponent(state.lastEventId) : "");
    var source = live = new EventSource(url);
    source.addEventListener("reply", function (e) {
      var body;
      try { body = JSON.parse(e.data); } catch (err) { return; }
      if (e.lastEventId) state.lastEventId = e.lastEventId;
      showReplies(body.replies);
      save();
    });
    source.addEventListener("error", function () {
      if (source.readyState !== 2) return;          // the browser reconnects by itself
      if (live === source) live = null;
      clearTimeout(liveRetry);
      liveRetry = setTimeout(function () { if (state.live) startLive(); }, 5000);
    });
  }
  function stopLive() {
    state.live = false;
    save();
    clearTimeout(liveRetry);
    if (live) { live.close(); live = null; }
  }

  var busy = false;
  function run(echo, path, makeInit, onFail) {
    if (busy) return;
    busy = true;
    var echoed = echo ? showMessage({ role: "user", text: echo }) : null;
    setBusy(true);
    exchange(makeInit, path, false).then(function (body) {
      if (echo) remember({ role: "user", text: echo });
      setBusy(false);
      showReplies(body.replies);
      setExpectsImage(body.expects_image);
      save();
    }).catch(function (err) {
      setBusy(false);
      if (echoed && echoed.parentNode) echoed.parentNode.removeChild(echoed);
      notice(err instanceof ApiError ? err.message : TEXT.offline);
      if (onFail) onFail();
    }).then(function () {
      busy = false;
    });
  }

  function sendText() {
    var text = input.value;
    if (!text.trim() || busy) return;
    input.value = "";
    run(text, "/api/chat", function (sid) {
      return { method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ session_id: sid, text: text }) };
    }, function () {
      if (!input.value) input.value = text;   // the typed text is never lost
      input.focus();
    });
    input.focus();
  }

  function sendPayload(payload, label) {
    run(label, "/api/chat", function (sid) {
      return { method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ session_id: sid, payload: payload }) };
    });
  }

  function sendFile(file) {
    run(TEXT.uploaded + file.name, "/api/upload", function (sid) {
      var form = new FormData();
      form.append("session_id", sid);
      form.append("file", file, file.name);
      return { method: "POST", body: form };
    });
  }

  // ---- opening, closing, keyboard ----------------------------------------------------------
  function setOpen(open, quiet) {
    state.open = open;
    save();
    if (open) {
      panel.removeAttribute("hidden");
      launcher.setAttribute("hidden", "");
      launcher.setAttribute("aria-expanded", "true");
      scrollDown();
      if (!quiet) input.focus();
    } else {
      panel.setAttribute("hidden", "");
      launcher.removeAttribute("hidden");
      launcher.setAttribute("aria-expanded", "false");
      if (!quiet) launcher.focus();
    }
  }

  function renderAll() {
    while (log.firstChild) log.removeChild(log.firstChild);
    showMessage({ role: "bot", text: GREETING });
    state.history.forEach(showMessage);
    setExpectsImage(state.expectsImage);
  }

  launcher.addEventListener("click", function () { setOpen(true); });
  closeBtn.addEventListener("click", function () { setOpen(false); });
  resetBtn.addEventListener("click", function () {
    if (busy) return;
    stopLive();
    state = { history: [], open: true };
    save();
    renderAll();
    input.focus();
  });
  sendBtn.addEventListener("click", sendText);
  attachBtn.addEventListener("click", function () { fileInput.click(); });
  fileInput.addEventListener("change", function () {
    var file = fileInput.files && fileInput.files[0];
    fileInput.value = "";
    if (file) sendFile(file);
  });

  var composing = false;
  input.addEventListener("compositionstart", function () { composing = true; });
  input.addEventListener("compositionend", function () { setTimeout(function () { composing = false; }, 0); });
  input.addEventListener("keydown", function (e) {
    if (e.key !== "Enter" || e.shiftKey) return;
    if (e.isComposing || e.keyCode === 229 || composing) return;   // the IME is choosing characters
    e.preventDefault();
    sendText();
  });
  panel.addEventListener("keydown", function (e) {
    if (e.key === "Escape") {
      e.preventDefault();
      setOpen(false);
    }
  });

  function mount() {
    document.body.appendChild(host);
    renderAll();
    if (state.open || (state.open === undefined && data.open === "true")) setOpen(true, true);
    if (state.live) startLive();
  }
  if (document.body) mount();
  else document.addEventListener("DOMContentLoaded", mount);
})();
