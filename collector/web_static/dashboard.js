// The site dashboard: asks for the token once, keeps it in localStorage, and sends it only in the
// Authorization header (never in a URL). Data is inserted with textContent only: worker names are
// user input. The live stream is read with fetch() because EventSource cannot send headers.
"use strict";

(function () {
  const TOKEN_KEY = "collector-token";
  const RETRY_MS = 3000;
  const $ = (id) => document.getElementById(id);

  let token = localStorage.getItem(TOKEN_KEY);
  let siteTimezone;
  let latest = null;  // the last live snapshot, re-rendered as time passes (ages of heartbeats)
  let insideKey = null;
  let stream = null;  // aborts the live stream when the token is forgotten

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
    const response = await fetch(path, {
      ...options, cache: "no-store", headers: { Authorization: "Bearer " + token },
    });
    if (!response.ok) {
      let message = response.statusText;
      try { message = (await response.json()).error || message; } catch (e) { /* not JSON */ }
      throw new HttpError(response.status, message);
    }
    return response;
  }

  function setConnection(text, state) {
    const node = $("connection");
    if (!node) return;
    node.textContent = text;
    node.dataset.state = state;
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
    $("dashboard").hidden = true;
    $("login").hidden = false;
    $("login-error").textContent = message || "";
    setConnection("Waiting for a token", "off");
    $("token").focus();
  }

  // A refused request ends here: 401 asks for a token again, anything else is shown as it is.
  function handleError(error) {
    if (error instanceof HttpError && error.status === 401) {
      askForToken("That token was not accepted. " + error.message);
      return true;
    }
    if (error instanceof HttpError && (error.status === 403 || error.status === 404)) {
      showProblem(error.message);
      setConnection("Not available", "off");
      return true;
    }
    return false;
  }

  // Times from the server: local ISO with offset (headcount, attendance) are read as written, in the
  // site's own time; UTC times (gate health) are shown in the site's zone.
  function clock(localIso) {
    return localIso ? localIso.slice(11, 16) : "–";
  }

  function siteTime(utcIso) {
    if (!utcIso) return "never";
    const options = { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false };
    if (siteTimezone) options.timeZone = siteTimezone;
    return new Date(utcIso).toLocaleTimeString([], options);
  }

  function age(utcIso) {
    if (!utcIso) return "";
    const seconds = Math.max(0, Math.round((Date.now() - Date.parse(utcIso)) / 1000));
    if (seconds < 90) return seconds + " s ago";
    if (seconds < 5400) return Math.round(seconds / 60) + " min ago";
    return Math.round(seconds / 3600) + " h ago";
  }

  function words(flag) {
    return flag.replace(/_/g, " ");
  }

  // ------------------------------------------------------------------ site page

  const GATE_STATES = {
    online: ["✔", "Online"],
    offline: ["✖", "Offline"],
    silent: ["⚠", "Silent: no heartbeat lately"],
    "never seen": ["?", "Never seen"],
  };
  const STATUSES = {
    complete: "Complete", open: "Inside (open)", missing_out: "Missing OUT", missing_in: "Missing IN",
    anomaly: "Anomaly",
  };

  function renderHeadcount(data) {
    $("on-site").textContent = data.on_site;
    $("on-site-word").textContent = data.on_site === 1 ? "worker" : "workers";
    $("as-of").textContent = data.as_of ? `${data.as_of.slice(11, 19)} site time (UTC${data.as_of.slice(19)})` : "–";
    $("unknown-cards").textContent = data.unknown_cards
      ? `Also inside: ${data.unknown_cards} card(s) not registered to anyone.` : "";
    const body = $("inside").tBodies[0];
    body.replaceChildren();
    const today = data.as_of ? data.as_of.slice(0, 10) : "";
    for (const worker of data.workers) {
      const row = el("tr");
      const who = el("span", worker.name || worker.worker);
      const id = el("span", " (" + worker.worker + ")", "muted");
      const whoCell = el("span");
      whoCell.append(who, id);
      cell(row, "Worker", whoCell);
      cell(row, "Employer", worker.employer || "–");
      const day = worker.since ? worker.since.slice(0, 10) : "";
      cell(row, "Inside since", (day && day !== today ? day + " " : "") + clock(worker.since));
      cell(row, "Gate", worker.gate || "manual");
      body.append(row);
    }
    $("inside").hidden = data.workers.length === 0;
    $("inside-empty").hidden = data.workers.length !== 0;
    // Someone came or went: today's records changed too.
    const key = JSON.stringify(data.workers.map((w) => [w.worker, w.since])) + data.unknown_cards;
    if (key !== insideKey) {
      insideKey = key;
      loadAttendance();
    }
  }

  function renderGates(gates) {
    const list = $("gates");
    list.replaceChildren();
    for (const gate of gates) {
      const item = el("li", undefined, "gate");
      item.dataset.state = gate.state;
      const [icon, label] = GATE_STATES[gate.state] || ["?", gate.state];
      const title = el("h3");
      title.append(el("span", icon + " ", "icon"), el("span", gate.gate + ": "),
        el("span", label + (gate.active ? "" : " (deactivated)"), "state"));
      item.append(title);
      const facts = el("dl");
      const fact = (name, value) => facts.append(el("dt", name), el("dd", value));
      fact("Last heartbeat", gate.last_heartbeat ? `${siteTime(gate.last_heartbeat)} (${age(gate.last_heartbeat)})` : "never");
      fact("Last seen", gate.last_seen ? `${siteTime(gate.last_seen)} (${age(gate.last_seen)})` : "never");
      fact("Waiting at the gate", gate.reported_pending === null || gate.reported_pending === undefined
        ? "unknown" : `${gate.reported_pending} punch(es)`);
      fact("Clock", gate.clock_synced === true ? "synchronised" : gate.clock_synced === false ? "NOT synchronised" : "unknown");
      const gaps = gate.open_gaps || [];
      fact("Missing punches", gaps.length
        ? gaps.map(([a, b]) => (a === b ? `#${a}` : `#${a}–#${b}`)).join(", ") + " (resend requested)" : "none");
      fact("Stored through", `#${gate.contiguous_seq}`);
      item.append(facts);
      list.append(item);
    }
    $("gates-empty").hidden = gates.length !== 0;
  }

  function render() {
    if (!latest) return;
    renderHeadcount(latest.headcount);
    renderGates(latest.gates);
  }

  let attendanceBusy = false;
  async function loadAttendance() {
    if (attendanceBusy || !token) return;
    attendanceBusy = true;
    try {
      const response = await api(`/api/sites/${encodeURIComponent(site())}/attendance`);
      renderAttendance(await response.json());
    } catch (error) {
      if (!handleError(error)) console.warn("attendance", error);
    } finally {
      attendanceBusy = false;
    }
  }

  function renderAttendance(records) {
    const body = $("attendance").tBodies[0];
    body.replaceChildren();
    $("attendance-date").textContent = records.length ? "(" + records[0].date + ")" : "";
    for (const record of records) {
      const row = el("tr");
      row.dataset.status = record.status;
      const who = el("span");
      who.append(el("span", record.name || record.worker), el("span", " (" + record.worker + ")", "muted"));
      cell(row, "Worker", who);
      cell(row, "In", clock(record.first_in));
      cell(row, "Out", clock(record.last_out));
      const minutes = record.worked_minutes;
      cell(row, "Worked", `${Math.floor(minutes / 60)} h ${String(minutes % 60).padStart(2, "0")} min`);
      cell(row, "Status", STATUSES[record.status] || record.status, "status");
      cell(row, "Flags", record.flags.length ? record.flags.map(words).join(", ") : "none");
      cell(row, "Record", record.final ? "final" : "provisional");
      body.append(row);
    }
    $("attendance").hidden = records.length === 0;
    $("attendance-empty").hidden = records.length !== 0;
  }

  function site() {
    return decodeURIComponent(location.pathname.split("/")[2] || "");
  }

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
      render();
      setConnection("● Live: updates by itself", "live");
    }
  }

  async function follow() {
    for (;;) {
      if (!token) return;
      try {
        stream = new AbortController();
        const response = await api(`/api/sites/${encodeURIComponent(site())}/live`, { signal: stream.signal });
        $("login").hidden = true;
        $("dashboard").hidden = false;
        showProblem("");
        setConnection("● Live: updates by itself", "live");
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
        if (handleError(error)) return;
      }
      setConnection("⟳ Connection lost: reconnecting… (figures may be out of date)", "lost");
      await new Promise((resolve) => setTimeout(resolve, RETRY_MS));
    }
  }

  async function startSite() {
    try {
      const sites = await (await api("/api/sites")).json();
      const found = sites.find((s) => s.site === site());
      if (found) {
        siteTimezone = found.timezone;
        $("title").textContent = found.name && found.name !== found.site ? `${found.name} (${found.site})` : found.site;
        document.title = `${found.site}: on site now`;
      } else {
        $("title").textContent = site();
      }
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
      if (!sites.length) list.append(el("li", "No sites yet."));
      await showArrears(list);
    } catch (error) {
      if (!handleError(error)) showProblem("Cannot reach the collector: " + error.message);
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
      if (error instanceof HttpError && (error.status === 403 || error.status === 503)) return;
      throw error;
    }
    for (const s of report.sites) {
      const link = [...list.querySelectorAll("a")].find((a) => a.getAttribute("href") === "/sites/" + encodeURIComponent(s.site));
      if (!link) continue;
      const text = s.overdue_workers
        ? `Wages overdue: ${yuan(s.overdue_fen)} yuan` +
          (s.overdue_estimate_fen ? ` and about ${yuan(s.overdue_estimate_fen)} yuan not yet approved` : "") +
          `, ${s.overdue_workers} worker(s) (Art. 27)`
        : "No wages overdue";
      link.parentElement.append(el("span", " " + text, s.overdue_workers ? "arrears overdue" : "arrears"));
    }
  }

  // ------------------------------------------------------------------ start

  function start() {
    if (document.body.dataset.page === "site") startSite(); else startIndex();
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("login-form").addEventListener("submit", (event) => {
      event.preventDefault();
      token = $("token").value.trim();
      $("token").value = "";
      if (!token) return;
      localStorage.setItem(TOKEN_KEY, token);
      $("login").hidden = true;
      start();
    });
    $("forget").addEventListener("click", () => askForToken("Token forgotten."));
    setInterval(render, 5000);  // heartbeat ages move on between updates
    if (token) start(); else askForToken();
  });
})();
