// The embeddable chat widget. A site adds one tag:
//   <script src="https://<switchboard>/ui/chat-widget.js" defer></script>
// It starts a chat (POST /v1/chats), then speaks the chat protocol (docs/chat-protocol.md)
// over a WebSocket, resuming after a dropped connection or a page reload. It brings its own
// look (styles set from script, so the host page's stylesheet and CSP need no change) and
// sets every text as text. A site on another origin must be in [chat] allowed_origins.
(function () {
  "use strict";
  const script = document.currentScript;
  const base = new URL(script ? script.src : "/ui/chat-widget.js", location.href);
  const httpBase = base.origin;
  const wsBase = (base.protocol === "https:" ? "wss:" : "ws:") + "//" + base.host;
  const store = window.sessionStorage;
  const KEY = "switchboard.chat";

  function h(tag, attrs, style, ...children) {
    const n = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) { if (v === null || v === undefined) continue; if (k.startsWith("on")) n.addEventListener(k.slice(2), v); else if (k === "text") n.textContent = v; else n.setAttribute(k, v); }
    Object.assign(n.style, style || {});
    for (const c of children) if (c !== null && c !== undefined) n.append(c instanceof Node ? c : document.createTextNode(String(c)));
    return n;
  }
  const font = { font: "15px/1.4 system-ui, sans-serif", color: "#1d2330" };
  const field = { display: "block", width: "100%", boxSizing: "border-box", margin: "2px 0 8px", padding: "6px", border: "1px solid #98a1b3", borderRadius: "4px", font: "inherit" };
  const button = { padding: "6px 12px", border: "1px solid #1f5fbf", borderRadius: "4px", background: "#1f5fbf", color: "#fff", font: "inherit", cursor: "pointer" };
  const quiet = Object.assign({}, button, { background: "#fff", color: "#1f5fbf" });

  const open = h("button", { type: "button", "aria-expanded": "false", "aria-controls": "sb-chat-panel", id: "sb-chat-open" },
    Object.assign({}, button, font, { position: "fixed", right: "20px", bottom: "20px", zIndex: 2147483000, color: "#fff", borderRadius: "999px", padding: "10px 18px" }), "Chat with us");
  const panel = h("section", { id: "sb-chat-panel", role: "dialog", "aria-label": "Chat", hidden: "" },
    Object.assign({}, font, { position: "fixed", right: "20px", bottom: "70px", width: "330px", maxWidth: "calc(100vw - 40px)", background: "#fff", border: "1px solid #d6dae3", borderRadius: "8px", boxShadow: "0 6px 24px rgba(0,0,0,.18)", padding: "12px", zIndex: 2147483000 }));
  const status = h("p", { role: "status", "aria-live": "polite", id: "sb-chat-status" }, { minHeight: "1.2em", margin: "4px 0", fontSize: "13px", color: "#5b6475" });

  // Start form.
  const name = h("input", { id: "sb-chat-name", autocomplete: "name", required: "" }, field);
  const email = h("input", { id: "sb-chat-email", type: "email", autocomplete: "email" }, field);
  const subject = h("input", { id: "sb-chat-subject" }, field);
  const label = (f, text) => h("label", { for: f }, { display: "block", fontWeight: "600" }, text);
  const start = h("form", { id: "sb-chat-start" }, {},
    label("sb-chat-name", "Your name"), name, label("sb-chat-email", "E-mail (optional, for the transcript)"), email, label("sb-chat-subject", "What is it about?"), subject,
    h("button", { type: "submit" }, button, "Start chat"));

  // Conversation.
  const log = h("div", { role: "log", "aria-live": "polite", "aria-label": "Messages", id: "sb-chat-log" }, { height: "260px", overflowY: "auto", border: "1px solid #d6dae3", borderRadius: "4px", padding: "6px", background: "#fbfcfe" });
  const typing = h("p", { "aria-live": "polite", id: "sb-chat-typing" }, { minHeight: "1.2em", margin: "2px 0", fontStyle: "italic", fontSize: "13px", color: "#5b6475" });
  const text = h("input", { id: "sb-chat-text", autocomplete: "off", "aria-label": "Message" }, Object.assign({}, field, { margin: "0" }));
  const send = h("button", { type: "submit" }, button, "Send");
  const compose = h("form", { id: "sb-chat-compose" }, { display: "flex", gap: "6px", marginTop: "4px" }, text, send);
  const end = h("button", { type: "button", id: "sb-chat-end" }, quiet, "End chat");
  const mail = h("button", { type: "button", id: "sb-chat-mail" }, quiet, "E-mail me the transcript");
  const talk = h("div", { hidden: "" }, {}, log, typing, compose, h("div", {}, { display: "flex", gap: "6px", marginTop: "6px" }, end, mail));
  panel.append(h("h2", {}, { fontSize: "16px", margin: "0 0 8px" }, "Chat with us"), start, talk, status);

  let state = null;        // { session_id, token, lastSeq, email }
  let socket = null, names = {}, typers = new Set(), typingSent = false, typingTimer = null, ended = false;

  function save() { if (state) store.setItem(KEY, JSON.stringify(state)); else store.removeItem(KEY); }
  function line(who, body, look) {
    log.append(h("div", { class: "sb-msg" }, Object.assign({ margin: "3px 0" }, look || {}), who ? h("strong", {}, { marginRight: "4px" }, who + ":") : null, body));
    log.scrollTop = log.scrollHeight;
  }

  function show(event) {
    const [kind, b] = Object.entries(event.payload)[0];
    const system = { color: "#5b6475", fontStyle: "italic" };
    if (kind === "ParticipantJoined") { names[b.participant_id] = b.display_name; if (b.role !== "customer") line(null, b.display_name + " joined the chat", system); }
    else if (kind === "ParticipantLeft") { if (b.participant_id !== "customer") line(null, (names[b.participant_id] || "The agent") + " left the chat", system); }
    else if (kind === "MessagePosted") {
      typers.delete(b.participant_id);
      if (b.participant_id === "system") line(null, b.text, system);
      else line(b.participant_id === "customer" ? "You" : (names[b.participant_id] || b.participant_id), b.text);
    }
    else if (kind === "TypingChanged") { if (b.participant_id !== "customer") { if (b.typing) typers.add(b.participant_id); else typers.delete(b.participant_id); } }
    else if (kind === "SessionEnded") { ended = true; line(null, "The chat has ended.", system); text.disabled = true; send.disabled = true; end.disabled = true; }
    typing.textContent = typers.size ? [...typers].map((p) => names[p] || p).join(", ") + " is typing…" : "";
  }

  function connect() {
    // The chat's token goes in the first frame, never in the URL (proxies log URLs).
    const s = new WebSocket(wsBase + "/v1/chats/" + state.session_id + "/ws");
    socket = s;
    s.onopen = () => {
      s.send(JSON.stringify({ type: "auth", token: state.token }));
      s.send(JSON.stringify({ type: "resume", after: state.lastSeq }));
      status.textContent = "";
    };
    s.onmessage = (e) => {
      let f; try { f = JSON.parse(e.data); } catch (_) { return; }
      if (f.type === "event" && f.seq > state.lastSeq) { state.lastSeq = f.seq; save(); show(f.event); }
      else if (f.type === "error") status.textContent = f.reason;
    };
    s.onclose = (e) => {
      // 4401/4403/4410: refused (the error frame said why); trying again would not help.
      if (e.code >= 4400 && e.code < 4500) { socket = null; return; }
      if (socket === s && state && !ended) { status.textContent = "Reconnecting…"; setTimeout(() => { if (socket === s) connect(); }, 1500); } };
  }

  function frame(f) {
    if (socket && socket.readyState === WebSocket.OPEN) { socket.send(JSON.stringify(f)); return true; }
    status.textContent = "Not connected yet; try again in a moment.";
    return false;
  }

  function begin() {
    start.hidden = true; talk.hidden = false; log.replaceChildren(); names = {}; typers = new Set(); ended = false;
    text.disabled = false; send.disabled = false; end.disabled = false;
    mail.hidden = !state.email;
    connect();
    text.focus();
  }

  start.addEventListener("submit", async (e) => {
    e.preventDefault();
    if (!name.value.trim()) { status.textContent = "Please tell us your name."; name.focus(); return; }
    status.textContent = "Starting…";
    const body = { name: name.value.trim() };
    if (email.value.trim()) body.email = email.value.trim();
    if (subject.value.trim()) body.subject = subject.value.trim();
    try {
      const r = await fetch(httpBase + "/v1/chats", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
      const data = await r.json().catch(() => ({}));
      if (!r.ok) throw new Error(data.error || r.statusText);
      state = { session_id: data.session_id, token: data.token, lastSeq: 0, email: body.email || null };
      save();
      begin();
    } catch (error) { status.textContent = "Could not start the chat: " + error.message; }
  });
  compose.addEventListener("submit", (e) => {
    e.preventDefault();
    if (!text.value.trim()) return;
    if (frame({ type: "message", text: text.value, client_message_id: "w-" + Date.now() + "-" + Math.random().toString(36).slice(2, 8) })) { text.value = ""; typingSent = false; clearTimeout(typingTimer); }
  });
  text.addEventListener("input", () => {
    if (!typingSent && text.value && frame({ type: "typing", typing: true })) typingSent = true;
    clearTimeout(typingTimer);
    typingTimer = setTimeout(() => { if (typingSent) { frame({ type: "typing", typing: false }); typingSent = false; } }, 3000);
  });
  end.addEventListener("click", () => frame({ type: "end" }));
  mail.addEventListener("click", () => { if (state && state.email && frame({ type: "transcript", email: state.email })) status.textContent = "The transcript will be mailed to " + state.email + " when the chat ends."; });
  open.addEventListener("click", () => {
    const show = panel.hidden;
    panel.hidden = !show;
    open.setAttribute("aria-expanded", String(show));
    if (show) (state ? text : name).focus();
  });
  document.addEventListener("keydown", (e) => { if (e.key === "Escape" && !panel.hidden) { panel.hidden = true; open.setAttribute("aria-expanded", "false"); open.focus(); } });

  function mount() {
    document.body.append(open, panel);
    try { state = JSON.parse(store.getItem(KEY) || "null"); } catch (_) { state = null; }
    if (state) { panel.hidden = false; open.setAttribute("aria-expanded", "true"); begin(); }
  }
  if (document.body) mount(); else document.addEventListener("DOMContentLoaded", mount);
})();
