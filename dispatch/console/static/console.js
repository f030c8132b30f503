// Shared by every console page: texts, times in the configured zone, and API calls with the CSRF token.
"use strict";
(function () {
  const C = window.CARELINE;
  const csrf = document.querySelector('meta[name="csrf-token"]').getAttribute("content");

  // A text from the server's catalogue for the page's language (the English id when missing).
  C.t = function (text, arg) {
    const s = C.texts[text] || text;
    return arg === undefined ? s : s.replace("%s", String(arg));
  };

  const timeFormat = new Intl.DateTimeFormat(C.lang === "en" ? "en-GB" : "zh-CN", {
    timeZone: C.tz, hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false,
  });
  const dateTimeFormat = new Intl.DateTimeFormat(C.lang === "en" ? "en-GB" : "zh-CN", {
    timeZone: C.tz, month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", hour12: false,
  });
  C.time = (iso) => (iso ? timeFormat.format(new Date(iso)) : "");
  const hmFormat = new Intl.DateTimeFormat(C.lang === "en" ? "en-GB" : "zh-CN", {
    timeZone: C.tz, hour: "2-digit", minute: "2-digit", hour12: false,
  });
  C.hm = (iso) => (iso ? hmFormat.format(new Date(iso)) : "");
  C.dateTime = (iso) => (iso ? dateTimeFormat.format(new Date(iso)) : "");
  // Seconds as m:ss (or h:mm:ss), for wait times and countdowns.
  C.duration = function (seconds) {
    const s = Math.max(0, Math.floor(seconds));
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
    const mm = h ? String(m).padStart(2, "0") : String(m);
    return (h ? h + ":" : "") + mm + ":" + String(r).padStart(2, "0");
  };

  // JSON to and from our API; a refusal becomes an Error with the API's message.
  C.api = async function (method, url, body) {
    const options = { method, headers: { Accept: "application/json" }, credentials: "same-origin" };
    if (method !== "GET") {
      options.headers["X-CSRF-Token"] = csrf;
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body || {});
    }
    const response = await fetch(url, options);
    if (response.status === 401) {
      window.location.href = "/console/login?next=" + encodeURIComponent(window.location.pathname);
      throw new Error("signed out");
    }
    const data = await response.json().catch(() => ({}));
    if (!response.ok) {
      const message = (data.error && data.error.message) || response.statusText;
      const error = new Error(message);
      error.status = response.status;
      throw error;
    }
    return data;
  };

  // An element with text (never HTML: names and notes come from people and devices).
  C.el = function (tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else if (key === "dataset") Object.assign(node.dataset, value);
      else node.setAttribute(key, value === true ? "" : value);
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  };

  const clock = document.getElementById("clock");
  if (clock) {
    const tick = () => { clock.textContent = timeFormat.format(new Date()); };
    tick();
    setInterval(tick, 1000);
  }
})();
