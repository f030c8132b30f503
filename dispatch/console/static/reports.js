// The reports page: one day's figures and service levels from the API, drawn as inline SVG bars.
// Every number drawn is also in the DOM as text (and in data-value), never as HTML.
"use strict";
(function () {
  const C = window.CARELINE;
  const T = (text, arg) => {
    const s = (C.reportTexts && C.reportTexts[text]) || C.t(text);
    return arg === undefined ? s : s.replace("%s", String(arg));
  };
  const root = document.getElementById("reports");
  const day = root.dataset.day;
  const labels = document.getElementById("figure-labels").dataset;
  const NS = "http://www.w3.org/2000/svg";

  function svg(tag, attrs, ...children) {
    const node = document.createElementNS(NS, tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value !== null && value !== undefined) node.setAttribute(key, String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  const seconds = (value) => (value === null || value === undefined ? "—" : T("%s s", Math.round(value)));

  function figure(key, label, value) {
    return C.el("div", { class: "figure", dataset: { key } },
      C.el("div", { class: "value" }, value), C.el("div", { class: "label" }, label));
  }

  // Horizontal bars: one row per entry {key, label, value, text, cls}; `max` the full width's value.
  function bars(container, rows, max, options) {
    const opts = options || {};
    const rowHeight = 22, labelWidth = opts.labelWidth || 120, width = opts.width || 360, valueWidth = 64;
    const plot = width - labelWidth - valueWidth;
    const height = Math.max(rows.length, 1) * rowHeight + 6;
    const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img" });
    if (!rows.length) {
      chart.append(svg("text", { x: 4, y: 16 }, T("No data")));
    }
    rows.forEach((row, i) => {
      const y = i * rowHeight + 3;
      const w = max > 0 && row.value ? Math.max(1, (plot * Math.min(row.value, max)) / max) : 0;
      const g = svg("g", { class: "row", "data-key": row.key });
      g.append(
        svg("text", { x: labelWidth - 6, y: y + 14, "text-anchor": "end", class: "label" }, row.label),
        svg("rect", {
          x: labelWidth, y, width: w, height: rowHeight - 6,
          class: "bar " + (row.cls || ""), "data-key": row.key, "data-value": row.value === null ? "" : row.value,
        }, svg("title", {}, `${row.label}: ${row.text}`)),
        svg("text", { x: labelWidth + w + 4, y: y + 14, class: "value", "data-key": row.key }, row.text),
      );
      if (row.target !== undefined) {
        const x = labelWidth + (plot * row.target) / max;
        g.append(svg("line", { x1: x, x2: x, y1: y - 2, y2: y + rowHeight - 4, stroke: "#1b1f24",
          "stroke-width": 2, class: "target", "data-target": row.target }));
      }
      chart.append(g);
    });
    container.replaceChildren(chart);
  }

  // 24 columns, local hours 0-23: answered, abandoned and the rest stacked.
  function hours(container, byHour) {
    const width = 360, height = 160, left = 26, bottom = 18, top = 8;
    const plotW = width - left - 4, plotH = height - bottom - top, colW = plotW / 24;
    const max = Math.max(1, ...byHour.map((h) => h.total));
    const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img" });
    chart.append(
      svg("line", { x1: left, x2: width - 4, y1: top + plotH, y2: top + plotH, class: "axis", stroke: "#d5d9de" }),
      svg("text", { x: left - 4, y: top + 8, "text-anchor": "end", class: "max" }, max),
      svg("text", { x: left - 4, y: top + plotH, "text-anchor": "end" }, 0),
    );
    for (const h of byHour) {
      const other = Math.max(0, h.total - h.answered - h.abandoned);
      let y = top + plotH;
      const x = left + h.hour * colW + 1;
      for (const [series, value, cls] of [["answered", h.answered, ""], ["abandoned", h.abandoned, "bad"], ["other", other, "alt"]]) {
        const hgt = (plotH * value) / max;
        y -= hgt;
        chart.append(svg("rect", {
          x, y, width: colW - 2, height: hgt, class: "bar " + cls,
          "data-hour": h.hour, "data-series": series, "data-value": value,
        }, svg("title", {}, `${String(h.hour).padStart(2, "0")}:00 ${series === "other" ? "" : C.t(series)} ${value}`)));
      }
      if (h.hour % 3 === 0) {
        chart.append(svg("text", { x: x + colW / 2, y: height - 4, "text-anchor": "middle" }, h.hour));
      }
    }
    const legend = C.el("p", { class: "hint" },
      C.el("span", { style: "color:#1565c0" }, "■ "), labels.answered, "  ",
      C.el("span", { style: "color:#c62828" }, "■ "), labels.abandoned, "  ",
      C.el("span", { style: "color:#b26a00" }, "■ "), labels.other);
    container.replaceChildren(chart, legend);
  }

  function measureName(measure) {
    const fast = /^calls_answered_within_(\d+)s$/.exec(measure);
    if (fast) return T("Calls answered within %s s", fast[1]);
    if (measure === "offers_accepted_in_time") return T("Offers accepted in time");
    if (measure === "visits_on_time") return T("Visits on time");
    return measure;
  }

  function drawFigures(f) {
    const calls = f.calls, alerts = f.alerts;
    document.getElementById("call-figures").replaceChildren(
      figure("calls-total", labels.total, calls.total),
      figure("calls-answered", labels.answered, calls.answered),
      figure("calls-abandoned", labels.abandoned, calls.abandoned),
      figure("answer-p50", labels.answerP50, seconds(calls.answer_seconds.p50)),
      figure("answer-p90", labels.answerP90, seconds(calls.answer_seconds.p90)),
    );
    document.getElementById("alert-figures").replaceChildren(
      figure("alerts-total", labels.alerts, alerts.total),
      figure("alerts-in-time", labels.inTime, alerts.acknowledged_in_time),
      figure("ack-p50", labels.ackP50, seconds(alerts.seconds_to_acknowledge.p50)),
      figure("dispatch-p50", labels.dispatchP50, seconds(alerts.seconds_to_dispatch.p50)),
      figure("on-scene-p50", labels.onSceneP50, seconds(alerts.seconds_to_on_scene.p50)),
      figure("escalations", labels.escalations, alerts.escalations),
      figure("false-alarms", labels.falseAlarms, alerts.false_alarms),
      figure("orders-created", labels.orders, f.orders.created),
    );
    hours(document.getElementById("chart-hours"), calls.by_hour);

    const times = [
      ["answer", T("Answer"), calls.answer_seconds],
      ["acknowledge", C.t("Acknowledge"), alerts.seconds_to_acknowledge],
      ["dispatch", T("Dispatch"), alerts.seconds_to_dispatch],
      ["on_scene", T("On scene"), alerts.seconds_to_on_scene],
    ];
    const timeRows = [];
    for (const [key, label, p] of times) {
      timeRows.push({ key: key + "-p50", label: `${label} · ${T("median")}`, value: p.p50, text: seconds(p.p50) });
      timeRows.push({ key: key + "-p90", label: `${label} · ${T("90th percentile")}`, value: p.p90, text: seconds(p.p90), cls: "alt" });
    }
    bars(document.getElementById("chart-times"), timeRows,
      Math.max(1, ...timeRows.map((r) => r.value || 0)), { labelWidth: 200, width: 440 });

    const kinds = alerts.by_kind.map((k) => ({ key: k.kind, label: C.t(k.kind), value: k.count, text: String(k.count), cls: "bad" }));
    bars(document.getElementById("chart-alerts"), kinds, Math.max(1, ...kinds.map((r) => r.value)));

    const states = f.orders.by_state.map((s) => ({ key: s.state, label: C.t(s.state), value: s.count, text: String(s.count) }));
    bars(document.getElementById("chart-orders"), states, Math.max(1, ...states.map((r) => r.value)));

    const sms = ["sent", "delivered", "failed", "pending", "received"].map((key) => ({
      key, label: labels[key], value: f.sms[key] || 0, text: String(f.sms[key] || 0), cls: key === "failed" ? "bad" : "",
    }));
    bars(document.getElementById("chart-sms"), sms, Math.max(1, ...sms.map((r) => r.value)));
    document.getElementById("live-note").textContent = f.live ? T("so far today") : "";
  }

  function drawLevels(data) {
    document.getElementById("levels").replaceChildren(...data.levels.map((level) =>
      C.el("div", { class: "figure level" + (level.met === false ? " missed" : ""), dataset: { key: level.measure } },
        C.el("div", { class: "value" }, level.percent === null ? "—" : level.percent + "%"),
        C.el("div", { class: "label" }, measureName(level.measure), " (", level.count, "/", level.of, ") · ",
          T("target %s", level.target_percent + "%")))));
    const rows = data.levels.map((level) => ({
      key: level.measure, label: measureName(level.measure), value: level.percent,
      text: level.percent === null ? T("not measured") : level.percent + "%",
      cls: level.met === false ? "bad" : "", target: level.target_percent,
    }));
    bars(document.getElementById("chart-levels"), rows, 100, { labelWidth: 170, width: 400 });
  }

  function fail(error) {
    const box = document.getElementById("reports-error");
    box.hidden = false;
    box.textContent = T("Could not read the figures: %s", error.message);
  }

  const query = "?day=" + encodeURIComponent(day);
  C.api("GET", "/api/v1/figures/daily" + query).then(drawFigures, fail);
  C.api("GET", "/api/v1/service-levels" + query).then(drawLevels, fail);
})();
