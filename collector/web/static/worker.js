// The worker's own page. The personal link is /w#SECRET: the fragment never reaches a server. The
// secret is taken out of the address bar and the history at once, traded for an HttpOnly cookie, and
// forgotten. Everything shown is inserted with textContent: notes and answers are typed by people.
// Its words are the "worker." keys of the pages' one message catalog (i18n.js, static/i18n/).
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const t = (key, values) => window.I18N.t("worker." + key, values);
  let month = null;      // YYYY-MM shown
  let latest = null;     // the last record, re-rendered when the language changes
  let evidenceMonth = null;
  let evidenceAsked = null;  // the id of the evidence request the page follows
  let evidencePoll = null;

  function el(tag, content, className) {
    const node = document.createElement(tag);
    if (content !== undefined && content !== null) node.textContent = String(content);
    if (className) node.className = className;
    return node;
  }

  function yuan(fen) {
    if (fen === null || fen === undefined) return "–";
    const sign = fen < 0 ? "-" : "";
    const abs = Math.abs(fen);
    return sign + "¥" + Math.floor(abs / 100) + "." + String(abs % 100).padStart(2, "0");
  }

  function hours(minutes) {
    return t("hours", { h: Math.floor(minutes / 60), m: minutes % 60 });
  }

  function clock(localIso, day) {
    // "2026-11-02T17:00:00+08:00" -> "17:00" (or "next day 06:00" past midnight)
    if (!localIso) return t("none");
    const time = localIso.slice(11, 16);
    return localIso.slice(0, 10) === day ? time : t("next_day") + " " + time;
  }

  function flagText(flag) {
    return window.I18N.has("worker.flag_" + flag) ? t("flag_" + flag) : t("flag_unknown", { flag: flag });
  }

  // ------------------------------------------------------------------ talking to the bank

  class HttpError extends Error {
    constructor(status, message, busy) { super(message); this.status = status; this.busy = busy; }
  }

  async function call(path, options) {
    const response = await fetch(path, { cache: "no-store", credentials: "same-origin", ...options });
    if (!response.ok) {
      let message = response.statusText, busy = null;
      try {
        const body = await response.json();
        message = body.error || message;
        busy = body.busy || null;  // refused for want of a slot: this link's own requests, or the site's
      } catch (e) { /* not JSON */ }
      throw new HttpError(response.status, message, busy);
    }
    return response;
  }

  function post(path, data) {
    return call(path, { method: "POST", headers: { "Content-Type": "application/json" },
                        body: JSON.stringify(data || {}) });
  }

  function showProblem(error) {
    $("status").hidden = true;
    const node = $("problem");
    if (error === null) { node.hidden = true; node.textContent = ""; return; }
    node.hidden = false;
    if (error.status === 401) {
      node.textContent = t("link_invalid");
      $("record").hidden = true;
      $("who").textContent = "";
    } else if (error.busy) {
      node.textContent = t("busy");
    } else if (error.status === 429) {
      node.textContent = t("too_many");
    } else {
      node.textContent = t("failed", { error: error.message });
    }
  }

  async function openLink() {
    // Take the secret out of the address bar (and so out of the history) before anything else.
    const secret = location.hash.slice(1);
    if (!secret) return;
    history.replaceState(null, "", location.pathname);
    await post("/api/worker/session", { secret: secret });
  }

  async function load() {
    const query = month ? "?month=" + encodeURIComponent(month) : "";
    const response = await call("/api/worker/record" + query);
    latest = await response.json();
    month = latest.month;
    render();
  }

  // ------------------------------------------------------------------ drawing

  function render() {
    const r = latest;
    if (!r) return;
    showProblem(null);
    $("status").hidden = true;
    $("record").hidden = false;
    $("who").textContent = r.worker.name + (r.worker.employer ? " · " + r.worker.employer : "");
    const [year, mon] = r.month.split("-");
    $("month").textContent = t("month", { year: year, month: Number(mon) });

    const totals = $("totals");
    totals.replaceChildren();
    for (const [key, value] of [["days_present", r.totals.days_present], ["worked", hours(r.totals.worked_minutes)],
                                ["days_flagged", r.totals.days_flagged],
                                ["provisional_days", r.totals.provisional_days]]) {
      totals.append(el("dt", t(key)), el("dd", value));
    }
    window.Charts.calendar($("calendar"), r.month);  // the month as a calendar grid (static/charts.js)

    const days = $("days");
    days.replaceChildren();
    $("no-days").hidden = r.days.length > 0;
    for (const day of r.days) days.append(dayItem(day, r));

    $("wages-card").hidden = r.wages === null;
    const wages = $("wages");
    wages.replaceChildren();
    $("no-wages").hidden = !r.wages || r.wages.length > 0;
    for (const w of r.wages || []) wages.append(wageItem(w));

    const disputes = $("disputes");
    disputes.replaceChildren();
    $("no-disputes").hidden = r.disputes.length > 0;
    for (const d of r.disputes) disputes.append(disputeItem(d));

    renderAccess(r);

    if (evidenceMonth !== r.month) {  // the download offers the month shown, until the worker picks dates
      evidenceMonth = r.month;
      $("evidence-from").value = r.month + "-01";
      $("evidence-to").value = lastDay(r.month);
      resetEvidence();
    }
  }

  // ------------------------------------------------------------------ who looked (times in the site's zone)

  function renderAccess(r) {
    const access = $("access");
    access.replaceChildren();
    // The times are the worker's site's (the server gives them with its offset); the zone is named when
    // their sites are in more than one.
    const zoneNote = $("access-zone");
    zoneNote.hidden = !r.zone.named;
    zoneNote.textContent = r.zone.name ? t("zone_note", { site: r.zone.name, zone: r.zone.timezone })
                                       : t("zone_note_plain", { zone: r.zone.timezone });
    for (const a of r.access) {
      const item = el("li");
      // One entry per viewer, thing and day: the last look's time, and how many looks (an hour apart) there were.
      const when = el("time", (a.local_at || "").slice(0, 16).replace("T", " "));
      when.dateTime = a.at;
      item.append(when, el("span", " " + t("via_" + a.via)),
                  el("span", a.who === "the worker" ? "" : " (" + a.who + ")"), el("span", " · " + lookedAt(a.what), "note"));
      if (a.looks > 1) {
        item.append(el("span", " · " + t("looks", { n: a.looks, first: (a.local_first_at || "").slice(11, 16) }), "note"));
      }
      access.append(item);
    }
  }

  function lookedAt(what) {
    // What the bank notes ("days 2026-10", "evidence 2026-10-01..2026-10-31", "link issued") in words.
    let m = /^days (\d{4})-(\d{2})$/.exec(what);
    if (m) return t("what_days", { year: m[1], month: Number(m[2]) });
    m = /^evidence (\d{4}-\d{2}-\d{2})\.\.(\d{4}-\d{2}-\d{2})$/.exec(what);
    if (m) return t("what_evidence", { from: m[1], to: m[2] });
    const known = { "link issued": "what_link_issued", "link revoked": "what_link_revoked", "disputes": "what_disputes" };
    return known[what] ? t(known[what]) : t("what_other", { what: what });
  }

  function lastDay(m) {
    const [y, mm] = m.split("-").map(Number);
    return m + "-" + String(new Date(Date.UTC(y, mm, 0)).getUTCDate()).padStart(2, "0");
  }

  function dayItem(day, r) {
    const item = el("li", undefined, "day");
    item.dataset.date = day.date;
    item.dataset.site = day.site;
    const head = el("div", undefined, "day-head");
    const weekday = t("weekdays").split(",")[new Date(day.date + "T12:00:00Z").getUTCDay()];
    head.append(el("strong", day.date + " " + weekday), el("span", " " + day.site_name, "note"));
    const disputed = r.disputes.filter((d) => d.status === "open" && d.site === day.site && d.day === day.date);
    if (disputed.length) {  // a day the worker disputed and the bank has not answered yet
      const mark = el("span", t("disputed_mark"), "mark-disputed");
      mark.title = disputed.map((d) => d.ref).join(", ");
      head.append(" ", mark);
      item.classList.add("disputed");
    }
    item.append(head);
    const facts = el("dl", undefined, "facts");
    facts.append(el("dt", t("first_in")), el("dd", clock(day.first_in, day.date)),
                 el("dt", t("last_out")), el("dd", clock(day.last_out, day.date)),
                 el("dt", t("worked")), el("dd", hours(day.worked_minutes)));
    item.append(facts);
    const notes = el("ul", undefined, "flags");
    notes.append(el("li", t("status_" + day.status), "status-" + day.status));
    for (const flag of day.flags) {
      if (flag === "missing_in" || flag === "missing_out") continue;  // said by the status
      notes.append(el("li", flagText(flag)));
    }
    if (!day.final) notes.append(el("li", t("provisional"), "note"));
    item.append(notes);
    const button = el("button", t("dispute_day"), "dispute-day");
    button.type = "button";
    button.addEventListener("click", () => openDisputeForm(item, day, button));
    item.append(button);
    return item;
  }

  // A worker has a few sites: each is a button-sized choice; past this many, a list to pick from.
  const SITE_CHOICES = 4;

  function openMissingDay() {
    // A day the gates have no record of at all: the worker names the date and the site.
    const box = $("missing-day-form");
    const select = $("missing-site");
    const choices = $("missing-sites");
    const few = latest.sites.length <= SITE_CHOICES;
    choices.hidden = !few;
    select.hidden = few;
    $("missing-site-label").hidden = few;
    if (few) {
      choices.replaceChildren(choices.querySelector("legend"), ...latest.sites.map((s, index) => {
        const label = el("label", undefined, "choice");
        const radio = el("input");
        radio.type = "radio";
        radio.name = "missing-site";
        radio.value = s.site;
        radio.checked = index === 0;
        label.append(radio, el("span", s.name));
        return label;
      }));
    } else {
      select.replaceChildren(...latest.sites.map((s) => { const o = el("option", s.name); o.value = s.site; return o; }));
    }
    // Today at the site when the month shown is this one, else the month's last day; never after today.
    const today = latest.today;
    const date = $("missing-date");
    date.max = today;
    date.value = latest.month >= today.slice(0, 7) ? today : lastDay(latest.month);
    box.hidden = false;
    const site = () => few ? (choices.querySelector("input:checked") || {}).value : select.value;
    const chosen = () => ({ site: site(), date: date.value });
    openDisputeForm(box, chosen, $("missing-day"), () => { box.hidden = true; });
  }

  function openDisputeForm(item, day, button, closed) {
    if (item.querySelector("form")) return;
    const form = $("dispute-form-template").content.firstElementChild.cloneNode(true);
    window.I18N.apply(form);
    form.querySelector(".cancel").addEventListener("click", () => {
      form.remove();
      button.hidden = false;
      if (closed) closed();
    });
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const note = form.elements.note.value;
      const problem = form.querySelector(".error");
      problem.textContent = "";
      try {
        const which = typeof day === "function" ? day() : { site: day.site, date: day.date };
        const response = await post("/api/worker/disputes", { site: which.site, day: which.date, note: note });
        const filed = await response.json();
        form.remove();
        button.hidden = false;
        if (closed) closed();
        await load();
        const done = el("p", t("filed", { ref: filed.ref }), "filed");
        const again = document.querySelector(
          `li.day[data-date="${CSS.escape(which.date)}"][data-site="${CSS.escape(which.site)}"]`);
        (again || $("missing-day-form").parentElement).append(done);
      } catch (error) {
        if (error.status === 401 || error.status === 429) showProblem(error);
        else problem.textContent = error.message;
      }
    });
    button.hidden = true;
    item.append(form);
    form.elements.note.focus();
  }

  function wageItem(w) {
    const item = el("li");
    item.append(el("strong", t("wage_period", { period: w.period, pay_day: w.pay_day })));
    const facts = el("dl", undefined, "facts");
    facts.append(el("dt", t("due")), el("dd", w.estimate ? yuan(w.estimate_fen) : yuan(w.due_fen)),
                 el("dt", t("paid")), el("dd", yuan(w.paid_fen)));
    if (w.pending_fen) facts.append(el("dt", t("pending")), el("dd", yuan(w.pending_fen)));
    if (w.overdue_fen || w.status === "overdue") facts.append(el("dt", t("overdue")), el("dd", yuan(w.overdue_fen)));
    item.append(facts);
    item.append(el("p", t("wage_status_" + w.status), "wage-status status-" + w.status));
    if (w.days_overdue) item.append(el("p", t("days_overdue", { days: w.days_overdue }), "error"));
    if (w.estimate) item.append(el("p", t("estimate"), "note"));
    return item;
  }

  function disputeItem(d) {
    const item = el("li", undefined, "dispute");
    item.dataset.ref = d.ref;
    item.append(el("strong", d.ref + " · " + d.day), el("p", d.note, "quote"),
                el("p", t("dispute_status_" + d.status), "dispute-status status-" + d.status));
    if (d.answer) item.append(el("p", t("answer") + ": " + d.answer, "answer"));
    return item;
  }

  // The bank's collector signs the file (this web server holds no key): ask, then follow the request
  // until it is ready, then offer the download.
  function resetEvidence() {
    clearTimeout(evidencePoll);
    evidenceAsked = null;
    $("evidence-file").hidden = true;
    $("evidence-page").hidden = true;
    $("evidence-state").hidden = true;
  }

  function evidenceState(message) {
    $("evidence-state").textContent = message;
    $("evidence-state").hidden = false;
  }

  function evidenceProblem(error) {
    if (error.status === 401) { showProblem(error); return; }  // the link ended: the page says so
    evidenceState(t("failed", { error: error.message }));
  }

  async function requestEvidence() {
    resetEvidence();
    evidenceState(t("evidence_preparing"));
    try {
      const response = await post("/api/worker/evidence", { from: $("evidence-from").value, to: $("evidence-to").value });
      evidenceAsked = (await response.json()).id;
      followEvidence(evidenceAsked);
    } catch (error) {
      evidenceProblem(error);
    }
  }

  async function followEvidence(id) {
    if (id !== evidenceAsked) return;  // the worker asked for other dates since
    try {
      const asked = await (await call("/api/worker/evidence/" + encodeURIComponent(id))).json();
      if (id !== evidenceAsked) return;
      if (asked.state === "done") {
        evidenceState(t("evidence_ready"));
        $("evidence-file").href = "/api/worker/evidence/" + encodeURIComponent(id) + "/file";
        $("evidence-file").hidden = false;
        // The same signed file as a page to read, in the language the worker reads this one in.
        $("evidence-page").href = "/api/worker/evidence/" + encodeURIComponent(id) + "/page?lang=" +
          encodeURIComponent(window.I18N.lang);
        $("evidence-page").hidden = false;
      } else if (asked.state === "failed") {
        evidenceState(t("evidence_failed", { reason: asked.reason }));
      } else {
        evidenceState(t("evidence_preparing"));
        evidencePoll = setTimeout(() => followEvidence(id), 1500);
      }
    } catch (error) {
      evidenceProblem(error);
    }
  }

  function shiftMonth(delta) {
    const [y, m] = month.split("-").map(Number);
    const d = new Date(Date.UTC(y, m - 1 + delta, 1));
    month = d.getUTCFullYear() + "-" + String(d.getUTCMonth() + 1).padStart(2, "0");
    load().catch(showProblem);
  }

  // ------------------------------------------------------------------ start

  async function start() {
    await window.I18N.start();
    window.I18N.bindSwitch($("language"), render);
    $("missing-day").addEventListener("click", openMissingDay);
    $("previous").addEventListener("click", () => shiftMonth(-1));
    $("next").addEventListener("click", () => shiftMonth(1));
    $("evidence-from").addEventListener("change", resetEvidence);
    $("evidence-to").addEventListener("change", resetEvidence);
    $("evidence-link").addEventListener("click", requestEvidence);
    $("logout").addEventListener("click", async () => {
      await post("/api/worker/logout");
      latest = null;
      $("record").hidden = true;
      $("who").textContent = "";
      $("problem").hidden = false;
      $("problem").textContent = t("logged_out");
    });
    await arrive();
    // Another link opened in this tab changes only the fragment: no new page, so take it from here.
    window.addEventListener("hashchange", arrive);
  }

  async function arrive() {
    try {
      if (location.hash.length > 1) {
        latest = null;
        month = null;
      }
      await openLink();
      await load();
    } catch (error) {
      showProblem(error);
    }
  }

  start();
})();
