// The message catalog: every string the pages show comes from /static/i18n/<lang>.json (zh-CN by
// default, en on request), one catalog for every page (the worker's page has its keys under "worker.").
// The choice is the page's language switch if it was used, else the first of the browser's languages we
// have, else Chinese (the server's <html lang> is the same choice made from Accept-Language, which a
// browser may set apart from its own languages). Elements name their string in data-i18n (text),
// data-i18n-placeholder or data-i18n-label (aria-label); scripts use I18N.t(key, {params}).
"use strict";

window.I18N = (function () {
  const LANGS = ["zh-CN", "en"];
  const STORE_KEY = "collector-lang";
  let lang = "zh-CN";
  let messages = {};

  function fromBrowser() {
    const stored = localStorage.getItem(STORE_KEY);
    if (LANGS.includes(stored)) return stored;
    for (const tag of navigator.languages && navigator.languages.length ? navigator.languages : [navigator.language || ""]) {
      const lower = String(tag).toLowerCase();
      if (lower.startsWith("zh")) return "zh-CN";
      if (lower.startsWith("en")) return "en";
    }
    return "zh-CN";
  }

  async function load(wanted) {
    const chosen = LANGS.includes(wanted) ? wanted : "zh-CN";
    const response = await fetch(`/static/i18n/${chosen}.json`, { cache: "no-cache" });
    if (!response.ok) throw new Error(`catalog ${chosen}: ${response.status}`);
    messages = await response.json();
    lang = chosen;
    document.documentElement.lang = chosen;
    return chosen;
  }

  function has(key) {
    return Object.prototype.hasOwnProperty.call(messages, key);
  }

  // {name} placeholders filled from params, as text (the caller inserts the result with textContent).
  function t(key, params) {
    const template = Object.prototype.hasOwnProperty.call(messages, key) ? messages[key] : key;
    return template.replace(/\{([a-z_]+)\}/g, (whole, name) =>
      params && params[name] !== undefined && params[name] !== null ? String(params[name]) : whole);
  }

  function apply(root) {
    const scope = root || document;
    for (const node of scope.querySelectorAll("[data-i18n]")) node.textContent = t(node.dataset.i18n);
    for (const node of scope.querySelectorAll("[data-i18n-placeholder]")) node.placeholder = t(node.dataset.i18nPlaceholder);
    for (const node of scope.querySelectorAll("[data-i18n-label]")) node.setAttribute("aria-label", t(node.dataset.i18nLabel));
  }

  // The switch: a button naming the other language (in that language); the choice is kept in this browser.
  function bindSwitch(button, onChange) {
    if (!button) return;
    const mark = () => { button.lang = lang === "en" ? "zh-CN" : "en"; };
    mark();
    button.addEventListener("click", async () => {
      const other = lang === "en" ? "zh-CN" : "en";
      localStorage.setItem(STORE_KEY, other);
      await load(other);
      apply();
      mark();
      if (onChange) onChange();
    });
  }

  async function start() {
    try {
      await load(fromBrowser());
    } catch (error) {
      console.warn("catalog", error);
    }
    apply();
  }

  return { start, t, has, apply, bindSwitch, load, get lang() { return lang; } };
})();
