// The supervisor dashboard: live queues and agents pushed from the stat projection
// (GET /v1/stats/stream), the last hour as charts, a queue view with move / pull / lock /
// priority, the QA review inbox, an interaction's audit timeline and the queues at a past
// moment, both rebuilt from the log.
"use strict";

const QA_QUEUE = "qa-review";
let stats = { queues: [], agents: [] };
let refreshTimer = null;

function renderQueues(now) {
  $("queues-at").textContent = now ? "at " + time(now) : "";
  replace($("queues").tBodies[0], stats.queues.map((q) => el("tr", { "data-queue": q.queue },
    el("th", { scope: "row" }, q.queue),
    el("td", { class: "num", "data-field": "waiting" }, q.waiting),
    el("td", { class: "num", "data-field": "offered" }, q.offered),
    el("td", { class: "num" }, duration(q.oldest_wait_ms)),
    el("td", { class: "num" }, q.service_level === null || q.service_level === undefined ? "–" : Math.round(q.service_level * 100) + " %"),
    el("td", { class: "num", "data-field": "answered" }, q.answered),
    el("td", { class: "num" }, q.processed),
    el("td", { class: "num" }, q.abandoned))));
  const select = $("qv-queue");
  const chosen = select.value;
  const names = [...new Set([...stats.queues.map((q) => q.queue), QA_QUEUE])].sort();
  if (names.join() !== [...select.options].map((o) => o.value).join()) {
    replace(select, names.map((n) => el("option", { value: n }, n)));
    if (names.includes(chosen)) select.value = chosen;
  }
}

function renderAgents() {
  replace($("agents").tBodies[0], stats.agents.map((a) => el("tr", { "data-agent": a.id },
    el("th", { scope: "row" }, a.id),
    el("td", {}, el("span", { class: "pill " + a.state }, a.state)),
    el("td", {}, (a.ready || []).join(", ") || "–"),
    el("td", { class: "num" }, a.load + " / " + a.capacity),
    el("td", { class: "num" }, duration(a.in_state_ms)))));
}

function streamStats() {
  const source = new EventSource("/v1/stats/stream");
  source.addEventListener("stats", (e) => {
    let data; try { data = JSON.parse(e.data); } catch (_) { return; }
    stats = data;
    $("connection").textContent = "live";
    renderQueues(data.now);
    renderAgents();
  });
  source.onerror = () => { $("connection").textContent = "reconnecting"; };
}

async function loadCharts() {
  try {
    const h = await api("GET", "/v1/stats/history?minutes=60");
    const names = [...new Set(h.samples.flatMap((s) => Object.keys(s.queues)))].sort();
    const depth = names.map((name) => ({ name, points: h.samples.map((s) => [s.at, s.queues[name] ? s.queues[name].waiting : 0]) }));
    const level = names.map((name) => ({ name, points: h.samples.map((s) => [s.at, s.queues[name] && s.queues[name].service_level !== null ? s.queues[name].service_level * 100 : null]) }));
    lineChart($("chart-depth"), $("legend-depth"), depth, { from: h.from, to: h.to });
    lineChart($("chart-sl"), $("legend-sl"), level, { from: h.from, to: h.to, yMax: 100, yLabel: (v) => Math.round(v) + "%" });
  } catch (error) { $("legend-depth").textContent = "Charts unavailable: " + error.message; }
}

async function showQueue() {
  const queue = $("qv-queue").value;
  if (!queue) return;
  try {
    const view = await api("GET", "/v1/desk/queues/" + encodeURIComponent(queue));
    const rows = (view.interactions || []).map((i) => el("tr", { "data-interaction": i.id },
      el("td", {}, el("span", { class: "pill" }, i.media_type), " ", title(i), el("div", { class: "muted" }, i.id)),
      el("td", {}, i.status, i.lock ? " · locked by " + i.lock.holder : "", i.offer ? " · offered to " + i.offer.agent_id : ""),
      el("td", { class: "num" }, i.priority),
      el("td", {},
        el("div", { class: "row" },
          el("button", { type: "button", "aria-label": "Pull " + title(i), onclick: () => act(i.id, "pull", {}, $("qv-status")) }, "Pull"),
          i.lock ? el("button", { type: "button", class: "secondary", onclick: () => act(i.id, "unlock", {}, $("qv-status")) }, "Unlock")
                 : el("button", { type: "button", class: "secondary", onclick: () => act(i.id, "lock", {}, $("qv-status")) }, "Lock")),
        el("div", { class: "row" },
          el("label", { class: "sr-only", for: "prio-" + i.id }, "Priority"), el("input", { id: "prio-" + i.id, type: "number", value: i.priority, class: "grow" }),
          el("button", { type: "button", class: "secondary", onclick: () => act(i.id, "priority", { priority: Number($("prio-" + i.id).value) }, $("qv-status")) }, "Set priority")),
        el("div", { class: "row" },
          el("label", { class: "sr-only", for: "move-" + i.id }, "Move to queue"), el("input", { id: "move-" + i.id, placeholder: "queue", class: "grow" }),
          el("button", { type: "button", class: "secondary", onclick: () => act(i.id, "move", { queue: $("move-" + i.id).value.trim() }, $("qv-status")) }, "Move")))));
    replace($("qv").tBodies[0], rows.length ? rows : el("tr", {}, el("td", { colspan: 4, class: "muted" }, "Empty.")));
  } catch (error) { say($("qv-status"), error.message, true); }
}

async function act(id, action, body, status) {
  try {
    await api("POST", "/v1/desk/interactions/" + id + "/" + action, body);
    say(status, action + " " + id.slice(0, 8) + ": done");
  } catch (error) { say(status, error.message, true); }
  scheduleRefresh();
}

async function showQa() {
  try {
    const view = await api("GET", "/v1/desk/queues/" + QA_QUEUE);
    const items = view.interactions || [];
    $("qa-empty").classList.toggle("hidden", items.length > 0);
    replace($("qa"), items.map((i) => {
      const p = i.properties || {};
      const comment = el("input", { id: "qa-comment-" + i.id, placeholder: "what to change" });
      return el("li", { "data-interaction": i.id },
        el("div", {}, el("strong", {}, title(i)), " ", el("span", { class: "muted" }, "by ", p.author_agent || "?", " to ", p.to || "?")),
        el("div", { class: "body-text" }, p.reply_text || ""),
        el("div", { class: "row" },
          el("button", { type: "button", onclick: () => act(i.id, "qa", { decision: "approve" }, $("qa-status")) }, "Approve"),
          el("div", { class: "grow" }, el("label", { for: "qa-comment-" + i.id }, "Comment"), comment),
          el("button", { type: "button", class: "secondary", onclick: () => act(i.id, "qa", { decision: "return", comment: comment.value }, $("qa-status")) }, "Return")));
    }));
  } catch (error) { say($("qa-status"), error.message, true); }
}

async function showMine() {
  try {
    const me = await api("GET", "/v1/desk/me");
    const mine = me.owned || [];
    $("mine-empty").classList.toggle("hidden", mine.length > 0);
    replace($("mine"), mine.map((i) => el("li", { "data-interaction": i.id }, el("span", { class: "pill" }, i.media_type), " ", title(i), " ",
      el("button", { type: "button", class: "secondary", onclick: () => act(i.id, "return", {}, $("qv-status")) }, "Return to queue"),
      " ", el("button", { type: "button", onclick: () => act(i.id, "done", {}, $("qv-status")) }, "Done"))));
  } catch (_) { /* shown on the next refresh */ }
}

function scheduleRefresh() {
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(() => { showQueue(); showQa(); showMine(); }, 200);
}

async function showAudit(id) {
  replace($("audit"));
  say($("audit-status"), "Reading the log…");
  try {
    const audit = await api("GET", "/v1/desk/interactions/" + encodeURIComponent(id) + "/timeline");
    replace($("audit"), audit.steps.map((s) => el("li", { "data-kind": s.kind },
      el("span", { class: "muted" }, new Date(s.at).toLocaleTimeString(), " "), el("span", { class: "kind" }, s.record + " " + s.kind),
      s.issued_by ? el("span", { class: "muted" }, " by " + s.issued_by) : null,
      el("div", { class: "muted" }, summarize(s.payload)))));
    say($("audit-status"), audit.steps.length + " steps from partition " + audit.partition + (audit.undecodable.length ? "; undecodable: " + audit.undecodable.join("; ") : ""));
  } catch (error) { say($("audit-status"), error.message, true); }
}

function summarize(payload) {
  if (!payload || typeof payload !== "object") return "";
  return Object.entries(payload).filter(([, v]) => v !== null && !(typeof v === "object" && Object.keys(v).length === 0))
    .map(([k, v]) => k + "=" + (typeof v === "object" ? JSON.stringify(v) : v)).join(" ").slice(0, 300);
}

async function timeTravel() {
  const typed = $("tt-at").value;
  const at = typed ? new Date(typed).getTime() : Date.now() - Number($("tt-minutes").value) * 60000;
  say($("tt-status"), "Replaying the log…");
  try {
    const past = await api("GET", "/v1/desk/history/queues?at=" + at);
    $("tt-when").textContent = "As at " + new Date(past.at).toLocaleString() + " (" + past.events_applied + " events replayed)";
    replace($("tt").tBodies[0], past.queues.length ? past.queues.map((q) => el("tr", { "data-queue": q.queue },
      el("th", { scope: "row" }, q.queue), el("td", { class: "num", "data-field": "waiting" }, q.waiting), el("td", { class: "num" }, q.offered),
      el("td", {}, q.interactions.map((i) => el("div", { class: "muted" }, i.media_type + " · " + title(i) + " · " + i.status))))) : el("tr", {}, el("td", { colspan: 4, class: "muted" }, "No queue held anything.")));
    say($("tt-status"), "");
  } catch (error) { say($("tt-status"), error.message, true); }
}

function setup() {
  $("qv-refresh").addEventListener("click", showQueue);
  $("qv-queue").addEventListener("change", showQueue);
  $("audit-form").addEventListener("submit", (e) => { e.preventDefault(); showAudit($("audit-id").value.trim()); });
  $("tt-minutes").addEventListener("input", () => { $("tt-minutes-out").textContent = $("tt-minutes").value; $("tt-at").value = ""; });
  $("tt-form").addEventListener("submit", (e) => { e.preventDefault(); timeTravel(); });
  setupLogin("supervisor", () => {
    streamStats();
    loadCharts();
    setInterval(loadCharts, 15000);
    scheduleRefresh();
    deskEvents((kind) => { if (kind !== "disconnected" && kind !== "hello") scheduleRefresh(); });
  });
}

document.addEventListener("DOMContentLoaded", setup);
