// Keeps the board live: fetch the server-rendered fragment every second and swap it in when it
// changed, keeping keyboard focus; say so at once when the server cannot be reached.
(() => {
  "use strict";
  const EVERY_MS = 1000;
  const LOST_AFTER_MS = 3000;
  const board = document.getElementById("board");
  const conn = document.getElementById("conn");
  const connText = document.getElementById("conn-text");
  if (!board || !conn || !connText) return;
  let lastOk = Date.now();
  let lastHtml = null;
  let updatedText = board.querySelector("[data-updated-text]")?.dataset.updatedText || "";

  function show(ok) {
    conn.classList.toggle("ok", ok);
    conn.classList.toggle("lost", !ok);
    connText.textContent = ok
      ? `${conn.dataset.live} · ${conn.dataset.updated} ${updatedText}`
      : `${conn.dataset.lost} ${updatedText}`;
  }

  function typing() {
    const el = document.activeElement;
    return el && board.contains(el) && (el.tagName === "SELECT" || el.tagName === "INPUT");
  }

  // a selector finding the focused link or button again in the new fragment
  function focusKey(el) {
    if (!el || !board.contains(el)) return null;
    if (el.tagName === "A") return `a[href="${CSS.escape(el.getAttribute("href"))}"]`;
    const form = el.closest("form");
    return form ? `form[action="${CSS.escape(form.getAttribute("action"))}"] button` : null;
  }

  async function tick() {
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), LOST_AFTER_MS - 500);
    try {
      const resp = await fetch("/ui/board", { credentials: "same-origin", cache: "no-store", signal: abort.signal });
      if (resp.status === 401) { window.location.assign("/login"); return; }
      if (!resp.ok) throw new Error(`HTTP ${resp.status}`);
      const html = await resp.text();
      lastOk = Date.now();
      const tmp = document.createElement("div");
      tmp.innerHTML = html;
      const grid = tmp.querySelector("[data-updated-text]");
      updatedText = grid ? grid.dataset.updatedText : updatedText;
      // the time stamp changes every tick: compare without it, or every tick would redraw
      if (grid) {
        grid.removeAttribute("data-updated");
        grid.removeAttribute("data-updated-text");
      }
      const body = tmp.innerHTML;
      if (body !== lastHtml && !typing()) {
        const key = focusKey(document.activeElement);
        board.innerHTML = body;
        lastHtml = body;
        const again = key && board.querySelector(key);
        if (again) again.focus();
      }
      show(true);
    } catch {
      if (Date.now() - lastOk > LOST_AFTER_MS || !navigator.onLine) show(false);
    } finally {
      clearTimeout(timer);
      setTimeout(tick, EVERY_MS);
    }
  }
  setTimeout(tick, EVERY_MS);
})();
