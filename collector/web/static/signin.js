// A sign-in link: /signin#SECRET. The fragment never reaches a server or a log; it is taken out of the
// address bar and history before anything else, posted once, and the answer's cookie (HttpOnly) is the
// session. The page then replaces itself with the site page, so Back does not return to the link.
// A second link opened while this page is showing arrives as a fragment change, handled the same way.
"use strict";

(function () {
  function takeSecret() {
    const secret = location.hash.slice(1);
    if (secret) history.replaceState(null, "", location.pathname);
    return secret;
  }

  let pending = takeSecret();
  let ready = false;

  function say(key, params, failed) {
    const node = document.getElementById("signin-message");
    node.textContent = window.I18N.t(key, params);
    node.className = failed ? "error" : "";
    // The heading says where things stand: "signing in" only while it is so, never above a refusal.
    const heading = document.querySelector("h1");
    heading.dataset.i18n = failed ? "signin.failed_heading" : "signin.heading";  // kept if the language changes
    heading.textContent = window.I18N.t(heading.dataset.i18n);
  }

  async function signIn(secret) {
    if (!secret) { say("signin.missing", null, true); return; }
    say("signin.heading");
    let response;
    try {
      response = await fetch("/api/signin", {
        method: "POST", credentials: "same-origin", cache: "no-store",
        headers: { "Content-Type": "application/json" }, body: JSON.stringify({ secret }),
      });
    } catch (error) {
      say("signin.failed", { detail: error.message }, true);
      return;
    }
    if (response.ok) {
      const answer = await response.json();
      say("signin.done");
      location.replace(answer.next);
    } else if (response.status === 429) {
      say("signin.limited", { seconds: response.headers.get("Retry-After") || "60" }, true);
    } else if (response.status === 401) {
      say("signin.refused", null, true);
    } else {
      let detail = response.statusText;
      try { detail = (await response.json()).error || detail; } catch (e) { /* not JSON */ }
      say("signin.failed", { detail }, true);
    }
  }

  window.addEventListener("hashchange", () => {
    const secret = takeSecret();
    if (!secret) return;
    if (ready) signIn(secret); else pending = secret;
  });

  document.addEventListener("DOMContentLoaded", async () => {
    await window.I18N.start();
    ready = true;
    signIn(pending);
  });
})();
