// Drives Switchboard's web pages in Debian's headless Chromium with playwright-core.
// Started by tests/e2e/tests/web_pages.rs with BASE_URL (a `switchboard up`), ARTIFACTS (where
// screenshots go), PASSWORD (the desk users'), HELD_ID (an interaction waiting in "held").
// Exits non-zero with the reason on the first thing that does not happen.
import { chromium } from "playwright-core";
import path from "node:path";
import http from "node:http";
import { createRequire } from "node:module";

const axeScript = createRequire(import.meta.url).resolve("axe-core/axe.min.js");

const base = process.env.BASE_URL;
const artifacts = process.env.ARTIFACTS;
const password = process.env.PASSWORD;
const heldId = process.env.HELD_ID;
const sitePort = Number(process.env.SITE_PORT);
const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";
const TIMEOUT = 30_000;

function step(message) { console.log(new Date().toISOString().slice(11, 23), message); }
async function shot(page, name) {
  await page.screenshot({ path: path.join(artifacts, name + ".png"), fullPage: true });
  step("screenshot " + name + ".png");
  await accessibility(page, name);
}

// WCAG 2 A and AA rules (axe-core) on the page as it stands; serious and critical findings fail
// the run at the end, each named with its rule and the elements it found.
const inaccessible = [];
async function accessibility(page, name) {
  await page.addScriptTag({ path: axeScript });
  const result = await page.evaluate(() => window.axe.run(document, { runOnly: { type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"] } }));
  for (const v of result.violations) {
    const line = name + ": " + v.id + " (" + v.impact + ") " + v.help + " — " + v.nodes.slice(0, 4).map((n) => n.target.join(" ")).join(", ");
    if (v.impact === "serious" || v.impact === "critical") inaccessible.push(line); else step("accessibility note " + line);
  }
}

/** Waits until `read()` (run in the page) returns something truthy; fails with `what`. */
async function until(page, what, read, arg) {
  try { return await (await page.waitForFunction(read, arg, { timeout: TIMEOUT, polling: 100 })).jsonValue(); }
  catch (e) { throw new Error("timed out waiting for " + what + ": " + e.message.split("\n")[0]); }
}

async function login(page, url, user) {
  await page.goto(base + url);
  await page.getByLabel("User").fill(user);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Log in" }).click();
  await page.locator("#app").waitFor({ state: "visible" });
}

// A customer's web site on another origin (listed in [chat] allowed_origins), embedding the
// widget with the one tag the README gives; the chat crosses origins as it would in production.
const site = http.createServer((request, response) => {
  response.writeHead(200, { "content-type": "text/html; charset=utf-8" });
  response.end(`<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Shop</title>
<script src="${base}/ui/chat-widget.js" defer></script></head>
<body><h1>Shop</h1><p>Our parcels travel far.</p></body></html>`);
});
await new Promise((resolve) => site.listen(sitePort, "127.0.0.1", resolve));
const siteUrl = "http://127.0.0.1:" + sitePort + "/";

const browser = await chromium.launch({ executablePath, headless: true, args: ["--no-sandbox", "--disable-dev-shm-usage"] });
const errors = [];
async function newPage(name) {
  // bypassCSP only so that axe-core can be added to the page for the accessibility check.
  const context = await browser.newContext({ viewport: { width: 1366, height: 900 }, bypassCSP: true });
  const page = await context.newPage();
  page.setDefaultTimeout(TIMEOUT);
  page.on("pageerror", (e) => errors.push(name + ": " + e.message));
  page.on("console", (m) => { if (m.type() === "error" && !/Failed to load resource|EventSource|WebSocket/.test(m.text())) errors.push(name + " console: " + m.text()); });
  return page;
}

try {
  // --- Ann opens the desktop and becomes ready for chat and e-mail.
  const agent = await newPage("desk");
  await login(agent, "/ui/desk", "ann");
  for (const media of ["chat", "email"]) {
    await agent.getByRole("button", { name: "Ready for " + media }).click();
    await agent.locator(`[data-media-state="${media}"].ready`).waitFor();
  }
  step("ann is ready for chat and e-mail");

  // --- A customer starts a chat from the widget on the shop's site.
  const customer = await newPage("widget");
  await customer.goto(siteUrl);
  await customer.getByRole("button", { name: "Chat with us" }).click();
  await customer.getByLabel("Your name").fill("Ada Lovelace");
  await customer.getByLabel("What is it about?").fill("My parcel");
  await customer.getByRole("button", { name: "Start chat" }).click();
  await customer.locator("#sb-chat-log").getByText("thank you for contacting us").waitFor();
  step("the customer is greeted");

  // --- Ann gets the offer with its countdown, accepts, and the chat opens in her workspace.
  const offer = agent.locator("#offers li.offer", { hasText: "Ada Lovelace" });
  await offer.waitFor();
  const countdown = await offer.locator(".countdown").textContent();
  if (!/^\d+ s$/.test(countdown.trim())) throw new Error("the offer shows no countdown: " + countdown);
  await offer.getByRole("button", { name: "Accept" }).press("Enter");  // by keyboard
  await agent.locator("#ws-chat").waitFor({ state: "visible" });
  await agent.locator("#chat-log").getByText("Ada Lovelace started the chat").waitFor();
  step("ann accepted the chat (countdown was " + countdown.trim() + ")");

  await agent.getByLabel("Message").fill("Hello Ada, this is Ann. How can I help?");
  await agent.getByRole("button", { name: "Send", exact: true }).click();
  await customer.locator("#sb-chat-log").getByText("Hello Ada, this is Ann. How can I help?").waitFor();
  await customer.locator("#sb-chat-log").getByText("ann joined the chat").waitFor();
  step("the customer sees Ann's message");

  // The customer types: Ann sees it, then the message.
  await customer.locator("#sb-chat-text").pressSequentially("Where is my parcel?", { delay: 20 });
  await agent.locator("#chat-typing").getByText("is typing").waitFor();
  step("ann sees the customer typing");
  await customer.locator("#sb-chat-text").press("Enter");
  await agent.locator("#chat-log").getByText("Where is my parcel?").waitFor();
  await until(agent, "the typing notice to clear", () => document.getElementById("chat-typing").textContent === "");
  await agent.getByLabel("Message").fill("It left our warehouse this morning.");
  await agent.getByLabel("Message").press("Enter");
  await customer.locator("#sb-chat-log").getByText("It left our warehouse this morning.").waitFor();
  step("the conversation went both ways");
  await shot(agent, "desk-chat");
  await shot(customer, "widget-chat");
  await agent.getByRole("button", { name: "End chat" }).click();
  await customer.locator("#sb-chat-log").getByText("The chat has ended.").waitFor();
  await agent.getByRole("button", { name: "Done" }).click();
  await until(agent, "the chat to leave Ann's list", () => !document.querySelector("#mine [data-interaction]"));
  step("the chat ended and Ann is done with it");

  // --- The contact form: an e-mail, answered from the desktop with a standard response.
  const form = await newPage("contact");
  await form.goto(base + "/ui/contact");
  // Keyboard only: Tab through the fields in their visual order, Enter on the button.
  for (const text of ["Ada Lovelace", "ada@example.com", "Parcel", "Hello, when will my order ship?"]) {
    await form.keyboard.press("Tab");
    await form.keyboard.type(text);
  }
  const typed = [await form.getByLabel("Your name").inputValue(), await form.getByLabel("Your e-mail address").inputValue(), await form.getByLabel("Subject").inputValue(), await form.getByLabel("Message").inputValue()];
  if (typed.join("|") !== "Ada Lovelace|ada@example.com|Parcel|Hello, when will my order ship?") throw new Error("the Tab order of the contact form is not its visual order: " + typed.join("|"));
  await form.keyboard.press("Tab");
  await form.keyboard.press("Enter");
  await form.locator("#contact-status").getByText("Thank you").waitFor();
  await shot(form, "contact");
  step("the contact form was sent");

  const mail = agent.locator("#offers li.offer", { hasText: "Parcel" });
  await mail.waitFor();
  await mail.getByRole("button", { name: "Accept" }).click();
  await agent.locator("#ws-body").getByText("when will my order ship?").waitFor();
  const suggestion = agent.locator('#ws-responses [data-response="Order status"]');
  await suggestion.waitFor();
  await suggestion.getByRole("button", { name: "Use Order status" }).click();
  const reply = await agent.getByLabel("Reply").inputValue();
  if (!reply.startsWith("Dear Ada Lovelace, your order ships tomorrow.") || reply.includes("{{")) throw new Error("the response was not filled: " + reply);
  await shot(agent, "desk-email");
  await agent.getByRole("button", { name: "Send reply" }).click();
  await agent.locator("#ws-status-line").getByText("release: done").waitFor();
  step("ann answered the e-mail with the suggested response");

  // --- Sue reviews the reply in the QA inbox and returns it with a comment.
  const supervisor = await newPage("supervisor");
  await login(supervisor, "/ui/supervisor", "sue");
  const review = supervisor.locator("#qa li", { hasText: "your order ships tomorrow" });
  await review.waitFor();
  await review.getByLabel("Comment").fill("Please add the tracking link.");
  await review.getByRole("button", { name: "Return" }).click();
  await supervisor.locator("#qa-status").getByText(": done").waitFor();
  step("sue returned the reply with a comment");

  // Ann is offered her returned reply, sees the comment, adds the link and sends it again.
  const returned = agent.locator("#offers li.offer", { hasText: "Re: Parcel" });
  await returned.waitFor();
  await returned.getByRole("button", { name: "Accept" }).click();
  await agent.locator("#ws-qa").getByText("Please add the tracking link.").waitFor();
  await agent.locator("#ws-body").getByText("when will my order ship?").waitFor();
  const refilled = await agent.locator('#ws-responses [data-response="Order status"]').textContent();
  if (!refilled.includes("Dear Ada Lovelace") || refilled.includes("{{")) throw new Error("the returned reply's suggestion is not filled from the mail it answers: " + refilled);
  const draft = await agent.getByLabel("Reply").inputValue();
  if (!draft.startsWith("Dear Ada Lovelace, your order ships tomorrow.")) throw new Error("the returned reply's text is not in the editor: " + draft);
  await agent.getByLabel("Reply").fill(draft + " Track it at https://track.example/T123.");
  await shot(agent, "desk-qa-returned");
  await agent.getByRole("button", { name: "Send reply" }).click();
  // Resubmitted, it goes back to the outbound queue and leaves her hands.
  await until(agent, "the reworked reply to leave Ann's list", () => ![...document.querySelectorAll("#mine [data-interaction]")].some((n) => n.textContent.includes("Re: Parcel")));
  step("ann reworked the reply");

  // Sue approves the reworked reply; the inbox empties and the mail goes out.
  const again = supervisor.locator("#qa li", { hasText: "track.example/T123" });
  await again.waitFor();
  await again.getByRole("button", { name: "Approve" }).click();
  await supervisor.locator("#qa-empty").waitFor({ state: "visible" });
  step("sue approved it");

  // --- Sue pulls the held interaction and watches the dashboard change.
  const held = (n) => document.querySelector('#queues tr[data-queue="held"] [data-field="waiting"]')?.textContent === n;
  await until(supervisor, "the held queue to show 1 waiting", held, "1");
  await supervisor.getByLabel("Queue", { exact: true }).selectOption("held");
  const row = supervisor.locator(`#qv tr[data-interaction="${heldId}"]`);
  await row.waitFor();
  await shot(supervisor, "supervisor");
  const beforePull = Math.floor(Date.now() / 1000) * 1000 - 1000;
  await row.getByRole("button", { name: "Pull" }).click();
  await until(supervisor, "the held queue to show 0 waiting", held, "0");
  await supervisor.locator(`#mine [data-interaction="${heldId}"]`).waitFor();
  await until(supervisor, "sue to show as owner in the agents table", () => !!document.querySelector('#agents tr[data-agent="sue"]'));
  step("sue pulled it: held went from 1 to 0 on the dashboard");

  // Its audit timeline, from the log; the queues as they stood before the pull.
  await supervisor.getByLabel("Interaction id").fill(heldId);
  await supervisor.getByRole("button", { name: "Show timeline" }).click();
  await supervisor.locator("#audit li", { hasText: "AcceptOffer" }).first().waitFor();
  await supervisor.locator("#audit li", { hasText: "Submit" }).first().waitFor();
  const before = new Date(beforePull);
  // Chromium gives a datetime-local's value without ":00" seconds, and Playwright's fill
  // refuses a value that reads back differently ("Malformed value"): drop them here too.
  const local = new Date(before.getTime() - before.getTimezoneOffset() * 60000).toISOString().slice(0, 19).replace(/:00$/, "");
  await supervisor.getByLabel("or at").fill(local);
  await supervisor.getByRole("button", { name: "Rebuild" }).click();
  // Before the pull, "held" had it waiting (the live table now says 0).
  const past = supervisor.locator('#tt tr[data-queue="held"]');
  await past.getByText("Invoice question · waiting").waitFor();
  const pastWaiting = await past.locator('[data-field="waiting"]').textContent();
  if (pastWaiting !== "1") throw new Error("time travel shows " + pastWaiting + " waiting in held before the pull, not 1");
  await until(supervisor, "the charts to be drawn", () => document.querySelectorAll("#chart-depth path").length > 0);
  await shot(supervisor, "supervisor-history");
  step("timeline and time travel shown");

  if (errors.length) throw new Error("errors in the pages:\n" + errors.join("\n"));
  if (inaccessible.length) throw new Error("accessibility (WCAG 2.1 A/AA, serious or critical):\n" + inaccessible.join("\n"));
  step("all done");
} catch (e) {
  console.error("FAILED:", e.message);
  for (const context of browser.contexts()) for (const page of context.pages()) {
    try { await page.screenshot({ path: path.join(artifacts, "failure-" + Math.random().toString(36).slice(2, 6) + ".png"), fullPage: true }); } catch (_) { /* closed */ }
  }
  if (errors.length) console.error("page errors:\n" + errors.join("\n"));
  await browser.close();
  site.close();
  process.exit(1);
}
await browser.close();
site.close();
