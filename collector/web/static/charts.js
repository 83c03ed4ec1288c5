// Charts drawn by the server as SVG (collector/charts/). A page fetches one with its own access (its
// token or cookie) and its language, and it is put in place here: parsed as SVG, never as HTML, its
// root <svg> imported into the page, so nothing in it can run (the content security policy refuses
// inline script anyway) and every label in it was escaped on the server. A chart that cannot be had
// says so in its place, in the page's words. Loaded before the page's own script (base.html).
"use strict";

window.Charts = (function () {
  const SVG_NS = "http://www.w3.org/2000/svg";

  function insert(container, text) {
    const parsed = new DOMParser().parseFromString(text, "image/svg+xml");
    const root = parsed.documentElement;
    if (!root || root.namespaceURI !== SVG_NS || root.localName !== "svg" ||
        parsed.getElementsByTagName("parsererror").length) {
      throw new Error("not a chart");
    }
    container.replaceChildren(document.importNode(root, true));
    container.dataset.state = "shown";
  }

  function failed(container, message) {
    const note = document.createElement("p");
    note.className = "note";
    note.textContent = window.I18N.t("chart.unavailable", { detail: message });
    container.replaceChildren(note);
    container.dataset.state = "failed";
  }

  async function plain(url) {
    const response = await fetch(url, { cache: "no-store", credentials: "same-origin" });
    if (!response.ok) {
      let message = response.statusText;
      try { message = (await response.json()).error || message; } catch (e) { /* not JSON */ }
      throw new Error(message);
    }
    return response;
  }

  // ``fetcher(url)`` answers a Response or throws (the page's own fetch, with its access); by default a
  // same-origin fetch with the page's cookies. Only the answer to the latest request of a container is
  // shown: a slow one asked before does not overwrite it. Answers whether the chart is shown.
  async function load(container, url, fetcher) {
    const asked = url + (url.includes("?") ? "&" : "?") + "lang=" + encodeURIComponent(window.I18N.lang);
    container.dataset.url = url;
    container.dataset.asked = asked;
    try {
      const response = await (fetcher || plain)(asked);
      const text = await response.text();
      if (container.dataset.asked !== asked) return false;
      insert(container, text);
      return true;
    } catch (error) {
      if (container.dataset.asked === asked) failed(container, error.message);
      return false;
    }
  }

  // Every chart of the page shown or asked for, again: in the language just chosen.
  function reload(fetcher) {
    return Promise.all([...document.querySelectorAll(".chart[data-url]")]
      .map((container) => load(container, container.dataset.url, fetcher)));
  }

  // The worker's page: their month as a calendar grid.
  function calendar(container, month) {
    return load(container, "/api/worker/calendar?month=" + encodeURIComponent(month));
  }

  return { insert, load, reload, calendar };
})();
