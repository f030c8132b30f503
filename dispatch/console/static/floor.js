// The floor: boards from the snapshot, live events over the WebSocket, actions through /api/v1.
// Every text that came from a person or a device is put in with textContent (C.el), never as HTML.
"use strict";
(function () {
  const C = window.CARELINE;
  const t = C.t, el = C.el;
  const $ = (id) => document.getElementById(id);

  let snapshot = { calls: [], alerts: [], orders: [], notices: [], notices_open: 0, now: null };
  // Server time minus browser time, so timers agree with the server's deadlines.
  let skewMs = 0;
  let selectedAlert = null;
  let drawer = null; // {type: "card"|"alert"|"order", id}
  const knownAlerts = new Set();
  // Alerts that arrived while the page was open (or waited at its opening): they flash until taken.
  const flashing = new Set();
  // Critical notices flash the same way until someone acknowledges them.
  const knownNotices = new Set();
  const flashingNotices = new Set();

  const now = () => Date.now() + skewMs;
  const seconds = (iso) => (now() - new Date(iso).getTime()) / 1000;

  // -- sound: a short two-tone beep made with Web Audio (no file to fetch, works offline) ----------
  let audio = null;
  let soundOn = localStorage.getItem("careline.sound") !== "off";
  function beep() {
    if (!soundOn) return;
    try {
      audio = audio || new AudioContext();
      if (audio.state === "suspended") audio.resume();
      [0, 0.35].forEach((offset, i) => {
        const osc = audio.createOscillator(), gain = audio.createGain();
        osc.frequency.value = i ? 660 : 880;
        gain.gain.setValueAtTime(0.25, audio.currentTime + offset);
        gain.gain.exponentialRampToValueAtTime(0.001, audio.currentTime + offset + 0.3);
        osc.connect(gain).connect(audio.destination);
        osc.start(audio.currentTime + offset);
        osc.stop(audio.currentTime + offset + 0.3);
      });
    } catch (e) {
      // A browser without Web Audio still shows the red alert; the sound is an extra.
    }
  }
  function renderSoundToggle() {
    $("sound-toggle").textContent = soundOn ? t("Sound on") : t("Sound off");
  }
  $("sound-toggle").addEventListener("click", () => {
    soundOn = !soundOn;
    localStorage.setItem("careline.sound", soundOn ? "on" : "off");
    renderSoundToggle();
    if (soundOn) beep();
  });
  // Browsers start audio only after a gesture on the page: the first click or key unlocks it.
  const unlock = () => { if (!audio) { try { audio = new AudioContext(); } catch (e) { /* no audio */ } } };
  document.addEventListener("click", unlock, { once: true });
  document.addEventListener("keydown", unlock, { once: true });

  // -- messages -------------------------------------------------------------------------------------
  function toast(text, bad) {
    const node = el("div", { class: "toast" + (bad ? " bad" : ""), role: "status" }, text);
    document.body.append(node);
    setTimeout(() => node.remove(), bad ? 6000 : 3000);
  }

  async function act(method, url, body, done) {
    try {
      const result = await C.api(method, url, body);
      toast(done || t("Done"));
      scheduleRefresh();
      if (drawer) reopenDrawer();
      return result;
    } catch (error) {
      toast(t("Failed") + ": " + error.message, true);
      return null;
    }
  }

  // -- boards ---------------------------------------------------------------------------------------
  function fill(list, nodes, emptyText) {
    list.replaceChildren(...(nodes.length ? nodes : [el("li", { class: "empty" }, emptyText)]));
  }

  function renderCalls() {
    const nodes = snapshot.calls.map((call) => {
      const answered = Boolean(call.answered_at);
      const who = call.resident_name || call.caller_number || t("Unknown caller");
      const status = answered ? t("Answered by %s", call.operator || "?") : (call.queue ? t("In queue") : t("Ringing"));
      return el("li", {
        class: "item call " + (answered ? "answered" : "ringing") + (call.emergency ? " emergency" : ""),
        dataset: { callId: call.id },
        onclick: () => call.resident_id && openCard(call.resident_id, "card"),
      },
      el("div", { class: "line1" },
        call.emergency ? el("span", { class: "badge red" }, t("Emergency")) : null,
        el("span", { class: "caller" }, who),
        el("span", { class: "right timer", dataset: { since: answered ? call.answered_at : call.arrived_at } }, "")),
      el("div", { class: "line2" }, status, " · ", call.caller_number || "", call.did ? " → " + call.did : ""));
    });
    $("calls-count").textContent = snapshot.calls.length;
    fill($("calls"), nodes, t("No live calls"));
  }

  function renderAlerts() {
    const nodes = snapshot.alerts.map((alert) => el("li", {
      class: "item alert state-" + alert.state + (alert.id === selectedAlert ? " selected" : "")
        + (flashing.has(alert.id) && alert.state === "raised" ? " flash" : ""),
      dataset: { alertId: alert.id },
      onclick: () => { selectAlert(alert.id); openAlert(alert.id); },
    },
    el("div", { class: "line1" },
      el("span", { class: "badge" + (alert.state === "raised" ? " red" : " amber") }, t(alert.kind)),
      el("span", { class: "name" }, alert.resident_name || "—"),
      el("span", { class: "right state" }, t(alert.state))),
    el("div", { class: "line2" },
      [alert.community, alert.address].filter(Boolean).join(" · "),
      alert.team_name ? " · " + alert.team_name : ""),
    el("div", { class: "line2" },
      el("span", { class: "elapsed", dataset: { since: alert.raised_at } }, ""),
      alert.deadline_at ? el("span", { class: "timer", dataset: { due: alert.deadline_at, kind: alert.deadline_kind } }, "") : null)));
    $("alerts-count").textContent = snapshot.alerts.length;
    fill($("alerts"), nodes, t("No open alerts"));
  }

  const ORDER_COLUMNS = {
    seeking: ["new", "offered", "unfilled"],
    accepted: ["accepted"],
    in_service: ["in_service"],
    done: ["completed", "complaint"],
  };

  function renderOrders() {
    for (const [column, states] of Object.entries(ORDER_COLUMNS)) {
      const nodes = snapshot.orders.filter((o) => states.includes(o.state)).map((order) => el("li", {
        class: "item order state-" + order.state + (order.overdue ? " overdue" : ""),
        dataset: { orderId: order.id, state: order.state },
        onclick: () => openOrder(order.id),
      },
      el("div", { class: "line1" },
        el("span", {}, "#" + order.id),
        el("span", { class: "name" }, order.resident_name),
        order.urgent ? el("span", { class: "badge amber" }, t("Urgent")) : null,
        order.overdue ? el("span", { class: "badge red overdue-mark" }, t("overdue")) : null),
      el("div", { class: "line2" }, C.lang === "en" ? order.item_en : order.item_zh, " · ", t(order.state)),
      el("div", { class: "line2" },
        C.dateTime(order.window_start) + "–" + C.hm(order.window_end),
        order.provider_name ? " · " + order.provider_name : "")));
      fill($("orders-" + column), nodes, "—");
    }
    $("orders-count").textContent = snapshot.orders.length;
  }

  // What a notice is about, as a label, and how to open it where the floor has a panel for it.
  const SUBJECTS = {
    alert: ["Alert #%s", (id) => { selectAlert(id); openAlert(id); }],
    order: ["Order #%s", (id) => openOrder(id)],
    device: ["Device #%s", null],
    alarm: ["Alarm #%s", null],
    sms: ["SMS #%s", null],
    call_task: ["Call task #%s", null],
  };

  function noticeSubject(notice) {
    if (!notice.subject_type || notice.subject_id === null) return null;
    const [label, open] = SUBJECTS[notice.subject_type] || [null, null];
    const text = label ? t(label, notice.subject_id) : notice.subject_type + " #" + notice.subject_id;
    return open
      ? el("button", { type: "button", class: "link subject", onclick: () => open(notice.subject_id) }, text)
      : el("span", { class: "subject" }, text);
  }

  function renderNotices() {
    const nodes = snapshot.notices.map((notice) => el("li", {
      class: "item notice severity-" + notice.severity + (flashingNotices.has(notice.id) ? " flash" : ""),
      dataset: { noticeId: notice.id, kind: notice.kind, severity: notice.severity },
    },
    el("time", { class: "when", datetime: notice.created_at }, C.dateTime(notice.created_at)),
    notice.severity === "critical" ? el("span", { class: "badge red" }, t("Critical")) : null,
    notice.audience === "supervisor" ? el("span", { class: "badge amber" }, t("For supervisors")) : null,
    noticeSubject(notice),
    el("span", { class: "text" }, notice.text),
    el("button", { type: "button", class: "acknowledge-notice", onclick: () => acknowledgeNotice(notice.id) }, t("Acknowledge notice"))));
    $("notices-count").textContent = snapshot.notices_open;
    fill($("notices"), nodes, t("No open notices"));
  }

  async function acknowledgeNotice(noticeId) {
    try {
      await C.api("POST", "/api/v1/notices/" + noticeId + "/acknowledge", {});
      toast(t("Done"));
    } catch (error) {
      // 409: someone else acknowledged it first; it is gone either way.
      if (error.status !== 409) {
        toast(t("Failed") + ": " + error.message, true);
        return;
      }
    }
    // Taken off at once; notice.acknowledged then tells the other floors (and re-reads this one).
    snapshot.notices = snapshot.notices.filter((n) => n.id !== noticeId);
    snapshot.notices_open = Math.max(0, snapshot.notices_open - 1);
    flashingNotices.delete(noticeId);
    renderNotices();
    scheduleRefresh();
  }

  function tickTimers() {
    for (const node of document.querySelectorAll("[data-since]")) {
      node.textContent = C.duration(seconds(node.dataset.since));
    }
    for (const node of document.querySelectorAll("[data-due]")) {
      const left = -seconds(node.dataset.due);
      const kind = node.dataset.kind ? t(node.dataset.kind) : "";
      node.classList.toggle("late", left <= 0);
      node.textContent = left > 0
        ? " · " + t("escalates in") + " " + C.duration(left) + (kind ? " (" + kind + ")" : "")
        : " · " + t("escalation due") + (kind ? " (" + kind + ")" : "");
    }
  }

  async function refresh() {
    try {
      const asked = Date.now();
      snapshot = await C.api("GET", "/console/api/floor");
      const answered = Date.now();
      // The server's clock at the middle of the round trip; a browser clock only slightly off is
      // left alone, so timers do not jump by the latency of each snapshot.
      const skew = new Date(snapshot.now).getTime() - (asked + answered) / 2;
      skewMs = Math.abs(skew) > 2000 ? skew : 0;
    } catch (error) {
      return;
    }
    // A new alert nobody has taken beeps and flashes; so do those waiting when the page opens.
    let fresh = false;
    for (const alert of snapshot.alerts) {
      if (!knownAlerts.has(alert.id)) {
        knownAlerts.add(alert.id);
        if (alert.state === "raised") {
          fresh = true;
          flashing.add(alert.id);
        }
      }
    }
    for (const notice of snapshot.notices) {
      if (!knownNotices.has(notice.id)) {
        knownNotices.add(notice.id);
        if (notice.severity === "critical") flashingNotices.add(notice.id);
      }
    }
    if (selectedAlert === null && snapshot.alerts.length) selectedAlert = snapshot.alerts[0].id;
    renderCalls();
    renderNotices();
    renderAlerts();
    renderOrders();
    tickTimers();
    if (fresh) beep();
  }
  let refreshTimer = null;
  function scheduleRefresh() {
    clearTimeout(refreshTimer);
    refreshTimer = setTimeout(refresh, 150);
  }

  // -- the drawer: a resident card, an alert or an order -------------------------------------------
  function openDrawer(kind, id, ...content) {
    // Redrawn for a live update of the same record: what the operator was typing or choosing stays.
    const same = drawer && drawer.type === kind && drawer.id === id;
    const kept = {};
    let focused = null;
    if (same) {
      for (const field of $("drawer-body").querySelectorAll("input[id], select[id], textarea[id]")) {
        kept[field.id] = field.value;
      }
      focused = document.activeElement && document.activeElement.id;
    }
    drawer = { type: kind, id };
    // replaceChildren writes a left-out part (no actions on a closed alert, no deadlines) as "null".
    $("drawer-body").replaceChildren(...content.filter((node) => node !== null && node !== undefined));
    for (const [fieldId, value] of Object.entries(kept)) {
      const field = document.getElementById(fieldId);
      if (field) field.value = value;
    }
    if (focused && document.getElementById(focused)) document.getElementById(focused).focus();
    $("drawer").hidden = false;
    $("drawer").dataset.kind = kind;
    $("drawer").dataset.id = id;
  }
  function closeDrawer() {
    drawer = null;
    $("drawer").hidden = true;
  }
  $("drawer-close").addEventListener("click", closeDrawer);
  function reopenDrawer() {
    if (!drawer) return;
    if (drawer.type === "alert") openAlert(drawer.id);
    else if (drawer.type === "order") openOrder(drawer.id);
  }

  function dl(pairs) {
    return el("dl", {}, pairs.filter(([, v]) => v !== null && v !== undefined && v !== "")
      .flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
  }

  function cardNodes(data, alertId) {
    const r = data.resident;
    const place = r.place ? [r.place.district, r.place.street, r.place.community].filter(Boolean).join(" ") : "";
    const health = [r.chronic_conditions, r.medication && t("Medication") + ": " + r.medication,
      r.allergies && t("Allergies") + ": " + r.allergies, r.mobility, r.cognition, r.notes].filter(Boolean).join("；");
    const contacts = r.emergency_contacts.map((c) => el("tr", {},
      el("td", {}, c.position), el("td", {}, c.name), el("td", {}, c.relation), el("td", {}, c.display || c.phone),
      el("td", {}, alertId ? el("button", {
        type: "button", class: "call-contact",
        onclick: () => callContact(alertId, c.position),
      }, t("Call contact")) : "")));
    const devices = r.devices.map((d) => el("tr", {},
      el("td", {}, t(d.kind)), el("td", {}, d.serial), el("td", {}, t(d.status)),
      el("td", {}, d.last_seen_at ? C.dateTime(d.last_seen_at) : "—"),
      el("td", {}, d.battery_percent !== null ? d.battery_percent + "%" : "")));
    const recent = [
      ...data.calls.map((c) => [c.arrived_at, t("Phone call") + " · " + t(c.disposition || c.direction) + (c.operator ? " · " + c.operator : "")]),
      ...data.alerts.map((a) => [a.raised_at, t("Alert #%s", a.id) + " · " + t(a.kind) + " · " + t(a.state)]),
      ...data.orders.map((o) => [o.created_at, t("Order #%s", o.id) + " · " + o.item_code + " · " + t(o.state)]),
    ].sort((a, b) => (a[0] < b[0] ? 1 : -1)).slice(0, 10);
    return [
      el("h2", { class: "resident-name", id: "card-name" }, r.name,
        el("small", {}, " · " + r.age + t("years") + " · " + t(r.sex === "F" ? "female" : "male"))),
      dl([
        [t("Address"), r.address],
        [t("Community"), place],
        [t("Living situation"), t(r.living_situation)],
        [t("Phones"), r.phones.map((p) => p.display || p.e164).join("，")],
        [t("Subsidy"), r.subsidy_programme_name || ""],
      ]),
      health ? el("p", { class: "health", id: "card-health" }, health) : null,
      el("h3", {}, t("Emergency contacts")),
      el("table", { id: "card-contacts" }, contacts.length ? contacts : el("tr", {}, el("td", {}, t("None")))),
      el("h3", {}, t("Devices")),
      el("table", {}, devices.length ? devices : el("tr", {}, el("td", {}, t("None")))),
      el("h3", {}, t("Recent")),
      el("table", { id: "card-recent" }, recent.map(([at, text]) => el("tr", {}, el("td", {}, C.dateTime(at)), el("td", {}, text)))),
    ];
  }

  async function openCard(residentId, via) {
    let data;
    try {
      data = await C.api("GET", "/console/api/residents/" + residentId + "/card?via=" + via);
    } catch (error) {
      toast(t("Failed") + ": " + error.message, true);
      return;
    }
    const form = orderForm(residentId);
    openDrawer("card", residentId, el("div", { class: "card", id: "resident-card", dataset: { residentId } },
      ...cardNodes(data, null)), form);
  }

  // Wall-clock "YYYY-MM-DDTHH:MM" in the console's zone → an ISO time with that zone's offset.
  function zonedIso(local) {
    const guess = new Date(local + ":00Z");
    const parts = new Intl.DateTimeFormat("sv-SE", {
      timeZone: C.tz, year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit",
    }).format(guess).replace(" ", "T");
    const offsetMs = new Date(parts + "Z").getTime() - guess.getTime();
    return new Date(guess.getTime() - offsetMs).toISOString();
  }
  function zonedLocal(date) {
    return new Intl.DateTimeFormat("sv-SE", {
      timeZone: C.tz, year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit",
    }).format(date).replace(" ", "T");
  }

  function orderForm(residentId) {
    const fragment = $("order-form-template").content.cloneNode(true);
    const form = fragment.querySelector("form");
    form.window_start.value = zonedLocal(new Date(now() + 3600e3));
    form.window_end.value = zonedLocal(new Date(now() + 3 * 3600e3));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const button = form.querySelector("button[type=submit]");
      button.disabled = true;
      const result = await act("POST", "/api/v1/orders", {
        resident_id: residentId,
        item_code: form.item_code.value,
        window_start: zonedIso(form.window_start.value),
        window_end: zonedIso(form.window_end.value),
        notes: form.notes.value,
      }, t("Order created"));
      button.disabled = false;
      if (result) {
        form.querySelector(".order-result").replaceChildren(
          el("p", { class: "created", id: "order-created", dataset: { orderId: result.order.id } },
            t("Order #%s", result.order.id), " · ", t(result.order.state)),
          candidatesTable(result.candidates, result.offers));
      }
    });
    return form;
  }

  function reasonsText(reasons) {
    return reasons.map((r) => (typeof r === "string" ? r : (C.lang === "en" ? r.en : r.zh))).join("；");
  }

  function candidatesTable(candidates, offers) {
    const offered = new Set((offers || []).filter((o) => !o.outcome && !o.withdrawn_at).map((o) => o.provider_id));
    return el("div", {},
      el("h3", {}, t("Candidates")),
      el("table", { class: "candidates" }, candidates.map((c) => el("tr", { dataset: { providerId: c.provider_id } },
        el("td", {}, c.rank),
        el("td", {}, c.name, offered.has(c.provider_id) ? el("span", { class: "badge amber" }, " " + t("offered")) : ""),
        el("td", {}, t("score") + " " + c.score.toFixed(2)),
        el("td", { class: "reasons" }, reasonsText(c.reasons))))));
  }

  async function callContact(alertId, position) {
    const extension = $("my-extension").value.trim();
    await act("POST", "/api/v1/calls/family",
      Object.assign({ alert_id: alertId, position }, extension ? { operator: extension } : {}), t("Call placed"));
  }

  function reasonInput(id) {
    return el("input", { id, placeholder: t("Reason"), maxlength: 2000, size: 24 });
  }

  async function openAlert(alertId) {
    let detail;
    try {
      detail = await C.api("GET", "/api/v1/alerts/" + alertId);
    } catch (error) {
      toast(t("Failed") + ": " + error.message, true);
      return;
    }
    const a = detail.alert;
    const base = "/api/v1/alerts/" + alertId + "/";
    const suggested = detail.teams.find((team) => team.suggested);
    const open = !["resolved", "cancelled"].includes(a.state);
    const outcome = el("select", { id: "resolve-outcome" },
      ["handled_at_home", "hospital", "false_alarm", "no_access"].map((o) => el("option", { value: o }, t(o))));
    const actions = open ? el("div", { class: "actions", id: "alert-actions" },
      a.state === "raised" ? el("button", { class: "danger", id: "act-acknowledge", onclick: () => acknowledge(alertId) }, t("Acknowledge") + " (A)") : null,
      ["raised", "acknowledged"].includes(a.state) ? el("button", { class: "primary", id: "act-dispatch", disabled: !suggested, onclick: () => dispatch(alertId) }, t("Dispatch suggested team") + " (D)") : null,
      // The desk takes a 120 hand-off only once an operator has the alert.
      a.state !== "raised" && !a.handoff_120_at ? el("button", { id: "act-handoff", onclick: () => act("POST", base + "handoff-120", {}) }, t("Record 120 hand-off") + " (H)") : null,
      el("span", {}, outcome, reasonInput("alert-reason")),
      el("button", { id: "act-resolve", onclick: () => act("POST", base + "resolve", { outcome: outcome.value, reason: $("alert-reason").value }) }, t("Resolve")),
      el("button", { id: "act-cancel", onclick: () => {
        const reason = $("alert-reason").value.trim();
        if (!reason) { toast(t("Give a reason first"), true); return; }
        act("POST", base + "cancel", { reason, false_alarm: outcome.value === "false_alarm" });
      } }, t("Cancel alert"))) : null;
    const nodes = [
      el("h2", { id: "alert-title" }, t("Alert #%s", a.id), " · ", t(a.kind), " · ", el("span", { id: "alert-state" }, t(a.state))),
      dl([
        [t("State"), t(a.state)],
        a.team_id
          ? [t("Team"), (detail.teams.find((team) => team.team_id === a.team_id) || {}).name || "#" + a.team_id]
          : [t("Suggested team"), suggested ? suggested.name + " (" + reasonsText(suggested.reasons) + ")" : t("No team available")],
      ]),
      actions,
      detail.deadlines.length ? el("div", {}, el("h3", {}, t("Deadlines")),
        el("table", {}, detail.deadlines.map((d) => el("tr", {}, el("td", {}, t(d.kind)), el("td", {}, C.time(d.due_at)))))) : null,
    ];
    let card = null;
    if (a.resident_id) {
      try {
        card = await C.api("GET", "/console/api/residents/" + a.resident_id + "/card?via=card");
      } catch (error) {
        card = null;
      }
    }
    if (card) nodes.push(el("div", { class: "card", id: "resident-card", dataset: { residentId: a.resident_id } }, ...cardNodes(card, a.id)));
    nodes.push(el("h3", {}, t("Timeline")), el("table", {}, detail.timeline.slice(-12).reverse().map((e) =>
      el("tr", {}, el("td", {}, C.time(e.at)), el("td", {}, e.kind), el("td", {}, e.actor), el("td", {}, e.reason || "")))));
    openDrawer("alert", alertId, ...nodes);
  }

  async function openOrder(orderId) {
    let detail;
    try {
      detail = await C.api("GET", "/api/v1/orders/" + orderId);
    } catch (error) {
      toast(t("Failed") + ": " + error.message, true);
      return;
    }
    const o = detail.order;
    const base = "/api/v1/orders/" + orderId + "/";
    const canReoffer = ["offered", "accepted", "unfilled"].includes(o.state);
    const canOffer = ["new", "unfilled"].includes(o.state);
    const canCancel = !["completed", "confirmed", "settled", "cancelled"].includes(o.state);
    openDrawer("order", orderId,
      el("h2", { id: "order-title" }, t("Order #%s", o.id), " · ", el("span", { id: "order-state", dataset: { state: o.state } }, t(o.state))),
      dl([
        [t("Service"), o.item_code],
        [t("Window"), C.dateTime(o.window_start) + "–" + C.hm(o.window_end)],
        [t("Provider"), (detail.offers.find((f) => f.provider_id === o.provider_id) || {}).provider_name || ""],
        [t("Notes"), o.notes],
      ]),
      el("div", { class: "actions", id: "order-actions" },
        canOffer ? el("button", { class: "primary", onclick: () => act("POST", base + "offer", {}) }, t("Offer")) : null,
        canReoffer ? el("button", { id: "act-reoffer", onclick: () => act("POST", base + "re-offer", { reason: $("order-reason").value }) }, t("Re-offer")) : null,
        canCancel ? reasonInput("order-reason") : null,
        canCancel ? el("button", { id: "act-order-cancel", onclick: () => {
          const reason = $("order-reason").value.trim();
          if (!reason) { toast(t("Give a reason first"), true); return; }
          act("POST", base + "cancel", { reason });
        } }, t("Cancel order")) : null),
      el("h3", {}, t("Offers")),
      el("table", { id: "order-offers" }, detail.offers.map((f) => el("tr", {},
        el("td", {}, f.provider_name), el("td", {}, f.job_code), el("td", {}, f.outcome ? t(f.outcome) : t("offered")),
        el("td", {}, C.time(f.offered_at))))),
      detail.candidates.length ? candidatesTable(detail.candidates, detail.offers) : null,
      el("h3", {}, t("Timeline")),
      el("table", {}, detail.timeline.slice(-12).reverse().map((e) =>
        el("tr", {}, el("td", {}, C.time(e.at)), el("td", {}, e.kind), el("td", {}, e.actor), el("td", {}, e.reason || "")))));
  }

  // -- the busiest actions, by key too --------------------------------------------------------------
  function acknowledge(alertId) {
    return act("POST", "/api/v1/alerts/" + alertId + "/acknowledge", {});
  }
  function dispatch(alertId) {
    return act("POST", "/api/v1/alerts/" + alertId + "/dispatch", {});
  }
  function selectAlert(alertId) {
    selectedAlert = alertId;
    for (const node of document.querySelectorAll(".alert")) {
      node.classList.toggle("selected", Number(node.dataset.alertId) === alertId);
    }
  }
  function moveSelection(step) {
    const ids = snapshot.alerts.map((a) => a.id);
    if (!ids.length) return;
    const index = Math.max(0, ids.indexOf(selectedAlert));
    selectAlert(ids[(index + step + ids.length) % ids.length]);
    openAlert(selectedAlert);
  }
  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.altKey || event.metaKey) return;
    const target = event.target;
    if (target instanceof HTMLInputElement || target instanceof HTMLSelectElement || target instanceof HTMLTextAreaElement) return;
    const alertId = drawer && drawer.type === "alert" ? drawer.id : selectedAlert;
    switch (event.key.toLowerCase()) {
      case "a": if (alertId) acknowledge(alertId); break;
      case "d": if (alertId) dispatch(alertId); break;
      case "h": if (alertId) act("POST", "/api/v1/alerts/" + alertId + "/handoff-120", {}); break;
      case "j": moveSelection(1); break;
      case "k": moveSelection(-1); break;
      case "escape": closeDrawer(); break;
      default: return;
    }
    event.preventDefault();
  });

  // -- live events ----------------------------------------------------------------------------------
  let retry = 500;
  function connect() {
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    const socket = new WebSocket(scheme + location.host + "/console/live");
    const status = $("live-status");
    socket.onopen = () => {
      retry = 500;
      status.textContent = "● " + t("Live");
      status.classList.remove("down");
      // Whatever happened while we were away is in the snapshot, not in the events we missed.
      refresh();
    };
    socket.onmessage = (message) => {
      const event = JSON.parse(message.data);
      if (event.kind === "call.ringing" && event.data.resident_id && event.data.direction === "inbound") {
        openCard(event.data.resident_id, "call");
      }
      if (drawer && drawer.type === event.subject_type && drawer.id === event.subject_id) reopenDrawer();
      if (drawer && drawer.type === "order" && event.kind.startsWith("offer.") && event.data.order_id === drawer.id) reopenDrawer();
      scheduleRefresh();
    };
    socket.onclose = () => {
      status.textContent = t("Connection lost, reconnecting…");
      status.classList.add("down");
      setTimeout(connect, retry);
      retry = Math.min(retry * 2, 10000);
    };
  }

  const saved = localStorage.getItem("careline.extension");
  if (saved) $("my-extension").value = saved;
  $("my-extension").addEventListener("change", (e) => localStorage.setItem("careline.extension", e.target.value.trim()));
  renderSoundToggle();
  setInterval(tickTimers, 1000);
  // Belt and braces: the snapshot is read again every 30 s even if an event was lost on the way.
  setInterval(refresh, 30000);
  refresh();
  connect();
  window.CARELINE.floor = { refresh, openCard, openAlert, openOrder };
})();
