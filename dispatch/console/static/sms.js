// The SMS page: a reply typed in outbox mode goes to the API as if it came from that phone;
// the inbox then shows it with what it did (and the order or alert's state now).
"use strict";
(function () {
  const C = window.CARELINE;
  const form = document.getElementById("reply-form");
  if (!form) return;
  const result = document.getElementById("reply-result");
  const from = document.getElementById("reply-from");
  const body = document.getElementById("reply-body");

  for (const button of document.querySelectorAll("button.reply-to")) {
    button.addEventListener("click", () => {
      from.value = button.dataset.phone;
      body.focus();
    });
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const send = document.getElementById("reply-send");
    send.disabled = true;
    result.className = "reply-result";
    result.textContent = form.dataset.sending;
    try {
      const answer = await C.api("POST", "/api/v1/sms/outbox/reply", { from: from.value, body: body.value });
      window.location.href = "/console/sms?direction=in&reply=" + encodeURIComponent(answer.message_id) + "#replied";
    } catch (error) {
      result.className = "reply-result field-error";
      result.textContent = error.message;
      send.disabled = false;
    }
  });
})();
