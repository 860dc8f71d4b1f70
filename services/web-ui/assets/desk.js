// The agent desktop: state per media, offers with a countdown, and a workspace per
// interaction (contact history from UCS, the message or the live chat, suggested standard
// responses, reply, transfer, consult, return, done). Everything goes through /v1/desk/*;
// the page holds no state the server does not have.
"use strict";

let me = null;          // the last GET /v1/desk/me
let selected = null;    // the interaction id chosen for the workspace
let shown = null;       // the interaction id whose content the workspace holds
let chat = null;        // { id, socket, lastSeq, participants, typingTimer }
let refreshTimer = null;

function scheduleRefresh() {
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(refresh, 150);
}

async function refresh() {
  try {
    me = await api("GET", "/v1/desk/me");
    renderStates();
    renderOffers();
    renderMine();
    if (selected) await renderWorkspace();
  } catch (error) {
    if (error.status === 401) { Desk.forget(); location.reload(); return; }
    say($("state-status"), error.message, true);
  }
}

function renderStates() {
  const agent = me.agent || { capacity: {}, ready: [] };
  const media = Object.keys(agent.capacity || {});
  const rows = media.map((m) => {
    const ready = (agent.ready || []).includes(m);
    return el("div", { class: "row" },
      el("span", { class: "grow" }, el("strong", {}, m), " ", el("span", { class: "pill " + (ready ? "ready" : "not_ready"), "data-media-state": m }, ready ? "ready" : "not ready")),
      el("button", { type: "button", class: ready ? "secondary" : "", "aria-label": (ready ? "Not ready for " : "Ready for ") + m,
        onclick: () => setState(ready ? "not_ready" : "ready", [m]) }, ready ? "Not ready" : "Ready"));
  });
  replace($("states"), rows.length ? rows : el("p", { class: "muted" }, "No media: ask a supervisor for capacity."),
    el("p", { class: "muted" }, "Overall: ", me.state || "logged out"));
}

async function setState(state, media) {
  try {
    await api("POST", "/v1/desk/state", { state, media, reason: state === "not_ready" ? "break" : undefined });
    say($("state-status"), "");
    scheduleRefresh();
  } catch (error) { say($("state-status"), error.message, true); }
}

function renderOffers() {
  const offers = me.offers || [];
  $("no-offers").classList.toggle("hidden", offers.length > 0);
  replace($("offers"), offers.map((i) => {
    const countdown = el("span", { class: "countdown", "data-deadline": i.offer ? i.offer.offered_at + i.offer.timeout_ms : "" });
    return el("li", { class: "offer", "data-interaction": i.id },
      el("div", {}, el("span", { class: "pill" }, i.media_type), " ", el("strong", {}, title(i))),
      customer(i) ? el("div", {}, customer(i)) : null,
      el("div", { class: "muted" }, "from queue ", i.queue || "–", " · answer within ", countdown),
      el("div", { class: "row" },
        el("button", { type: "button", onclick: () => answerOffer(i.id, "accept") }, "Accept"),
        el("button", { type: "button", class: "secondary", onclick: () => answerOffer(i.id, "reject") }, "Reject")));
  }));
  tickCountdowns();
}

/** Who the interaction is with, as far as its properties tell. */
function customer(i) {
  const p = i.properties || {};
  return p.customer_name || p.from_name || p.from || p.phone || "";
}

function tickCountdowns() {
  for (const node of document.querySelectorAll(".countdown[data-deadline]")) {
    const left = Number(node.dataset.deadline) - Date.now();
    node.textContent = left > 0 ? Math.ceil(left / 1000) + " s" : "expired";
  }
}
setInterval(tickCountdowns, 500);

async function answerOffer(id, action) {
  try {
    await api("POST", "/v1/desk/interactions/" + id + "/" + action, action === "reject" ? { reason: "rejected on the desktop" } : {});
    if (action === "accept") selected = id;
    await refresh();
  } catch (error) { say($("state-status"), error.message, true); }
}

function renderMine() {
  const mine = [...(me.owned || []), ...(me.consulting || [])];
  $("no-mine").classList.toggle("hidden", mine.length > 0);
  replace($("mine"), mine.map((i) => el("li", { "data-interaction": i.id },
    el("button", { type: "button", class: "link", "aria-current": i.id === selected ? "true" : null, onclick: () => { selected = i.id; renderWorkspace(); } },
      i.media_type + " · " + title(i)),
    i.properties && i.properties.qa_status === "returned" ? el("span", { class: "pill returned" }, " returned by QA") : null)));
  if (selected && !mine.some((i) => i.id === selected)) closeWorkspace();
}

function closeWorkspace() {
  selected = null;
  shown = null;
  closeChat();
  $("ws").classList.add("hidden");
  $("ws-empty").classList.remove("hidden");
}

/** Fills the workspace for `selected`, loading its content when it was just chosen. */
async function renderWorkspace() {
  let i;
  try { i = await api("GET", "/v1/desk/interactions/" + selected); } catch (error) { say($("ws-status-line"), error.message, true); return; }
  if (i.id !== selected) return;
  const fresh = shown !== i.id;
  shown = i.id;
  const p = i.properties || {};
  $("ws-empty").classList.add("hidden");
  $("ws").classList.remove("hidden");
  $("ws").dataset.interaction = i.id;
  $("ws-media").textContent = i.media_type;
  $("ws-subject").textContent = title(i);
  $("ws-status").textContent = i.status + (i.owner ? " · " + i.owner : "");
  $("ws-from").textContent = [p.from && "From " + p.from, p.to && "to " + p.to, p.category && "category " + p.category].filter(Boolean).join(" · ");
  replace($("ws-qa"), p.qa_status === "returned" ? el("div", { class: "banner", role: "alert" }, el("strong", {}, "Returned by QA" + (p.qa_reviewer ? " (" + p.qa_reviewer + ")" : "") + ": "), p.qa_comment || "") : null);
  const isChat = i.media_type === "chat";
  $("ws-chat").classList.toggle("hidden", !isChat);
  $("ws-content").classList.toggle("hidden", isChat);
  $("ws-reply").classList.toggle("hidden", isChat);
  if (!fresh) return;
  say($("ws-status-line"), "");
  // A reply QA returned is reworked in place: its text is what the reviewer saw.
  $("reply-text").value = p.draft_text || (p.qa_status === "returned" ? p.reply_text : "") || "";
  if (isChat) openChat(i.id); else { closeChat(); loadContent(i); }
  loadResponses(i);
  loadHistory(i);
}

async function loadContent(i) {
  const p = i.properties || {};
  // A reply shows the customer's message it answers.
  const source = i.parent_interaction_id || i.id;
  $("ws-content-title").textContent = i.parent_interaction_id ? "The message it answers" : "Message";
  $("ws-body").textContent = i.parent_interaction_id ? "" : p.body || p.text || "";
  replace($("ws-parts"));
  try {
    const detail = await api("GET", "/v1/interactions/" + source + "/detail");
    const contents = (detail.contents || []).slice().sort((a, b) => (a.part_index || 0) - (b.part_index || 0));
    const body = contents.find((c) => c.role === "text_body");
    if (body && body.text) $("ws-body").textContent = body.text;
    // The HTML twin of the body and the raw message are kept for the record, not shown here.
    const parts = contents.filter((c) => c !== body && c.role !== "html_body" && !(c.role === "other" && c.mime_type === "message/rfc822"));
    const mms = contents.some((c) => c.role === "mms_part" || c.role === "smil");
    replace($("ws-parts"), parts.length ? el("h3", {}, mms ? "Parts, in presentation order" : "Attachments") : null, el("ol", {}, parts.map((c) => el("li", { "data-part": c.part_index },
      c.mime_type && c.mime_type.startsWith("image/") && c.blob_ref ? el("img", { src: "/v1/blobs/" + c.blob_ref, alt: c.filename || "image part " + c.part_index }) : null,
      c.text ? el("div", { class: "body-text" }, c.text) : null,
      el("span", { class: "muted" }, (c.filename || c.role || "") + " · " + (c.mime_type || ""))))));
  } catch (_) { /* not in UCS (yet): the properties are what there is */ }
}

async function loadResponses(i) {
  try {
    const r = await api("GET", "/v1/desk/interactions/" + i.id + "/responses");
    const list = r.responses || [];
    replace($("ws-responses"), list.length ? list.map((s) => el("div", { class: "response" + (s.suggested ? " suggested" : ""), "data-response": s.name },
      el("div", { class: "row" }, el("strong", { class: "grow" }, s.name, s.suggested ? " (suggested)" : ""),
        el("button", { type: "button", class: "secondary", "aria-label": "Use " + s.name, onclick: () => { $("reply-text").value = s.body_text; $("reply-text").focus(); } }, "Use")),
      el("div", { class: "muted" }, s.body_text.length > 140 ? s.body_text.slice(0, 140) + "…" : s.body_text))) : el("p", { class: "muted" }, "None for this media."));
  } catch (error) { replace($("ws-responses"), el("p", { class: "status error" }, error.message)); }
}

async function loadHistory(i) {
  if (!i.contact_id) { replace($("ws-history"), el("li", { class: "muted" }, "No contact identified.")); return; }
  try {
    const h = await api("GET", "/v1/contacts/" + i.contact_id + "/history");
    const items = (Array.isArray(h) ? h : []).filter((x) => x.id !== i.id);
    replace($("ws-history"), items.length ? items.map((x) => el("li", {},
      el("span", { class: "pill" }, x.media_type || ""), " ", x.subject || x.id, " ", el("span", { class: "muted" }, x.status || "", " ", x.created_at ? new Date(x.created_at).toLocaleString() : ""))) : el("li", { class: "muted" }, "No earlier interactions."));
  } catch (error) { replace($("ws-history"), el("li", { class: "status error" }, "History unavailable: " + error.message)); }
}

async function act(action, body) {
  try {
    await api("POST", "/v1/desk/interactions/" + selected + "/" + action, body || {});
    say($("ws-status-line"), action + ": done");
    await refresh();
  } catch (error) { say($("ws-status-line"), error.message, true); }
}

// --- live chat over the chat server's WebSocket ---

function openChat(id) {
  if (chat && chat.id === id) return;
  closeChat();
  replace($("chat-log"));
  chat = { id, socket: null, lastSeq: 0, participants: {}, typing: new Set(), typingSent: false, typingTimer: null, closed: false };
  connectChat();
}

function connectChat() {
  const c = chat;
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  // Same origin: the handshake carries the login's HttpOnly cookie; no token in the URL.
  const socket = new WebSocket(scheme + "//" + location.host + "/v1/chats/" + c.id + "/ws");
  c.socket = socket;
  socket.onopen = () => { socket.send(JSON.stringify({ type: "resume", after: c.lastSeq })); say($("chat-status"), ""); };
  socket.onmessage = (e) => {
    let frame; try { frame = JSON.parse(e.data); } catch (_) { return; }
    if (frame.type === "event") { if (frame.seq > c.lastSeq) { c.lastSeq = frame.seq; showChatEvent(frame.event); } }
    else if (frame.type === "error") say($("chat-status"), frame.reason, true);
    else if (frame.type === "closed") { c.closed = true; say($("chat-status"), "You left this chat: " + frame.reason); }
  };
  socket.onclose = () => { if (chat === c && !c.closed) setTimeout(() => { if (chat === c) connectChat(); }, 1000); };
}

function closeChat() {
  if (!chat) return;
  chat.closed = true;
  if (chat.socket) chat.socket.close();
  chat = null;
}

function showChatEvent(event) {
  const [kind, body] = Object.entries(event.payload)[0];
  const log = $("chat-log");
  const line = (cls, who, text) => { log.append(el("div", { class: "msg " + cls }, who ? el("span", { class: "who" }, who + ":") : null, text)); log.scrollTop = log.scrollHeight; };
  if (kind === "ParticipantJoined") { chat.participants[body.participant_id] = body.display_name; line("system", null, body.display_name + " joined" + (body.agents_only ? " (agents only)" : "")); }
  else if (kind === "ParticipantLeft") { line("system", null, (chat.participants[body.participant_id] || body.participant_id) + " left"); }
  else if (kind === "MessagePosted") {
    chat.typing.delete(body.participant_id);
    if (body.participant_id === "system") line("system", null, body.text);
    else line(body.visibility === "agents" ? "whisper" : "", (chat.participants[body.participant_id] || body.participant_id) + (body.visibility === "agents" ? " (whisper)" : ""), body.text);
  }
  else if (kind === "TypingChanged") { if (body.participant_id !== Desk.user) { if (body.typing) chat.typing.add(body.participant_id); else chat.typing.delete(body.participant_id); } }
  else if (kind === "SessionEnded") { line("system", null, "The chat ended (" + body.reason + ")."); }
  else if (kind === "SessionStarted") { line("system", null, body.customer_name + " started the chat" + (body.subject ? ": " + body.subject : "")); }
  const typing = [...chat.typing].map((p) => chat.participants[p] || p);
  $("chat-typing").textContent = typing.length ? typing.join(", ") + " is typing…" : "";
}

function chatSend(frame) {
  if (chat && chat.socket && chat.socket.readyState === WebSocket.OPEN) { chat.socket.send(JSON.stringify(frame)); return true; }
  say($("chat-status"), "Not connected; reconnecting…", true);
  return false;
}

// Typing: one frame when typing starts and one when it stops (the server limits frames).
function onChatInput() {
  if (!chat) return;
  if (!chat.typingSent && $("chat-text").value) { if (chatSend({ type: "typing", typing: true })) chat.typingSent = true; }
  clearTimeout(chat.typingTimer);
  chat.typingTimer = setTimeout(() => { if (chat && chat.typingSent) { chatSend({ type: "typing", typing: false }); chat.typingSent = false; } }, 3000);
}

function setup() {
  $("chat-text").addEventListener("input", onChatInput);
  $("chat-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const text = $("chat-text").value;
    if (!text.trim() || !chat) return;
    const frame = { type: "message", text, client_message_id: "d-" + Date.now() + "-" + Math.random().toString(36).slice(2, 8) };
    if ($("chat-whisper").checked) frame.visibility = "agents";
    if (chatSend(frame)) { $("chat-text").value = ""; chat.typingSent = false; clearTimeout(chat.typingTimer); }
  });
  $("chat-end").addEventListener("click", () => chatSend({ type: "end" }));
  $("reply-send").addEventListener("click", () => act("release", { text: $("reply-text").value }));
  $("reply-draft").addEventListener("click", () => act("draft", { text: $("reply-text").value }));
  $("transfer").addEventListener("click", () => {
    const to = $("transfer-to").value.trim();
    act("transfer", to.startsWith("queue:") ? { queue: to.slice(6) } : { agent: to });
  });
  $("consult").addEventListener("click", () => act("consult", { agent: $("consult-agent").value.trim(), role: $("consult-role").value }));
  $("return").addEventListener("click", () => act("return", {}));
  $("done").addEventListener("click", () => act("done", {}));
  setupLogin("agent", () => {
    refresh();
    deskEvents((kind) => {
      $("connection").textContent = kind === "disconnected" ? "reconnecting" : "live";
      if (kind !== "disconnected") scheduleRefresh();
    });
  });
}

document.addEventListener("DOMContentLoaded", setup);
