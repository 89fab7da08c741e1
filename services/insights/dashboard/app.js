// The closedloop dashboard: reads the dashboard's JSON API, draws SVG charts.
// Data only ever reaches the page as text nodes and attribute values, never as HTML.
"use strict";

(function () {
  const SVG_NS = "http://www.w3.org/2000/svg";
  const POLL_MS = 5000;
  const FALLBACK_MODELS = [
    "linear", "first_touch", "last_touch", "last_non_direct", "time_decay",
    "position_based", "w_shaped", "full_path", "markov", "shapley",
  ];

  const state = {
    model: "",
    groupBy: "channel",
    conversion: "won",
    touch: "first",
    cohort: "lead",
    from: "",
    to: "",
    journey: "",
    consent: "",
  };
  const latest = {};
  const rendered = {};

  // -- DOM helpers -------------------------------------------------------------------

  const byId = (id) => document.getElementById(id);

  function setAttrs(node, attrs) {
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "text") node.textContent = String(value);
      else if (name === "className") node.setAttribute("class", value);
      else if (name === "testid") node.setAttribute("data-testid", value);
      else node.setAttribute(name, String(value));
    }
    return node;
  }

  function append(node, children) {
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
    }
    return node;
  }

  function el(tag, attrs, ...children) {
    return append(setAttrs(document.createElement(tag), attrs), children);
  }

  function svg(tag, attrs, ...children) {
    return append(setAttrs(document.createElementNS(SVG_NS, tag), attrs), children);
  }

  function replace(node, ...children) {
    node.replaceChildren();
    return append(node, children);
  }

  function showError(id, error) {
    const node = byId(id);
    if (!error) {
      node.hidden = true;
      node.textContent = "";
      return;
    }
    node.hidden = false;
    node.textContent = error.message || String(error);
  }

  // -- formatting ----------------------------------------------------------------------

  const integer = new Intl.NumberFormat("en-US");
  const compact = new Intl.NumberFormat("en-US", { notation: "compact", maximumFractionDigits: 1 });
  const dateTime = new Intl.DateTimeFormat("en-GB", {
    timeZone: "UTC", year: "numeric", month: "short", day: "numeric",
    hour: "2-digit", minute: "2-digit",
  });
  const dateOnly = new Intl.DateTimeFormat("en-GB", {
    timeZone: "UTC", year: "numeric", month: "short", day: "numeric",
  });

  const human = (name) => (name ? name.replace(/_/g, " ") : "");
  const label = (name) => {
    const text = human(name);
    return text ? text.charAt(0).toUpperCase() + text.slice(1) : "";
  };
  const count = (value) => integer.format(value);
  const percent = (value) => (value === null || value === undefined ? "–" : `${(value * 100).toFixed(1)}%`);
  const signedPercent = (value) => {
    if (value === null || value === undefined) return "–";
    const text = `${(value * 100).toFixed(1)}%`;
    return value > 0 ? `+${text}` : text;
  };
  const times = (value) => (value === null || value === undefined ? "–" : `${value.toFixed(2)}×`);
  const fraction = (value) => (Number.isInteger(value) ? count(value) : value.toFixed(2));
  const when = (iso) => (iso ? `${dateTime.format(new Date(iso))} UTC` : "–");
  const day = (iso) => (iso ? dateOnly.format(new Date(iso)) : "–");
  const compactMoney = (money) => `${compact.format(money.major)} ${money.currency}`;

  function duration(seconds) {
    if (seconds === null || seconds === undefined) return "–";
    const days = seconds / 86400;
    if (days >= 1) return `${days.toFixed(1)} d`;
    const hours = seconds / 3600;
    if (hours >= 1) return `${hours.toFixed(1)} h`;
    return `${Math.round(seconds / 60)} min`;
  }

  function moneyCell(money, testid) {
    if (!money) return el("td", { className: "num muted", testid, text: "–" });
    return el("td", {
      className: money.minor_units < 0 ? "num negative" : "num",
      testid,
      "data-minor-units": money.minor_units,
      "data-currency": money.currency,
      text: money.text,
    });
  }

  // -- the JSON API ----------------------------------------------------------------------

  async function getJSON(path, params) {
    const url = new URL(path, window.location.origin);
    for (const [name, value] of Object.entries(params || {})) {
      if (value) url.searchParams.set(name, value);
    }
    const response = await fetch(url, { headers: { Accept: "application/json" }, cache: "no-store" });
    let body = null;
    try {
      body = await response.json();
    } catch (ignored) {
      body = null;
    }
    if (!response.ok) {
      const error = new Error((body && body.error && body.error.message) || `${response.status} ${response.statusText}`);
      error.status = response.status;
      error.code = body && body.error ? body.error.code : "";
      throw error;
    }
    return body;
  }

  // Loads one panel. Only the latest request of a panel may render, and an answer
  // equal to the one on screen is not drawn again (no flicker while events arrive).
  // The node's data-state is "loading" only while a new question is asked.
  async function panel({ name, node, errorId, key, load, render, fail }) {
    const token = (latest[name] || 0) + 1;
    latest[name] = token;
    const shown = rendered[name];
    if (!shown || shown.key !== key) node.setAttribute("data-state", "loading");
    try {
      const data = await load();
      if (latest[name] !== token) return;
      const text = JSON.stringify(data);
      if (!shown || shown.key !== key || shown.text !== text) {
        render(data);
        rendered[name] = { key, text };
      }
      node.setAttribute("data-state", "ready");
      showError(errorId, null);
    } catch (error) {
      if (latest[name] !== token) return;
      rendered[name] = null;
      node.setAttribute("data-state", "error");
      if (fail) fail(error);
      showError(errorId, error);
    }
  }

  // -- charts ----------------------------------------------------------------------------

  function niceStep(range, ticks) {
    const raw = range / Math.max(ticks, 1);
    if (raw <= 0) return 1;
    const power = Math.pow(10, Math.floor(Math.log10(raw)));
    const scaled = raw / power;
    const nice = scaled <= 1 ? 1 : scaled <= 2 ? 2 : scaled <= 5 ? 5 : 10;
    return nice * power;
  }

  // Horizontal bars: one group per item, one bar per series. Values may be negative.
  // `width` is the container's, so that text is drawn at its real size.
  function barChart({ items, series, format, axisFormat, width, labelWidth = 170, testid }) {
    const barHeight = 15;
    const gap = 3;
    const groupHeight = series.length * (barHeight + gap) + 12;
    const top = 30;
    const height = top + items.length * groupHeight + 22;
    const right = 130;
    const plotWidth = Math.max(width - labelWidth - right, 120);
    const values = items.flatMap((item) => series.map((s) => s.value(item)));
    let low = Math.min(0, ...values);
    let high = Math.max(0, ...values);
    if (low === high) high = low + 1;
    const step = niceStep(high - low, 5);
    low = Math.floor(low / step) * step;
    high = Math.ceil(high / step) * step;
    const x = (value) => labelWidth + ((value - low) / (high - low)) * plotWidth;
    const chart = svg("svg", {
      viewBox: `0 0 ${width} ${height}`,
      className: "bar-chart",
      role: "img",
      testid,
      "aria-label": series.map((s) => s.name).join(" and ") + " per " + (items.length ? "row" : "nothing"),
    });
    // Legend.
    let legendX = labelWidth;
    for (const s of series) {
      chart.appendChild(svg("rect", { x: legendX, y: 6, width: 12, height: 12, rx: 2, className: s.className }));
      chart.appendChild(svg("text", { x: legendX + 17, y: 16, className: "legend", text: s.name }));
      legendX += 24 + s.name.length * 7.5;
    }
    // Grid and axis labels.
    for (let tick = low; tick <= high + step / 2; tick += step) {
      const tx = x(tick);
      chart.appendChild(svg("line", { x1: tx, x2: tx, y1: top - 4, y2: height - 20, className: tick === 0 ? "axis" : "grid" }));
      chart.appendChild(svg("text", { x: tx, y: height - 6, className: "tick", "text-anchor": "middle", text: axisFormat(tick) }));
    }
    items.forEach((item, index) => {
      const y0 = top + index * groupHeight;
      const title = svg("text", {
        x: labelWidth - 10,
        y: y0 + (series.length * (barHeight + gap)) / 2 + 2,
        className: "label",
        "text-anchor": "end",
        text: item.label,
      });
      chart.appendChild(title);
      series.forEach((s, n) => {
        const value = s.value(item);
        const y = y0 + n * (barHeight + gap);
        const start = x(Math.min(0, value));
        const end = x(Math.max(0, value));
        const bar = svg("rect", {
          x: start,
          y,
          width: Math.max(end - start, value === 0 ? 0 : 1),
          height: barHeight,
          rx: 2,
          className: s.className,
          "data-value": value,
        });
        bar.appendChild(svg("title", { text: `${item.label}: ${s.name} ${format(item, s)}` }));
        chart.appendChild(bar);
        chart.appendChild(svg("text", {
          x: x(Math.max(0, value)) + 6,
          y: y + barHeight - 3,
          className: "value",
          text: format(item, s),
        }));
      });
    });
    return chart;
  }

  // Stacked horizontal bars (consent states per purpose and channel).
  function stackedChart({ items, parts, width, testid }) {
    const labelWidth = 200;
    const barHeight = 18;
    const top = 30;
    const height = top + items.length * (barHeight + 8) + 8;
    const plotWidth = Math.max(width - labelWidth - 70, 120);
    const totals = items.map((item) => parts.reduce((sum, p) => sum + item[p.key], 0));
    const most = Math.max(1, ...totals);
    const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, className: "bar-chart", role: "img", testid, "aria-label": "consent records per purpose" });
    let legendX = labelWidth;
    for (const p of parts) {
      chart.appendChild(svg("rect", { x: legendX, y: 6, width: 12, height: 12, rx: 2, className: p.className }));
      chart.appendChild(svg("text", { x: legendX + 17, y: 16, className: "legend", text: p.name }));
      legendX += 28 + p.name.length * 7.5;
    }
    items.forEach((item, index) => {
      const y = top + index * (barHeight + 8);
      chart.appendChild(svg("text", { x: labelWidth - 10, y: y + barHeight - 5, className: "label", "text-anchor": "end", text: item.label }));
      let x = labelWidth;
      for (const p of parts) {
        const w = (item[p.key] / most) * plotWidth;
        if (w > 0) {
          const rect = svg("rect", { x, y, width: w, height: barHeight, className: p.className });
          rect.appendChild(svg("title", { text: `${item.label}: ${p.name} ${count(item[p.key])}` }));
          chart.appendChild(rect);
        }
        x += w;
      }
      chart.appendChild(svg("text", { x: x + 6, y: y + barHeight - 5, className: "value", text: count(totals[index]) }));
    });
    return chart;
  }

  // -- header: projection status -----------------------------------------------------------

  function renderStatus(summary, logPosition) {
    const node = byId("status");
    let stateName;
    let text;
    if (summary.active === 0) {
      stateName = "warning";
      text = "No read model is serving yet";
    } else if (summary.max_lag < 0) {
      stateName = "unknown";
      text = "Event log unreachable; lag unknown";
    } else if (summary.max_lag === 0) {
      stateName = "ok";
      text = `Up to date · log at ${count(logPosition)}`;
    } else {
      stateName = "behind";
      text = `Catching up · ${count(summary.max_lag)} events behind`;
    }
    if (summary.parked > 0) {
      stateName = "parked";
      text += ` · ${count(summary.parked)} parked`;
    }
    node.setAttribute("data-state", stateName);
    node.setAttribute("data-lag", String(summary.max_lag));
    node.setAttribute("data-parked", String(summary.parked));
    byId("status-text").textContent = text;
  }

  function renderProjections(data) {
    renderStatus(data.summary, data.log_position);
    const table = byId("projections-table");
    const rows = data.projections.map((p) =>
      el("tr", { testid: "projection-row", "data-name": p.name, "data-state": p.state },
        el("td", { text: human(p.name) }),
        el("td", { className: "num", text: p.installed_version && p.installed_version !== p.version ? `${p.version} (code ${p.installed_version})` : String(p.version) }),
        el("td", {}, el("span", { className: `badge state-${p.state}`, text: human(p.state) })),
        el("td", { className: "num", text: count(p.position) }),
        el("td", { className: p.lag > 0 ? "num warn" : "num", testid: "projection-lag", text: p.lag < 0 ? "unknown" : count(p.lag) }),
        el("td", { className: p.parked > 0 ? "num bad" : "num", text: count(p.parked) }),
        el("td", { className: "num", text: count(p.events_applied) }),
        el("td", { text: p.updated_at ? when(p.updated_at) : "–" }),
        el("td", { className: "error-text", text: p.last_error || "" })));
    replace(table.tBodies[0], rows);
  }

  function loadProjections() {
    return panel({
      name: "projections",
      node: byId("projections-table"),
      errorId: "projections-error",
      key: "",
      load: () => getJSON("/api/projections"),
      render: renderProjections,
      fail: () => {
        byId("status").setAttribute("data-state", "unknown");
        byId("status-text").textContent = "Insights service unreachable";
      },
    });
  }

  // -- revenue -------------------------------------------------------------------------------

  async function loadModels() {
    let models = FALLBACK_MODELS;
    let fallback = "linear";
    try {
      const data = await getJSON("/api/models");
      if (data.models.length) {
        models = data.models;
        fallback = data.default;
      }
    } catch (ignored) {
      // Keep the known names; the revenue panel shows the error itself.
    }
    const select = byId("model");
    const chosen = state.model && models.includes(state.model) ? state.model : fallback;
    const current = Array.from(select.options).map((o) => o.value);
    if (current.join() !== models.join()) {
      replace(select, models.map((m) => el("option", { value: m, text: human(m) })));
    }
    select.value = chosen;
    state.model = chosen;
  }

  function rowLabel(row) {
    if (state.groupBy === "campaign") return row.campaign || "(no campaign)";
    if (state.groupBy === "channel_and_campaign") return `${human(row.channel)} / ${row.campaign || "(no campaign)"}`;
    return human(row.channel) || "(unattributed)";
  }

  function renderRevenue(data, request) {
    const table = byId("revenue-table");
    byId("revenue-label-head").textContent = request.groupBy === "campaign" ? "Campaign" : request.groupBy === "channel" ? "Channel" : "Channel / campaign";
    const currencies = [...new Set(data.rows.map((r) => r.currency))];
    const multi = currencies.length > 1;
    const rows = data.rows.map((row) =>
      el("tr", {
        testid: "revenue-row",
        "data-channel": row.channel,
        "data-campaign": row.campaign,
        "data-currency": row.currency,
      },
      el("th", { scope: "row", testid: "revenue-label", text: rowLabel(row) + (multi ? ` (${row.currency})` : "") }),
      moneyCell(row.revenue, "revenue-amount"),
      moneyCell(row.spend.minor_units ? row.spend : null, "spend-amount"),
      el("td", { className: row.roi !== null && row.roi < 0 ? "num negative" : "num", testid: "roi", text: signedPercent(row.roi) }),
      el("td", { className: "num", testid: "roas", text: times(row.roas) }),
      moneyCell(row.cac, "cac"),
      el("td", { className: "num", testid: "customers", text: fraction(row.customers) }),
      el("td", { className: "num", testid: "conversions", text: count(row.conversions) })));
    if (!rows.length) {
      rows.push(el("tr", { className: "empty" }, el("td", { colspan: 8, text: "No revenue was credited under this model in this period yet." })));
    }
    replace(table.tBodies[0], rows);
    const totals = data.total_revenue.map((revenue, index) => {
      const spend = data.total_spend[index];
      return el("tr", { testid: "revenue-total", "data-currency": revenue.currency },
        el("th", { scope: "row", text: multi ? `Total (${revenue.currency})` : "Total" }),
        moneyCell(revenue, "total-revenue"),
        moneyCell(spend && spend.minor_units ? spend : null, "total-spend"),
        el("td", { className: "num", text: spend && spend.minor_units ? signedPercent((revenue.minor_units - spend.minor_units) / spend.minor_units) : "–" }),
        el("td", { className: "num", text: spend && spend.minor_units ? times(revenue.minor_units / spend.minor_units) : "–" }),
        el("td", { colspan: 3 }));
    });
    replace(table.tFoot, totals);

    const kpis = [];
    data.total_revenue.forEach((revenue, index) => {
      const spend = data.total_spend[index];
      kpis.push(kpi("Revenue", revenue.text, "kpi-revenue"));
      kpis.push(kpi("Spend", spend ? spend.text : "–", "kpi-spend"));
      if (spend && spend.minor_units) {
        kpis.push(kpi("ROAS", times(revenue.minor_units / spend.minor_units), "kpi-roas"));
      }
    });
    kpis.push(kpi("Model", human(data.model), "kpi-model"));
    replace(byId("revenue-kpis"), kpis);

    const charts = currencies.map((currency) => {
      const items = data.rows
        .filter((r) => r.currency === currency)
        .map((r) => ({ label: rowLabel(r), revenue: r.revenue, spend: r.spend }));
      const chart = barChart({
        items,
        series: [
          { name: "revenue", className: "series-revenue", value: (item) => item.revenue.major, money: (item) => item.revenue },
          { name: "spend", className: "series-spend", value: (item) => item.spend.major, money: (item) => item.spend },
        ],
        format: (item, s) => compactMoney(s.money(item)),
        axisFormat: (value) => compact.format(value),
        width: widthOf(byId("revenue-chart")),
        testid: `revenue-chart-${currency}`,
      });
      return multi ? el("figure", {}, el("figcaption", { text: currency }), chart) : chart;
    });
    replace(byId("revenue-chart"), charts.length ? charts : [el("p", { className: "placeholder", text: "Nothing to draw yet." })]);
    table.setAttribute("data-model", data.model);
    table.setAttribute("data-group-by", request.groupBy);
    table.setAttribute("data-conversion", request.conversion);
  }

  function widthOf(node) {
    return Math.max(node.clientWidth || 0, 480);
  }

  function kpi(name, value, testid) {
    return el("div", { className: "kpi", testid }, el("span", { className: "kpi-name", text: name }), el("span", { className: "kpi-value", text: value }));
  }

  function loadRevenue() {
    const request = { model: state.model, groupBy: state.groupBy, conversion: state.conversion };
    const params = {
      model: request.model,
      group_by: request.groupBy,
      conversion: request.conversion,
      from: state.from,
      to: state.to,
    };
    return panel({
      name: "revenue",
      node: byId("revenue-table"),
      errorId: "revenue-error",
      key: JSON.stringify(params),
      load: () => getJSON("/api/revenue", params),
      render: (data) => renderRevenue(data, request),
    });
  }

  // -- funnel ----------------------------------------------------------------------------------

  const FUNNEL_COUNTS = ["visitors", "leads", "mqls", "sals", "opportunities", "won", "disqualified"];

  function funnelRow(row, total) {
    const cells = FUNNEL_COUNTS.map((name) => el("td", { className: "num", "data-field": name, text: count(row[name]) }));
    const rates = ["lead_to_mql_rate", "mql_to_sal_rate", "sal_to_opportunity_rate", "close_rate"].map((name) =>
      el("td", { className: name === "close_rate" ? "num strong" : "num", "data-field": name, "data-value": row[name] === null ? "" : row[name], text: percent(row[name]) }));
    const revenue = row.won_revenue.map((m) => m.text).join(" + ") || "–";
    return el("tr", total ? { testid: "funnel-total" } : { testid: "funnel-row", "data-channel": row.channel },
      el("th", { scope: "row", text: total ? "All channels" : human(row.channel) || "(no touch)" }),
      cells, rates,
      el("td", { className: "num", "data-field": "median_lead_to_won", text: duration(row.median_seconds.lead_to_won) }),
      el("td", { className: "num", "data-field": "won_revenue", text: revenue }));
  }

  function renderFunnel(data) {
    const table = byId("funnel-table");
    const rows = data.rows.map((row) => funnelRow(row, false));
    if (!rows.length) rows.push(el("tr", { className: "empty" }, el("td", { colspan: 14, text: "No leads in this cohort yet." })));
    replace(table.tBodies[0], rows);
    replace(table.tFoot, data.rows.length ? [funnelRow(data.total, true)] : []);
    const items = data.rows
      .filter((r) => r.opportunities > 0)
      .sort((a, b) => (b.close_rate || 0) - (a.close_rate || 0))
      .map((r) => ({ label: human(r.channel) || "(no touch)", rate: r.close_rate || 0, won: r.won, deals: r.opportunities }));
    const chart = items.length
      ? barChart({
        items,
        series: [{ name: "close rate", className: "series-rate", value: (item) => item.rate * 100 }],
        format: (item) => `${(item.rate * 100).toFixed(0)}% (${item.won}/${item.deals})`,
        axisFormat: (value) => `${value}%`,
        labelWidth: 150,
        width: widthOf(byId("close-rate-chart")),
        testid: "close-rate-svg",
      })
      : el("p", { className: "placeholder", text: "No deals in this cohort yet." });
    replace(byId("close-rate-chart"), chart);
    table.setAttribute("data-touch", data.touch);
    table.setAttribute("data-cohort", data.cohort);
  }

  function loadFunnel() {
    const params = { touch: state.touch, cohort: state.cohort, from: state.from, to: state.to };
    return panel({
      name: "funnel",
      node: byId("funnel-table"),
      errorId: "funnel-error",
      key: JSON.stringify(params),
      load: () => getJSON("/api/funnel", params),
      render: renderFunnel,
    });
  }

  // -- journey ---------------------------------------------------------------------------------

  // Small line icons, 16 x 16, drawn white on the entry's colour.
  const ICONS = {
    touchpoint: ["M5 2.5 L5 13 L7.6 10.6 L9.4 14.2 L11 13.4 L9.3 9.9 L12.8 9.6 Z"],
    person: ["M8 2.5 a2.8 2.8 0 1 0 0.01 0", "M2.8 14 C3.4 10.2 12.6 10.2 13.2 14"],
    stage: ["M4 14 V2.5", "M4 3 H12 L10.3 5.8 L12 8.6 H4"],
    merge: ["M4.5 2 V5.5 C4.5 8.5 8 8.5 8 11.5 V14", "M11.5 2 V5.5 C11.5 8.5 8 8.5 8 11.5"],
    deal: ["M2.5 5.5 H13.5 V13 H2.5 Z", "M6 5.5 V3.5 H10 V5.5", "M2.5 8.8 H13.5"],
    won: ["M8 1.8 L9.8 5.9 L14.2 6.2 L10.8 9.1 L11.9 13.4 L8 11 L4.1 13.4 L5.2 9.1 L1.8 6.2 L6.2 5.9 Z"],
    lost: ["M4 4 L12 12", "M12 4 L4 12"],
    revenue: ["M8 2 V14", "M11 4.8 C10 3.6 5.4 3.5 5.4 5.8 C5.4 8.2 10.6 7.6 10.6 10.2 C10.6 12.6 5.8 12.5 4.8 11.1"],
    granted: ["M3 8.5 L6.5 12 L13 4.5"],
    withdrawn: ["M3.5 8 H12.5"],
    preferences: ["M2.5 5 H13.5", "M2.5 11 H13.5", "M5.5 3.5 V6.5", "M10.5 9.5 V12.5"],
    erased: ["M3 4.5 H13", "M6.2 4.5 V2.8 H9.8 V4.5", "M4.3 4.5 L5 13.5 H11 L11.7 4.5"],
    other: ["M8 4 V9", "M8 11.5 V12"],
  };
  const KINDS = {
    touchpoint: { title: "Touchpoint", icon: "touchpoint", tone: "touch" },
    lead_captured: { title: "Became a lead", icon: "person", tone: "lead" },
    visitor_identified: { title: "Visitor identified", icon: "person", tone: "lead" },
    stage_changed: { title: "Stage changed", icon: "stage", tone: "stage" },
    leads_merged: { title: "Leads merged", icon: "merge", tone: "stage" },
    deal_opened: { title: "Deal opened", icon: "deal", tone: "deal" },
    deal_stage_changed: { title: "Deal stage changed", icon: "deal", tone: "deal" },
    deal_amount_updated: { title: "Deal amount updated", icon: "deal", tone: "deal" },
    deal_won: { title: "Deal won", icon: "won", tone: "won" },
    deal_lost: { title: "Deal lost", icon: "lost", tone: "lost" },
    revenue_recognized: { title: "Revenue recognised", icon: "revenue", tone: "revenue" },
    consent_granted: { title: "Consent granted", icon: "granted", tone: "granted" },
    consent_withdrawn: { title: "Consent withdrawn", icon: "withdrawn", tone: "withdrawn" },
    preferences_changed: { title: "Preferences changed", icon: "preferences", tone: "neutral" },
    erased: { title: "Personal data erased", icon: "erased", tone: "erased" },
  };

  function icon(name) {
    const paths = ICONS[name] || ICONS.other;
    return svg("svg", { viewBox: "0 0 16 16", className: "icon", "aria-hidden": "true" },
      paths.map((d) => svg("path", { d })));
  }

  function chip(text, testid) {
    return el("span", { className: "chip", testid, text });
  }

  function journeyEntry(entry) {
    const kind = KINDS[entry.kind] || { title: label(entry.kind), icon: "other", tone: "neutral" };
    const chips = [];
    if (entry.channel) chips.push(chip(human(entry.channel)));
    if (entry.campaign) chips.push(chip(entry.campaign));
    if (entry.stage) chips.push(chip(`stage: ${human(entry.stage)}`));
    if (entry.amount) chips.push(el("span", { className: "chip money", text: entry.amount.text }));
    const ids = [];
    for (const [name, value] of Object.entries(entry.details)) {
      if (!value || ["channel", "campaign", "stage"].includes(name)) continue;
      if (name.endsWith("_id")) ids.push(`${human(name)}: ${value}`);
      else chips.push(chip(`${human(name)}: ${value}`));
    }
    const recorded = [entry.recorded_at ? `recorded ${when(entry.recorded_at)}` : "", ...ids].filter(Boolean).join("\n");
    return el("li", { className: `entry tone-${kind.tone}`, testid: "journey-entry", "data-kind": entry.kind, "data-event-id": entry.event_id },
      el("span", { className: "marker" }, icon(kind.icon)),
      el("div", { className: "entry-body" },
        el("div", { className: "entry-head" },
          el("span", { className: "entry-title", text: kind.title }),
          el("time", { className: "entry-time", datetime: entry.occurred_at || "", title: recorded, text: when(entry.occurred_at) })),
        el("div", { className: "entry-summary", text: entry.summary.replace(/ -> /g, " → ") }),
        chips.length ? el("div", { className: "chips" }, chips) : null));
  }

  function renderJourney(data) {
    const result = byId("journey-result");
    const facts = [
      ["Lead", data.lead_id, "journey-lead-id"],
      ["Stage", human(data.stage), "journey-stage"],
      ["Became a lead", day(data.created_at), "journey-created"],
      ["Leads", count(data.lead_ids.length) + (data.lead_ids.length > 1 ? " (merged)" : ""), "journey-leads"],
      ["Visitors", count(data.anonymous_ids.length), "journey-visitors"],
    ];
    const person = el("div", { className: "person", testid: "journey-person" },
      el("dl", {}, facts.map(([name, value, testid]) => [el("dt", { text: name }), el("dd", { testid, text: value })])),
      data.erased ? el("p", { className: "badge state-erased", testid: "journey-erased", text: `personal data erased ${day(data.erased_at)}` }) : null);
    const entries = data.entries.map(journeyEntry);
    replace(result,
      person,
      el("p", { className: "count", testid: "journey-count", "data-count": data.entries.length, text: `${count(data.entries.length)} ${data.entries.length === 1 ? "entry" : "entries"}` }),
      entries.length ? el("ol", { className: "timeline", testid: "journey-timeline" }, entries) : el("p", { className: "placeholder", text: "No entries yet." }));
    result.setAttribute("data-lead-id", data.lead_id);
  }

  function loadJourney() {
    if (!state.journey) return Promise.resolve();
    const query = state.journey;
    const result = byId("journey-result");
    return panel({
      name: "journey",
      node: result,
      errorId: "journey-error",
      key: query,
      load: () => getJSON("/api/journey", { q: query }),
      render: renderJourney,
      fail: () => {
        replace(result);
        result.removeAttribute("data-lead-id");
      },
    });
  }

  // -- consent ---------------------------------------------------------------------------------

  const CONSENT_PARTS = [
    { key: "opted_in", name: "opted in", className: "series-in" },
    { key: "pending_confirmation", name: "pending", className: "series-pending" },
    { key: "opted_out", name: "opted out", className: "series-out" },
  ];
  const channelName = (name) => (name ? human(name) : "every channel");

  function renderConsentCounts(data) {
    const table = byId("consent-counts-table");
    const rows = data.counts.map((c) =>
      el("tr", { testid: "consent-count-row", "data-purpose": c.purpose, "data-channel": c.channel },
        el("th", { scope: "row", text: human(c.purpose) }),
        el("td", { text: channelName(c.channel) }),
        el("td", { className: "num", "data-field": "opted_in", text: count(c.opted_in) }),
        el("td", { className: "num", "data-field": "pending_confirmation", text: count(c.pending_confirmation) }),
        el("td", { className: "num", "data-field": "opted_out", text: count(c.opted_out) })));
    if (!rows.length) rows.push(el("tr", { className: "empty" }, el("td", { colspan: 5, text: "No consent recorded yet." })));
    replace(table.tBodies[0], rows);
    const items = data.counts.map((c) => ({ ...c, label: `${human(c.purpose)} · ${channelName(c.channel)}` }));
    replace(byId("consent-chart"), items.length ? stackedChart({ items, parts: CONSENT_PARTS, width: widthOf(byId("consent-chart")), testid: "consent-svg" }) : []);
  }

  function loadConsentCounts() {
    return panel({
      name: "consent-counts",
      node: byId("consent-counts-table"),
      errorId: "consent-counts-error",
      key: "",
      load: () => getJSON("/api/consent/counts"),
      render: renderConsentCounts,
    });
  }

  function stateBadge(name) {
    return el("span", { className: `badge consent-${name}`, text: human(name) });
  }

  function statesTable(states, testid) {
    return el("table", { className: "compact", testid },
      el("thead", {}, el("tr", {}, ["Purpose", "Channel", "State", "Decided"].map((h) => el("th", { text: h })))),
      el("tbody", {}, states.map((s) =>
        el("tr", { testid: "consent-state-row", "data-purpose": s.purpose, "data-channel": s.channel, "data-state": s.state },
          el("td", { text: human(s.purpose) }),
          el("td", { text: channelName(s.channel) }),
          el("td", {}, stateBadge(s.state)),
          el("td", { text: s.decided_at ? when(s.decided_at) : "never asked" })))));
  }

  function auditTable(history) {
    return el("table", { className: "compact audit", testid: "consent-audit" },
      el("thead", {}, el("tr", {}, ["When (recorded)", "Change", "Purpose · channel", "How"].map((h) => el("th", { text: h })))),
      el("tbody", {}, history.map((h) =>
        el("tr", { testid: "consent-audit-row", "data-kind": h.kind, "data-change-id": h.change_id },
          el("td", {}, when(h.occurred_at), el("div", { className: "muted small", text: when(h.recorded_at) })),
          el("td", {}, el("span", { className: `badge change-${h.kind}`, text: human(h.kind) }), h.preferences ? el("div", { className: "small", text: h.preferences }) : null),
          el("td", { text: `${human(h.purpose) || "–"} · ${channelName(h.channel)}` }),
          el("td", {},
            [human(h.method), human(h.source_system)].filter(Boolean).join(" via ") || "–",
            el("div", {
              className: "muted small",
              text: [human(h.legal_basis), h.notice_version ? `notice ${h.notice_version}` : ""].filter(Boolean).join(" · "),
            }))))));
  }

  function renderConsent(data) {
    const result = byId("consent-result");
    const subjects = data.subjects.map((s) =>
      el("div", { className: "subject", testid: "consent-subject", "data-subject": s.subject_aggregate_id, "data-lead-id": s.lead_id },
        el("h4", {},
          s.lead_id ? `Lead ${s.lead_id}` : "Email address record",
          s.erased ? el("span", { className: "badge state-erased", text: `erased ${day(s.erased_at)}` }) : null),
        s.history.length ? auditTable(s.history) : el("p", { className: "placeholder", text: "No changes." })));
    replace(result,
      el("h3", { text: "Where this person stands" }),
      data.effective.length ? statesTable(data.effective, "consent-effective") : el("p", { className: "placeholder", text: "Never asked." }),
      el("h3", { text: "Audit trail" }),
      subjects);
  }

  function loadConsent() {
    if (!state.consent) return Promise.resolve();
    const query = state.consent;
    const result = byId("consent-result");
    return panel({
      name: "consent",
      node: result,
      errorId: "consent-error",
      key: query,
      load: () => getJSON("/api/consent", { q: query }),
      render: renderConsent,
      fail: () => replace(result),
    });
  }

  // -- refresh: server-sent events, else polling ---------------------------------------------

  let refreshing = false;
  let again = false;

  async function refreshAll() {
    if (refreshing) {
      again = true;
      return;
    }
    refreshing = true;
    try {
      do {
        again = false;
        await loadModels();
        await Promise.allSettled([
          loadProjections(), loadRevenue(), loadFunnel(), loadConsentCounts(), loadJourney(), loadConsent(),
        ]);
        byId("updated").textContent = `Updated ${new Date().toLocaleTimeString("en-GB")}.`;
      } while (again);
    } finally {
      refreshing = false;
    }
  }

  let pollTimer = null;

  function setMode(mode) {
    const live = byId("live");
    live.setAttribute("data-mode", mode);
    live.textContent = mode === "live" ? "live" : mode === "polling" ? "polling every 5 s" : "connecting";
    if (mode === "polling" && pollTimer === null) {
      pollTimer = window.setInterval(refreshAll, POLL_MS);
    } else if (mode === "live" && pollTimer !== null) {
      window.clearInterval(pollTimer);
      pollTimer = null;
    }
  }

  function follow() {
    if (!("EventSource" in window)) {
      setMode("polling");
      return;
    }
    const source = new EventSource("/api/events");
    source.addEventListener("open", () => setMode("live"));
    source.addEventListener("changed", () => {
      setMode("live");
      refreshAll();
    });
    source.addEventListener("status", () => {
      setMode("live");
      loadProjections();
    });
    // The browser reconnects by itself; poll meanwhile.
    source.addEventListener("error", () => setMode("polling"));
  }

  // -- controls --------------------------------------------------------------------------------

  function bind() {
    byId("model").addEventListener("change", (event) => {
      state.model = event.target.value;
      loadRevenue();
    });
    byId("group-by").addEventListener("change", (event) => {
      state.groupBy = event.target.value;
      loadRevenue();
    });
    byId("conversion").addEventListener("change", (event) => {
      state.conversion = event.target.value;
      loadRevenue();
    });
    byId("touch").addEventListener("change", (event) => {
      state.touch = event.target.value;
      loadFunnel();
    });
    byId("cohort").addEventListener("change", (event) => {
      state.cohort = event.target.value;
      loadFunnel();
    });
    const period = () => {
      state.from = byId("period-from").value;
      state.to = byId("period-to").value;
      loadRevenue();
      loadFunnel();
    };
    byId("period-from").addEventListener("change", period);
    byId("period-to").addEventListener("change", period);
    byId("period-clear").addEventListener("click", () => {
      byId("period-from").value = "";
      byId("period-to").value = "";
      period();
    });
    byId("period-form").addEventListener("submit", (event) => event.preventDefault());
    byId("journey-form").addEventListener("submit", (event) => {
      event.preventDefault();
      state.journey = byId("journey-input").value.trim();
      if (!state.journey) return;
      loadJourney();
    });
    byId("consent-form").addEventListener("submit", (event) => {
      event.preventDefault();
      state.consent = byId("consent-input").value.trim();
      if (!state.consent) return;
      loadConsent();
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    bind();
    refreshAll();
    follow();
  });
})();
