// The site page and the sites list. Access is a bearer token the user typed (kept in localStorage, sent
// only in the Authorization header, never in a URL) or the session cookie a sign-in link left (HttpOnly:
// this script never sees it). Every string comes from the message catalog (i18n.js); data is inserted
// with textContent only: worker names are user input. The live stream is read with fetch() because
// EventSource cannot send headers.
"use strict";

(function () {
  const TOKEN_KEY = "collector-token";
  const RETRY_MS = 3000;
  const $ = (id) => document.getElementById(id);
  const t = (key, params) => window.I18N.t(key, params);

  let token = localStorage.getItem(TOKEN_KEY);
  let siteTimezone;
  let siteLabel = "";
  let latest = null;  // the last live snapshot, re-rendered as time passes and when the language changes
  let live = false;  // whether the stream is connected now (else the banner cannot vouch for the gates)
  let insideKey = null;
  let stream = null;  // aborts the live stream on sign-out
  let day = null;  // the attendance day shown (YYYY-MM-DD), null for today
  let lastAttendance = null;
  let disputesMarker;  // the live snapshot's dispute counts when the list was last fetched
  let lastDisputes = null;
  const ANSWERED_SHOWN = 50;
  // Today's chart costs the server the site's day (a few hundred ms for 3,000 workers): it is drawn again
  // when people came or went, but at most once a minute (at a shift change the headcount moves every
  // second), and every five minutes anyway, since its line runs to now.
  const CHART_EVERY_MS = 60 * 1000;
  const CHART_REFRESH_MS = 5 * 60 * 1000;
  let chartDrawn = 0;
  let chartTimer = null;

  // ------------------------------------------------------------------ helpers

  function el(tag, text, className) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (className) node.className = className;
    return node;
  }

  function cell(row, label, content, className) {
    const td = el("td", undefined, className);
    td.dataset.label = label;  // shown before the value when the table stacks on a phone
    if (content instanceof Node) td.append(content); else td.textContent = content ?? "";
    row.append(td);
    return td;
  }

  class HttpError extends Error {
    constructor(status, message) { super(message); this.status = status; }
  }

  async function api(path, options = {}) {
    const headers = { ...(options.headers || {}) };
    if (token) headers.Authorization = "Bearer " + token;
    const response = await fetch(path, { ...options, cache: "no-store", credentials: "same-origin", headers });
    if (!response.ok) {
      let message = response.statusText;
      try { message = (await response.json()).error || message; } catch (e) { /* not JSON */ }
      throw new HttpError(response.status, message);
    }
    return response;
  }

  function setConnection(key, state) {
    const node = $("connection");
    if (!node) return;
    node.textContent = t(key);
    node.dataset.state = state;
    node.dataset.key = key;
  }

  function showProblem(text) {
    const node = $("problem");
    node.textContent = text;
    node.hidden = !text;
  }

  function askForToken(message) {
    token = null;
    localStorage.removeItem(TOKEN_KEY);
    if (stream) stream.abort();
    live = false;
    $("dashboard").hidden = true;
    $("login").hidden = false;
    $("login-error").textContent = message || "";
    setConnection("connection.waiting", "off");
    if ($("trouble")) renderTrouble();
    if ($("disputes-waiting")) {
      // Whoever signs in next fetches the site's disputes afresh; until then the header shows none.
      disputesMarker = undefined;
      lastDisputes = null;
      $("disputes-waiting").hidden = true;
    }
    $("token").focus();
  }

  // A refused request ends here: 401 asks for a token again, 403/404 are shown as they are.
  function handleError(error) {
    if (error instanceof HttpError && error.status === 401) {
      const ended = !token && error.message.startsWith("the sign-in session");
      askForToken(token ? t("login.refused", { detail: error.message }) : ended ? t("login.session_ended") : "");
      return true;
    }
    if (error instanceof HttpError && (error.status === 403 || error.status === 404)) {
      showProblem(t("error.forbidden", { detail: error.message }));
      setConnection("connection.unavailable", "off");
      return true;
    }
    return false;
  }

  // Times in the site's own zone, in the page language's local form.
  function formatter(options) {
    const full = { hour12: false, ...options };
    if (siteTimezone) full.timeZone = siteTimezone;
    try { return new Intl.DateTimeFormat(window.I18N.lang, full); } catch (e) { return new Intl.DateTimeFormat(undefined, full); }
  }

  function localDay(date) {
    return formatter({ year: "numeric", month: "2-digit", day: "2-digit" }).format(date);
  }

  // A moment (UTC or with an offset) as the site's clock time; its date too when it is not today.
  function when(iso, withSeconds) {
    if (!iso) return t("value.never");
    const moment = new Date(iso);
    if (Number.isNaN(moment.getTime())) return "–";
    const options = { hour: "2-digit", minute: "2-digit" };
    if (withSeconds) options.second = "2-digit";
    if (localDay(moment) !== localDay(new Date())) { options.month = "short"; options.day = "numeric"; }
    return formatter(options).format(moment);
  }

  function age(iso) {
    if (!iso) return "";
    const seconds = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
    if (seconds < 90) return t("age.seconds", { n: seconds });
    if (seconds < 5400) return t("age.minutes", { n: Math.round(seconds / 60) });
    return t("age.hours", { n: Math.round(seconds / 3600) });
  }

  function known(prefix, code) {
    const text = t(prefix + code);
    return text === prefix + code ? t(prefix + "other", { code }) : text;
  }

  function employerName(employer) {
    return employer || t("employer.none");
  }

  function byEmployer(workers) {
    const groups = new Map();
    for (const worker of workers) {
      const key = worker.employer || "";
      if (!groups.has(key)) groups.set(key, []);
      groups.get(key).push(worker);
    }
    return [...groups.entries()].sort((a, b) => b[1].length - a[1].length || a[0].localeCompare(b[0]));
  }

  // A gate as the site calls it ("北门"), else its id; the full form names both, for what the bank must act on.
  function gateShort(id, name) {
    if (!id) return t("gate.manual");
    return name || id;
  }

  function gateFull(id, name) {
    if (!id) return t("gate.manual");
    return name ? t("gate.named", { name, id }) : id;
  }

  function teamName(team) {
    return team || t("team.none");
  }

  function tradeName(trade) {
    return trade || t("trade.none");
  }

  /** How many of ``workers`` per ``field`` (team, trade): most workers first, those with none recorded last. */
  function countsBy(workers, field) {
    const groups = new Map();
    for (const worker of workers) {
      const key = worker[field] || "";
      groups.set(key, (groups.get(key) || 0) + 1);
    }
    return [...groups.entries()].sort((a, b) => (a[0] === "") - (b[0] === "") || b[1] - a[1] || a[0].localeCompare(b[0]));
  }

  function who(worker) {
    const span = el("span");
    span.append(el("span", worker.name || worker.worker), el("span", " (" + worker.worker + ")", "muted"));
    return span;
  }

  // ------------------------------------------------------------------ the trouble banner

  function renderTrouble() {
    const banner = $("trouble");
    const list = $("trouble-list");
    list.replaceChildren();
    if (!latest || !live) {
      banner.dataset.state = latest ? "stale" : "waiting";
      $("trouble-title").textContent = t(latest ? "trouble.stale" : "trouble.waiting");
      if (!latest) return;
    }
    // What the site must act on now first, in red; what it only passes on to the bank (a gate clock) after
    // it, calmly: a clock nobody on site can fix must not weigh as much as a gate that is down.
    const all = latest.trouble || [];
    const act = all.filter((f) => f.urgency !== "inform");
    const inform = all.filter((f) => f.urgency === "inform");
    const facts = [...act, ...inform];
    if (live) {
      banner.dataset.state = act.length ? "bad" : inform.length ? "info" : "ok";
      $("trouble-title").textContent = act.length ? t("trouble.heading", { count: act.length })
        : inform.length ? t("trouble.inform_heading", { count: inform.length }) : t("trouble.ok");
    }
    for (const fact of facts) {
      const params = { ...fact, since: fact.since ? when(fact.since) + " · " + age(fact.since) : t("value.never") };
      if (fact.gate) params.gate = gateFull(fact.gate, fact.gate_name);
      if (fact.kind === "gate_retired_sending") params.time = when(fact.last_at);
      if (fact.kind === "gate_refused") {
        params.reasons = Object.entries(fact.reasons || {})
          .map(([code, count]) => `${known("reason.", code)} ×${count}`).join("; ");
        params.time = when(fact.last_at);
      }
      const item = el("li", t("trouble." + fact.kind, params));
      item.dataset.kind = fact.kind;
      item.dataset.urgency = fact.urgency === "inform" ? "inform" : "act";
      if (fact.urgency === "inform" && act.length) item.prepend(t("trouble.inform_mark") + " ");
      if (fact.gate) item.dataset.gate = fact.gate;
      list.append(item);
    }
  }

  // ------------------------------------------------------------------ who is inside

  function renderHeadcount(data) {
    $("on-site").textContent = data.on_site;
    $("on-site-word").textContent = t(data.on_site === 1 ? "headcount.worker" : "headcount.workers");
    $("as-of").textContent = data.as_of ? t("headcount.as_of", { time: when(data.as_of, true) }) : "";
    const unknown = data.unknown || [];
    $("unknown-cards").textContent = unknown.length ? t("headcount.unknown", { count: unknown.length }) : "";

    const employers = $("employers");
    employers.replaceChildren();
    for (const [employer, workers] of byEmployer(data.workers)) {
      const item = el("li");
      item.dataset.employer = employer;
      item.append(el("span", employerName(employer), "name"), el("span", String(workers.length), "count"));
      employers.append(item);
    }

    // Per work team (班组), when anyone inside has one recorded: a site without teams sees no empty list.
    const teams = $("teams");
    teams.replaceChildren();
    const hasTeams = data.workers.some((w) => w.team);
    $("teams-box").hidden = !hasTeams;
    if (hasTeams) {
      for (const [team, count] of countsBy(data.workers, "team")) {
        const item = el("li");
        item.dataset.team = team;
        const button = el("button", undefined, "team-filter");
        button.type = "button";
        button.append(el("span", teamName(team), "name"), el("span", String(count), "count"));
        button.addEventListener("click", () => {
          $("filter-team").value = JSON.stringify(team || null);
          renderInside(latest.headcount);
          $("h-inside").scrollIntoView();
        });
        item.append(button);
        teams.append(item);
      }
    }

    renderFilters(data);
    renderInside(data);

    const body = $("unknown").tBodies[0];
    body.replaceChildren();
    for (const card of unknown) {
      const row = el("tr");
      row.dataset.card = card.card;
      cell(row, t("col.card"), card.card, "mono");
      cell(row, t("col.gate"), gateShort(card.gate, card.gate_name));
      cell(row, t("col.since"), when(card.since));
      body.append(row);
    }
    $("unknown").hidden = unknown.length === 0;
    $("unknown-empty").hidden = unknown.length !== 0;

    renderRollcall(data);

    // Someone came or went: today's records changed too.
    const key = JSON.stringify(data.workers.map((w) => [w.worker, w.since])) + data.unknown_cards;
    if (key !== insideKey) {
      insideKey = key;
      if (!day) loadAttendance();
      loadTodayChart();
    }
  }

  function matches(worker, query) {
    if (!query) return true;
    return [worker.name, worker.worker, worker.employer, worker.team, worker.trade, worker.card, worker.gate, worker.gate_name]
      .some((value) => value && String(value).toLowerCase().includes(query));
  }

  // The team and trade pickers offer what is inside now (with how many), and keep a choice that has left
  // (it then finds nobody, and says so) until it is changed.
  function renderFilters(data) {
    for (const [id, field, allKey, label] of [["filter-team", "team", "filter.team.all", teamName],
                                                ["filter-trade", "trade", "filter.trade.all", tradeName]]) {
      const select = $(id);
      const chosen = select.value;
      select.replaceChildren();
      const all = el("option", t(allKey));
      all.value = "";
      select.append(all);
      const groups = countsBy(data.workers, field);
      for (const [value, count] of groups) {
        const option = el("option", `${label(value)} (${count})`);
        option.value = JSON.stringify(value || null);
        select.append(option);
      }
      if (chosen && ![...select.options].some((o) => o.value === chosen)) {
        const gone = el("option", `${label(JSON.parse(chosen))} (0)`);
        gone.value = chosen;
        select.append(gone);
      }
      select.value = chosen;
      // Nothing to pick from: a site that records no team or trade sees no picker.
      select.hidden = !groups.some(([value]) => value) && !chosen;
    }
  }

  function chosen(id) {
    const value = $(id).value;
    return value ? JSON.parse(value) : undefined;
  }

  function renderInside(data) {
    const query = $("search").value.trim().toLowerCase();
    const team = chosen("filter-team");
    const trade = chosen("filter-trade");
    const container = $("inside");
    container.replaceChildren();
    let shown = 0;
    for (const [employer, workers] of byEmployer(data.workers)) {
      const found = workers.filter((w) => matches(w, query) && (team === undefined || (w.team || null) === team)
        && (trade === undefined || (w.trade || null) === trade));
      if (!found.length) continue;
      shown += found.length;
      const group = el("section", undefined, "group");
      group.dataset.employer = employer;
      group.append(el("h3", `${employerName(employer)} (${found.length})`));
      const table = headedTable("stack", ["col.worker", "col.team", "col.trade", "col.since", "col.gate", "col.card"]);
      const body = el("tbody");
      for (const worker of found) {
        const row = el("tr");
        row.dataset.worker = worker.worker;
        row.dataset.team = worker.team || "";
        row.dataset.trade = worker.trade || "";
        cell(row, t("col.worker"), who(worker));
        cell(row, t("col.team"), worker.team || "–", "team");
        cell(row, t("col.trade"), worker.trade || "–", "trade");
        cell(row, t("col.since"), when(worker.since));
        cell(row, t("col.gate"), gateShort(worker.gate, worker.gate_name));
        cell(row, t("col.card"), worker.card || "–", "mono");
        body.append(row);
      }
      table.append(body);
      group.append(table);
      container.append(group);
    }
    const empty = $("inside-empty");
    empty.hidden = shown !== 0;
    const filtered = [$("search").value.trim(), team === undefined ? "" : teamName(team),
      trade === undefined ? "" : tradeName(trade)].filter(Boolean).join(" · ");
    empty.textContent = data.workers.length ? t("inside.no_match", { query: filtered }) : t("inside.none");
  }

  /** A table with a header row of the catalog's column names; ``widths`` (CSS lengths, one per column) fix
   * its columns, so that tables of the same columns line up one under the other. */
  function headedTable(className, columnKeys, widths) {
    const table = el("table", undefined, className);
    if (widths) {
      const group = el("colgroup");
      for (const width of widths) {
        const col = el("col");
        col.style.width = width;
        group.append(col);
      }
      table.append(group);
    }
    const head = el("tr");
    for (const key of columnKeys) {
      const th = el("th", t(key));
      th.scope = "col";
      head.append(th);
    }
    table.append(el("thead"));
    table.tHead.append(head);
    return table;
  }

  // ------------------------------------------------------------------ roll-call

  // The printed list's columns (tick, worker, card, since, gate): the same in every employer's table, so
  // that they line up down the page.
  const ROLLCALL_WIDTHS = ["9%", "33%", "22%", "17%", "19%"];
  let printedCount = 0;

  // When the list was printed, with its date, in the site's time: set as it is drawn, and again as the
  // browser prints (a page left open since the morning prints the hour it is printed at).
  function stampPrinted() {
    $("rollcall-printed").textContent = t("rollcall.printed", {
      site: siteLabel || site(), count: printedCount, time: dateTime(new Date().toISOString()),
    });
  }

  function rollcallKey() { return "collector-rollcall:" + site(); }

  function ticks() {
    try { return new Set(JSON.parse(sessionStorage.getItem(rollcallKey()) || "[]")); } catch (e) { return new Set(); }
  }

  function saveTicks(set) { sessionStorage.setItem(rollcallKey(), JSON.stringify([...set])); }

  function rollcallActive() { return sessionStorage.getItem(rollcallKey() + ":on") === "1"; }

  function renderRollcall(data) {
    const ticked = ticks();
    const groups = $("rollcall-groups");
    groups.replaceChildren();
    const everyone = [];
    const table = (title, rows, employer) => {
      const group = el("section", undefined, "group");
      group.dataset.employer = employer;
      group.append(el("h3", `${title} (${rows.length})`));
      const tableNode = headedTable("stack rollcall-table", ["col.tick", "col.worker", "col.card", "col.since", "col.gate"],
        ROLLCALL_WIDTHS);
      const body = el("tbody");
      for (const entry of rows) {
        const row = el("tr");
        row.dataset.key = entry.key;
        const box = el("input");
        box.type = "checkbox";
        box.dataset.key = entry.key;
        box.checked = ticked.has(entry.key);
        box.setAttribute("aria-label", t("rollcall.tick", { who: entry.label }));
        row.classList.toggle("ticked", box.checked);
        const tick = cell(row, t("col.tick"), box, "tick");
        tick.append(el("span", "", "box"));  // the empty square printed on paper
        cell(row, t("col.worker"), entry.who);
        cell(row, t("col.card"), entry.card || "–", "mono");
        cell(row, t("col.since"), when(entry.since));
        cell(row, t("col.gate"), gateShort(entry.gate, entry.gate_name));
        body.append(row);
        everyone.push(entry);
      }
      tableNode.append(body);
      group.append(tableNode);
      groups.append(group);
    };
    for (const [employer, workers] of byEmployer(data.workers)) {
      table(employerName(employer), workers.map((w) => ({
        key: "w:" + w.worker, label: w.name ? `${w.name} (${w.worker})` : w.worker, who: who(w), card: w.card, since: w.since, gate: w.gate,
        gate_name: w.gate_name,
      })), employer);
    }
    const unknown = data.unknown || [];
    if (unknown.length) {
      table(t("rollcall.unknown_group"), unknown.map((u) => ({
        key: "c:" + u.card, label: u.card, who: el("span", u.card, "mono"), card: u.card, since: u.since, gate: u.gate,
        gate_name: u.gate_name,
      })), "");
    }
    printedCount = everyone.length;
    stampPrinted();
    const missing = everyone.filter((entry) => !ticked.has(entry.key));
    $("rollcall-summary").textContent = missing.length
      ? t("rollcall.summary", { ticked: everyone.length - missing.length, total: everyone.length, missing: missing.length })
      : t("rollcall.all_found");
    $("rollcall-summary").dataset.missing = missing.length;
    const list = $("rollcall-missing");
    list.replaceChildren();
    for (const entry of missing) {
      const item = el("li", entry.label);
      item.dataset.key = entry.key;
      list.append(item);
    }
    $("rollcall-missing-box").hidden = missing.length === 0;
    const active = rollcallActive();
    $("rollcall").classList.toggle("active", active);
    $("rollcall-toggle").textContent = t(active ? "rollcall.stop" : "rollcall.start");
    $("rollcall-toggle").setAttribute("aria-pressed", String(active));
  }

  // ------------------------------------------------------------------ gates

  function renderGates(gates, trouble) {
    const refused = new Set((trouble || []).filter((f) => f.kind === "gate_refused").map((f) => f.gate));
    const list = $("gates");
    list.replaceChildren();
    for (const gate of gates) {
      const item = el("li", undefined, "gate");
      // A gate whose messages are refused is never shown as a green "online".
      // A retired gate shows only while it still sends: trouble, whatever it says of itself.
      const state = gate.retired_sending ? "retired"
        : refused.has(gate.gate) && gate.state === "online" ? "refused" : gate.state;
      item.dataset.state = state;
      item.dataset.gate = gate.gate;
      const icon = { online: "✔", offline: "✖", silent: "⚠", refused: "✖", retired: "✖" }[state] || "?";
      const title = el("h3");
      title.append(el("span", icon + " ", "icon"), el("span", gateFull(gate.gate, gate.display) + ": ", "gate-name"),
        el("span", known("gate.state.", state) + (gate.active || gate.retired_sending ? "" : t("gate.deactivated")), "state"));
      item.append(title);
      const facts = el("dl");
      const fact = (name, value) => facts.append(el("dt", t(name)), el("dd", value));
      fact("gate.heartbeat", gate.last_heartbeat ? `${when(gate.last_heartbeat, true)} (${age(gate.last_heartbeat)})` : t("value.never"));
      fact("gate.seen", gate.last_seen ? `${when(gate.last_seen, true)} (${age(gate.last_seen)})` : t("value.never"));
      fact("gate.pending", gate.reported_pending === null || gate.reported_pending === undefined
        ? t("value.unknown") : t("gate.pending.count", { count: gate.reported_pending }));
      fact("gate.clock", gate.clock_synced === true ? t("gate.clock.yes") : gate.clock_synced === false ? t("gate.clock.no") : t("value.unknown"));
      if (typeof gate.buffer_pct === "number") fact("gate.buffer", `${gate.buffer_pct} %`);
      const gaps = gate.open_gaps || [];
      fact("gate.missing", gaps.length
        ? t("gate.missing.resend", { list: gaps.map(([a, b]) => (a === b ? `#${a}` : `#${a}–#${b}`)).join(", ") }) : t("value.none"));
      fact("gate.stored", t("gate.stored.count", { count: gate.contiguous_seq }));
      item.append(facts);
      list.append(item);
    }
    $("gates-empty").hidden = gates.length !== 0;
  }

  function render() {
    if ($("trouble")) renderTrouble();
    if (!latest) return;
    renderHeadcount(latest.headcount);
    renderGates(latest.gates, latest.trouble);
  }

  // ------------------------------------------------------------------ today's chart (drawn by the server)

  function loadTodayChart() {
    const wait = chartDrawn + CHART_EVERY_MS - Date.now();
    if (wait > 0) {
      if (!chartTimer) chartTimer = setTimeout(() => { chartTimer = null; loadTodayChart(); }, wait);
      return;
    }
    chartDrawn = Date.now();
    window.Charts.load($("today-chart"), `/api/sites/${encodeURIComponent(site())}/charts/day`, api);
  }

  // ------------------------------------------------------------------ attendance, any day

  let attendanceBusy = false;
  let attendanceAgain = false;
  async function loadAttendance() {
    if (attendanceBusy) { attendanceAgain = true; return; }
    attendanceBusy = true;
    try {
      const query = day ? "?date=" + encodeURIComponent(day) : "";
      const response = await api(`/api/sites/${encodeURIComponent(site())}/attendance${query}`);
      lastAttendance = await response.json();
      renderAttendance(lastAttendance);
    } catch (error) {
      if (!handleError(error)) showProblem(error.message);
    } finally {
      attendanceBusy = false;
      if (attendanceAgain) { attendanceAgain = false; loadAttendance(); }
    }
  }

  function clockOf(localIso) {
    return localIso ? when(localIso) : "–";
  }

  function renderAttendance(records) {
    const body = $("attendance").tBodies[0];
    body.replaceChildren();
    $("attendance-date").textContent = day ? "(" + day + ")" : "(" + t("attendance.today") + ")";
    for (const record of records) {
      const row = el("tr");
      row.dataset.status = record.status;
      row.dataset.worker = record.worker;
      cell(row, t("col.worker"), who(record));
      cell(row, t("col.in"), clockOf(record.first_in));
      cell(row, t("col.out"), clockOf(record.last_out));
      const minutes = record.worked_minutes;
      cell(row, t("col.worked"), t("attendance.worked", { h: Math.floor(minutes / 60), m: String(minutes % 60).padStart(2, "0") }));
      cell(row, t("col.status"), known("status.", record.status), "status");
      const flags = el("ul", undefined, "flags");
      for (const flag of record.flags) {
        const item = el("li", known("flag.", flag));
        item.dataset.flag = flag;
        flags.append(item);
      }
      cell(row, t("col.flags"), record.flags.length ? flags : t("value.none"));
      cell(row, t("col.record"), t(record.final ? "attendance.final" : "attendance.provisional"));
      body.append(row);
    }
    $("attendance").hidden = records.length === 0;
    $("attendance-empty").hidden = records.length !== 0;
  }

  // ------------------------------------------------------------------ disputes (read only: the bank answers)

  // What a worker typed is hostile: it is inserted as text only, and characters that would hide or
  // reorder what the screen shows (controls, bidi overrides and isolates, zero-width marks) are written
  // out as \uXXXX, as the bank's terminal shows them.
  const HIDDEN_CHARS = /[\u0000-\u001f\u007f-\u009f\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff\ufff9-\ufffb]/g;
  function visible(value) {
    return String(value ?? "").replace(HIDDEN_CHARS, (c) => "\\u" + c.charCodeAt(0).toString(16).padStart(4, "0"));
  }

  // A moment as the site's date and clock time, always with the date.
  function dateTime(iso) {
    if (!iso) return "–";
    const moment = new Date(iso);
    if (Number.isNaN(moment.getTime())) return visible(iso);
    return formatter({ year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit" }).format(moment);
  }

  let disputesBusy = false;
  let disputesAgain = false;
  async function loadDisputes() {
    if (disputesBusy) { disputesAgain = true; return; }
    disputesBusy = true;
    try {
      const response = await api(`/api/disputes?site=${encodeURIComponent(site())}`);
      lastDisputes = await response.json();
      $("disputes-problem").hidden = true;
      renderDisputes(lastDisputes);
    } catch (error) {
      if (!(error instanceof HttpError && error.status === 503) && handleError(error)) return;
      disputesMarker = undefined;  // fetch again with the next update
      $("disputes-problem").textContent = t("disputes.unavailable", { detail: error.message });
      $("disputes-problem").hidden = false;
    } finally {
      disputesBusy = false;
      if (disputesAgain) { disputesAgain = false; loadDisputes(); }
    }
  }

  function disputeItem(d) {
    const item = el("li", undefined, "dispute");
    item.dataset.ref = d.ref;
    item.dataset.status = d.status;
    item.dataset.worker = d.worker;
    item.append(el("h4", t("disputes.title", { ref: visible(d.ref), day: visible(d.day) })));
    const facts = el("dl");
    const fact = (key, value, className) => facts.append(el("dt", t(key)), el("dd", value, className));
    fact("disputes.worker", `${visible(d.name || d.worker)} (${visible(d.worker)})`);
    fact("disputes.day", visible(d.day));
    fact("disputes.note", visible(d.note), "quote note-text");
    fact("disputes.filed", dateTime(d.filed_at));
    if (d.status !== "open") {
      let outcome = known("disputes.status.", d.status);
      if (d.status === "accepted" && d.punch_id !== null && d.punch_id !== undefined) {
        outcome += " · " + t(d.answer_kind === "void" ? "disputes.cites.void" : "disputes.cites.manual", { id: d.punch_id });
      }
      fact("disputes.outcome", outcome, "outcome");
      fact(d.status === "rejected" ? "disputes.reason" : "disputes.answer", visible(d.answer), "quote answer-text");
      fact("disputes.answered_at", `${dateTime(d.answered_at)} · ${visible(d.answered_by)}`);
    }
    item.append(facts);
    return item;
  }

  function renderDisputes(rows) {
    const open = rows.filter((d) => d.status === "open");
    // Newest answer first; open ones oldest first (the longest waiting on top).
    const answered = rows.filter((d) => d.status !== "open")
      .sort((a, b) => String(b.answered_at).localeCompare(String(a.answered_at)));
    $("disputes-open").replaceChildren(...open.map(disputeItem));
    $("disputes-answered").replaceChildren(...answered.slice(0, ANSWERED_SHOWN).map(disputeItem));
    $("h-disputes-open").textContent = t("disputes.open", { count: open.length });
    $("disputes-open-none").hidden = open.length !== 0;
    $("disputes-answered-none").hidden = answered.length !== 0;
    $("disputes-answered-more").hidden = answered.length <= ANSWERED_SHOWN;
    $("disputes-answered-more").textContent = t("disputes.answered.more", { shown: ANSWERED_SHOWN, count: answered.length });
    const waiting = $("disputes-waiting");
    waiting.hidden = open.length === 0;
    waiting.dataset.count = String(open.length);
    $("disputes-waiting-link").textContent = t("disputes.waiting", { count: open.length });
  }

  function site() {
    return decodeURIComponent(location.pathname.split("/")[2] || "");
  }

  // ------------------------------------------------------------------ live stream

  function handleFrame(frame) {
    let event = "message";
    const data = [];
    for (const line of frame.split("\n")) {
      if (line.startsWith(":")) continue;  // keepalive comment
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
      if (field === "event") event = value;
      else if (field === "data") data.push(value);
    }
    if (event === "update" && data.length) {
      latest = JSON.parse(data.join("\n"));
      live = true;
      render();
      // A dispute filed or answered changes the counts: fetch the list again (and the first time).
      const marker = JSON.stringify(latest.disputes ?? null);
      if (marker !== disputesMarker) {
        disputesMarker = marker;
        loadDisputes();
      }
      setConnection("connection.live", "live");
    }
  }

  async function follow() {
    for (;;) {
      try {
        stream = new AbortController();
        const response = await api(`/api/sites/${encodeURIComponent(site())}/live`, { signal: stream.signal });
        $("login").hidden = true;
        $("dashboard").hidden = false;
        showProblem("");
        const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += value;
          let end;
          while ((end = buffer.indexOf("\n\n")) >= 0) {
            handleFrame(buffer.slice(0, end));
            buffer = buffer.slice(end + 2);
          }
        }
      } catch (error) {
        if (error && error.name === "AbortError") return;
        if (handleError(error)) return;
      }
      live = false;
      renderTrouble();
      setConnection("connection.lost", "lost");
      await new Promise((resolve) => setTimeout(resolve, RETRY_MS));
    }
  }

  async function startSite() {
    try {
      const sites = await (await api("/api/sites")).json();
      const found = sites.find((s) => s.site === site());
      if (found) {
        siteTimezone = found.timezone;
        siteLabel = found.name && found.name !== found.site ? `${found.name} (${found.site})` : found.site;
      } else {
        siteLabel = site();
      }
      $("title").textContent = siteLabel;
      document.title = t("page.title.site.named", { site: siteLabel });
    } catch (error) {
      if (handleError(error)) return;
    }
    follow();
  }

  // ------------------------------------------------------------------ index page

  async function startIndex() {
    try {
      const sites = await (await api("/api/sites")).json();
      $("login").hidden = true;
      $("dashboard").hidden = false;
      const list = $("sites");
      list.replaceChildren();
      for (const s of sites) {
        const link = el("a", s.name && s.name !== s.site ? `${s.name} (${s.site})` : s.site);
        link.href = "/sites/" + encodeURIComponent(s.site);
        const item = el("li");
        item.append(link);
        list.append(item);
      }
      if (!sites.length) list.append(el("li", t("sites.none")));
      if (await showArrears(list)) {
        $("arrears-card").hidden = false;
        window.Charts.load($("arrears-chart"), "/api/charts/arrears", api);
      }
      offerDaysChart(sites);
    } catch (error) {
      if (!handleError(error)) showProblem(t("error.unreachable", { detail: error.message }));
    }
  }

  function yuan(fen) {
    // Integer fen to yuan text without a float (amounts stay far below 2^53 fen).
    const sign = fen < 0 ? "-" : "";
    const abs = Math.abs(fen);
    return `${sign}${Math.floor(abs / 100)}.${String(abs % 100).padStart(2, "0")}`;
  }

  async function showArrears(list) {
    // Bank tokens only: a site token is refused (403) and its page simply shows no wage line.
    let report;
    try {
      report = await (await api("/api/arrears")).json();
    } catch (error) {
      if (error instanceof HttpError && (error.status === 403 || error.status === 503)) return false;
      throw error;
    }
    for (const s of report.sites) {
      const link = [...list.querySelectorAll("a")].find((a) => a.getAttribute("href") === "/sites/" + encodeURIComponent(s.site));
      if (!link) continue;
      const text = s.overdue_workers
        ? t("arrears.overdue", {
          amount: yuan(s.overdue_fen), workers: s.overdue_workers,
          estimate: s.overdue_estimate_fen ? t("arrears.estimate", { amount: yuan(s.overdue_estimate_fen) }) : "",
        })
        : t("arrears.none");
      link.parentElement.append(el("span", " " + text, s.overdue_workers ? "arrears overdue" : "arrears"));
    }
    return true;
  }

  // Days worked per worker over a site's month: the site and the month are chosen, then drawn.
  function offerDaysChart(sites) {
    $("days-card").hidden = sites.length === 0;
    const select = $("days-site");
    const chosen = select.value;
    select.replaceChildren(...sites.map((s) => {
      const option = el("option", s.name && s.name !== s.site ? `${s.name} (${s.site})` : s.site);
      option.value = s.site;
      return option;
    }));
    if (chosen) select.value = chosen;
    if (!$("days-month").value) {
      const now = new Date();
      $("days-month").value = `${now.getFullYear()}-${String(now.getMonth() + 1).padStart(2, "0")}`;
    }
  }

  function showDaysChart(event) {
    event.preventDefault();
    const site = $("days-site").value;
    if (!site || !$("days-month").value) return;
    window.Charts.load($("days-chart"), `/api/sites/${encodeURIComponent(site)}/charts/days?month=` +
      encodeURIComponent($("days-month").value), api);
  }

  // ------------------------------------------------------------------ start

  function start() {
    if (document.body.dataset.page === "site") startSite(); else startIndex();
  }

  async function signOut() {
    const hadToken = Boolean(token);
    try {
      // Ends a sign-in link's session on the server (the cookie is HttpOnly: only the server can clear it).
      await fetch("/api/signout", { method: "POST", credentials: "same-origin", headers: { "Content-Type": "application/json" }, body: "{}" });
    } catch (e) { /* offline: the token is forgotten below all the same */ }
    askForToken(t("login.forgotten"));
    return hadToken;
  }

  document.addEventListener("DOMContentLoaded", async () => {
    await window.I18N.start();
    const onLanguage = () => {
      const key = $("connection") && $("connection").dataset.key;
      if (key) setConnection(key, $("connection").dataset.state);
      if (siteLabel) document.title = t("page.title.site.named", { site: siteLabel });
      render();
      if (lastAttendance) renderAttendance(lastAttendance);
      if (lastDisputes) renderDisputes(lastDisputes);
      window.Charts.reload(api);  // drawn by the server: asked for again in the language now chosen
    };
    window.I18N.bindSwitch($("lang-switch"), onLanguage);
    $("login-form").addEventListener("submit", (event) => {
      event.preventDefault();
      token = $("token").value.trim();
      $("token").value = "";
      if (!token) return;
      localStorage.setItem(TOKEN_KEY, token);
      $("login").hidden = true;
      $("login-error").textContent = "";
      start();
    });
    $("forget").addEventListener("click", signOut);
    if (document.body.dataset.page === "site") {
      $("search").addEventListener("input", () => { if (latest) renderInside(latest.headcount); });
      for (const id of ["filter-team", "filter-trade"]) {
        $(id).addEventListener("change", () => { if (latest) renderInside(latest.headcount); });
      }
      window.addEventListener("beforeprint", stampPrinted);
      $("rollcall-toggle").addEventListener("click", () => {
        sessionStorage.setItem(rollcallKey() + ":on", rollcallActive() ? "0" : "1");
        if (latest) renderRollcall(latest.headcount);
        if (rollcallActive()) $("rollcall").scrollIntoView();
      });
      $("rollcall-print").addEventListener("click", () => window.print());
      $("rollcall-reset").addEventListener("click", () => {
        saveTicks(new Set());
        if (latest) renderRollcall(latest.headcount);
      });
      $("rollcall-groups").addEventListener("change", (event) => {
        const box = event.target;
        if (!(box instanceof HTMLInputElement) || !box.dataset.key) return;
        const set = ticks();
        if (box.checked) set.add(box.dataset.key); else set.delete(box.dataset.key);
        saveTicks(set);
        if (latest) renderRollcall(latest.headcount);
      });
      $("day").addEventListener("change", () => {
        day = $("day").value || null;
        loadAttendance();
      });
      $("day-today").addEventListener("click", () => {
        $("day").value = "";
        day = null;
        loadAttendance();
      });
      renderTrouble();
    }
    // Ages of heartbeats move on between updates: redraw what shows them (not the lists, which change
    // only with the data: a foreman ticking off names must not have the list redrawn under the finger).
    setInterval(() => {
      if ($("trouble")) renderTrouble();
      if (latest) renderGates(latest.gates, latest.trouble);
      if (latest && live && Date.now() - chartDrawn > CHART_REFRESH_MS) loadTodayChart();
    }, 5000);
    if ($("days-form")) $("days-form").addEventListener("submit", showDaysChart);
    // With no token typed, a sign-in session's cookie may still open the page; a 401 asks for a token.
    start();
  });
})();
