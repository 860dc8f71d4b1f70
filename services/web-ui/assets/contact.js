// The contact form: posts to the web API's POST /v1/forms/email and shows its answer.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const form = $("contact");
  const status = $("contact-status");
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const email = $("email").value.trim(), message = $("message").value;
    if (!email || !$("email").checkValidity()) { say(status, "Please give an e-mail address we can answer.", true); $("email").focus(); return; }
    if (!message.trim()) { say(status, "Please write a message.", true); $("message").focus(); return; }
    say(status, "Sending…");
    try {
      const body = { email, message };
      if ($("name").value.trim()) body.name = $("name").value.trim();
      if ($("subject").value.trim()) body.subject = $("subject").value.trim();
      const r = await api("POST", "/v1/forms/email", body);
      form.reset();
      say(status, "Thank you, we have your message" + (r && r.interaction_id ? " (reference " + r.interaction_id.slice(0, 8) + ")" : "") + ".");
    } catch (error) { say(status, "Not sent: " + error.message, true); }
  });
});
