// Shared by the staff pages: the desk session, calls to the APIs, safe DOM building.
// Text from customers and agents is only ever set as text (textContent), never as HTML.
"use strict";

const Desk = {
  get token() { return sessionStorage.getItem("desk.token"); },
  get user() { return sessionStorage.getItem("desk.user"); },
  get role() { return sessionStorage.getItem("desk.role"); },
  save(login) {
    sessionStorage.setItem("desk.token", login.token);
    sessionStorage.setItem("desk.user", login.user);
    sessionStorage.setItem("desk.role", login.role);
  },
  forget() { sessionStorage.removeItem("desk.token"); sessionStorage.removeItem("desk.user"); sessionStorage.removeItem("desk.role"); },
};

/** Calls an API on this origin; resolves to the parsed JSON, rejects with the server's reason. */
async function api(method, path, body) {
  const headers = { "accept": "application/json" };
  if (Desk.token) headers["authorization"] = "Bearer " + Desk.token;
  if (body !== undefined) headers["content-type"] = "application/json";
  const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (_) { data = { error: text }; }
  if (!response.ok) {
    const error = new Error((data && data.error) || (response.status + " " + response.statusText));
    error.status = response.status;
    throw error;
  }
  return data;
}

/** el("li", {class: "x", onclick: f}, "text", child) — children are nodes or text. */
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function $(id) { return document.getElementById(id); }

function replace(node, ...children) { node.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined && c !== false)); }

/** Shows a result or an error in a status line (an aria-live region). */
function say(node, message, isError) {
  node.textContent = message || "";
  node.classList.toggle("error", !!isError);
}

function duration(ms) {
  if (ms === null || ms === undefined) return "–";
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return s + " s";
  const m = Math.floor(s / 60);
  if (m < 60) return m + " min " + (s % 60) + " s";
  return Math.floor(m / 60) + " h " + (m % 60) + " min";
}

function time(ms) { return ms ? new Date(ms).toLocaleTimeString() : ""; }

/** The line an interaction is known by in lists. */
function title(i) {
  const p = i.properties || {};
  return p.subject || p.customer_name || p.from || p.phone || i.id.slice(0, 8);
}

/** Wires the login form; `onLogin` runs once logged in (now or from an earlier login). */
function setupLogin(expectRole, onLogin) {
  const form = $("login");
  const status = $("login-status");
  const show = (loggedIn) => {
    form.classList.toggle("hidden", loggedIn);
    $("app").classList.toggle("hidden", !loggedIn);
    $("whoami").textContent = loggedIn ? Desk.user + " (" + Desk.role + ")" : "";
    $("logout").classList.toggle("hidden", !loggedIn);
  };
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    say(status, "Logging in…");
    try {
      const login = await api("POST", "/v1/desk/login", { user: $("user").value.trim(), password: $("password").value });
      if (expectRole && login.role !== expectRole) throw new Error("this page is for the " + expectRole + " role; " + login.user + " is " + login.role);
      Desk.save(login);
      say(status, "");
      show(true);
      onLogin();
    } catch (error) { say(status, error.message, true); }
  });
  $("logout").addEventListener("click", async () => {
    try { if (Desk.role === "agent") await api("POST", "/v1/desk/state", { state: "logged_out" }); } catch (_) { /* the token may have expired */ }
    try { await api("POST", "/v1/desk/logout", {}); } catch (_) { /* the cookie goes with its expiry anyway */ }
    Desk.forget();
    location.reload();
  });
  show(!!Desk.token);
  if (Desk.token) onLogin();
}

/** The desk's event stream (server-sent events); reconnects by itself. */
function deskEvents(onEvent) {
  const source = new EventSource("/v1/desk/events");
  for (const kind of ["hello", "offer", "interaction", "agent", "lagged"]) {
    source.addEventListener(kind, (e) => { let data = null; try { data = JSON.parse(e.data); } catch (_) { /* keep-alive */ } onEvent(kind, data); });
  }
  source.onerror = () => onEvent("disconnected", null);
  return source;
}
