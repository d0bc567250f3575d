// lull console. Plain JavaScript, no dependencies. Every element is built
// with the DOM (text through textContent), so nothing from the API is ever
// parsed as HTML. The API key is kept in sessionStorage and sent as a bearer
// token; it never goes into a URL, a cookie or the console log.
"use strict";

(() => {
  const KEY = "lull.apiKey";
  const STATUSES = ["queued", "in_progress", "completed", "failed", "cancelled", "expired"];
  const $ = (id) => document.getElementById(id);
  let timer = null; // the current view's refresh timer
  let renderSeq = 0; // bumps on every navigation: stale async renders stop

  // ---- DOM helpers -------------------------------------------------------

  // h builds an element: attrs become attributes (or listeners for on*),
  // children are nodes or text.
  function h(tag, attrs, ...children) {
    const svg = ["svg", "rect", "text", "line", "g", "title"].includes(tag);
    const el = svg ? document.createElementNS("http://www.w3.org/2000/svg", tag) : document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
      else if (k === "text") el.textContent = v;
      else el.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
  }

  function badge(status) {
    return h("span", { class: "badge " + status }, status.replace("_", " "));
  }

  function when(unix) {
    if (!unix) return "—";
    const d = new Date(unix * 1000);
    return h("time", { datetime: d.toISOString(), title: d.toISOString() }, d.toLocaleString());
  }

  function say(msg, isError) {
    const s = $("status");
    s.textContent = msg || "";
    s.className = isError ? "error" : "";
  }

  // ---- API ---------------------------------------------------------------

  class APIError extends Error {
    constructor(status, message, code) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  // The API is served next to the console: /console/ → /v1/… (relative, so a
  // path prefix in front of both keeps working).
  function apiURL(path) {
    return new URL("../v1" + path, document.baseURI).toString();
  }

  async function api(path, opts = {}) {
    const key = sessionStorage.getItem(KEY);
    if (!key) throw new APIError(401, "Not signed in.");
    const headers = { Authorization: "Bearer " + key };
    if (opts.body !== undefined) headers["Content-Type"] = "application/json";
    const resp = await fetch(apiURL(path), {
      method: opts.method || "GET",
      headers,
      body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
      credentials: "omit",
      cache: "no-store",
      referrerPolicy: "no-referrer",
    });
    if (opts.raw && resp.ok) return resp;
    let data = null;
    try { data = await resp.json(); } catch (_) { /* not JSON */ }
    if (!resp.ok) {
      const msg = (data && data.error && data.error.message) || ("HTTP " + resp.status);
      const err = new APIError(resp.status, msg, data && data.error && data.error.code);
      if (resp.status === 401) signOut("Your API key was refused: " + msg);
      throw err;
    }
    return data;
  }

  // ---- sign in / out -----------------------------------------------------

  function signedIn() { return !!sessionStorage.getItem(KEY); }

  function signOut(message) {
    sessionStorage.removeItem(KEY);
    stopTimer();
    showSignIn(message);
  }

  function showSignIn(message) {
    $("nav").hidden = true;
    $("sign-out").hidden = true;
    $("view").replaceChildren();
    $("sign-in").hidden = false;
    $("sign-in-error").textContent = message || "";
    say("");
    $("api-key").focus();
  }

  async function onSignIn(ev) {
    ev.preventDefault();
    const input = $("api-key");
    const key = input.value.trim();
    if (!key) return;
    sessionStorage.setItem(KEY, key);
    input.value = "";
    try {
      await api("/models");
    } catch (e) {
      sessionStorage.removeItem(KEY);
      showSignIn(e.status === 401 ? "That API key was refused." : "Could not reach the API: " + e.message);
      return;
    }
    $("sign-in").hidden = true;
    if (!location.hash || location.hash === "#/") location.hash = "#/generations";
    else route();
  }

  // ---- routing -----------------------------------------------------------

  function stopTimer() {
    if (timer) clearTimeout(timer);
    timer = null;
  }

  // every schedules fn (an async re-render) again after ms while the view
  // that started it is still shown.
  function every(ms, seq, fn) {
    stopTimer();
    timer = setTimeout(async () => {
      if (seq !== renderSeq) return;
      try { await fn(); } catch (e) { say(e.message, true); }
    }, ms);
  }

  function parseHash() {
    const raw = location.hash.replace(/^#\/?/, "");
    const [path, query] = raw.split("?");
    const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
    return { parts, params: new URLSearchParams(query || "") };
  }

  async function route() {
    stopTimer();
    renderSeq++;
    const seq = renderSeq;
    if (!signedIn()) { showSignIn(); return; }
    $("sign-in").hidden = true;
    $("nav").hidden = false;
    $("sign-out").hidden = false;
    const { parts, params } = parseHash();
    const section = parts[0] || "generations";
    for (const a of document.querySelectorAll("#nav a")) {
      if (a.dataset.section === section) a.setAttribute("aria-current", "page");
      else a.removeAttribute("aria-current");
    }
    const views = {
      generations: parts[1] ? () => generationView(seq, parts[1]) : () => generationsView(seq, params),
      batches: parts[1] ? () => batchView(seq, parts[1]) : () => batchesView(seq),
      webhooks: parts[1] ? () => webhookView(seq, parts[1]) : () => webhooksView(seq),
      usage: () => usageView(seq),
    };
    const view = views[section] || views.generations;
    say("Loading…");
    try {
      await view();
      if (seq === renderSeq) say("");
    } catch (e) {
      if (seq === renderSeq && e.status !== 401) say(e.message, true);
    }
  }

  // show replaces the view with a titled page and moves focus to its title
  // (for keyboard and screen reader users) on navigation, not on refresh.
  function show(seq, title, ...content) {
    if (seq !== renderSeq) return false;
    const view = $("view");
    const first = view.dataset.seq !== String(seq);
    // On a refresh, put focus back on the same control in the new DOM.
    const active = document.activeElement;
    let again = null;
    if (!first && active && view.contains(active)) {
      if (active.id) again = "#" + CSS.escape(active.id);
      else if (active.dataset.delivery) again = `${active.tagName.toLowerCase()}[data-delivery="${CSS.escape(active.dataset.delivery)}"]`;
      else if (active.dataset.file) again = `${active.tagName.toLowerCase()}[data-file="${CSS.escape(active.dataset.file)}"]`;
      else if (active.getAttribute("href")) again = `a[href="${CSS.escape(active.getAttribute("href"))}"]`;
    }
    const heading = h("h1", { id: "view-title", tabindex: "-1" }, title);
    view.replaceChildren(heading, ...content);
    view.dataset.seq = String(seq);
    document.title = title + " — lull console";
    if (first) heading.focus();
    else if (again) { const el = view.querySelector(again); if (el) el.focus(); }
    return true;
  }

  // keep re-renders from stealing focus or resetting controls: refreshes
  // replace only a region.
  function region(id, ...content) {
    const el = $(id);
    if (el) el.replaceChildren(...content);
  }

  // ---- generations -------------------------------------------------------

  async function generationsView(seq, params) {
    const status = params.get("status") || "";
    const after = params.get("after") || "";
    let q = "?limit=50";
    if (status) q += "&status=" + encodeURIComponent(status);
    if (after) q += "&after=" + encodeURIComponent(after);
    const page = await api("/generations" + q);
    const select = h("select", { id: "status-filter", name: "status" },
      h("option", { value: "" }, "any status"),
      STATUSES.map((s) => h("option", { value: s, selected: s === status }, s.replace("_", " "))));
    const filter = h("form", { class: "inline", onsubmit: (ev) => {
      ev.preventDefault();
      location.hash = "#/generations" + (select.value ? "?status=" + encodeURIComponent(select.value) : "");
    } },
    h("label", { for: "status-filter" }, "Status"), select,
    h("button", { type: "submit" }, "Filter"),
    h("button", { type: "button", class: "quiet", onclick: () => route() }, "Refresh"));
    const rows = page.data.map((g) => h("tr", {},
      h("td", {}, h("a", { href: "#/generations/" + encodeURIComponent(g.id), class: "mono" }, g.id)),
      h("td", {}, badge(g.status)),
      h("td", {}, g.model),
      h("td", {}, when(g.created_at)),
      h("td", { class: "num" }, g.usage ? String(g.usage.total_tokens) : "—")));
    const table = h("table", {},
      h("caption", {}, page.data.length ? `${page.data.length} generations, newest first` : "No generations" + (status ? " with status " + status : "") + "."),
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "ID"), h("th", { scope: "col" }, "Status"), h("th", { scope: "col" }, "Model"),
        h("th", { scope: "col" }, "Created"), h("th", { scope: "col", class: "num" }, "Tokens"))),
      h("tbody", {}, rows));
    const more = page.has_more ? h("p", {}, h("a", { href: "#/generations?" + new URLSearchParams({ ...(status && { status }), after: page.last_id }) }, "Older generations →")) : null;
    show(seq, "Generations", filter, table, more);
  }

  function responseText(resp) {
    if (!resp || !Array.isArray(resp.choices)) return "";
    return resp.choices.map((c) => (c.message && c.message.content) || c.text || "").join("\n\n");
  }

  async function generationView(seq, id) {
    const g = await api("/generation/" + encodeURIComponent(id));
    const fields = h("dl", { class: "fields" },
      h("dt", {}, "ID"), h("dd", { class: "mono" }, g.id),
      h("dt", {}, "Status"), h("dd", {}, badge(g.status)),
      h("dt", {}, "Model"), h("dd", {}, g.model),
      h("dt", {}, "Endpoint"), h("dd", { class: "mono" }, g.endpoint),
      h("dt", {}, "Created"), h("dd", {}, when(g.created_at)),
      h("dt", {}, "Started"), h("dd", {}, when(g.started_at)),
      h("dt", {}, "Ended"), h("dd", {}, when(g.completed_at)),
      h("dt", {}, "Expires"), h("dd", {}, when(g.expires_at)),
      h("dt", {}, "Attempts"), h("dd", {}, String(g.attempts || 0)),
      h("dt", {}, "Tokens"), h("dd", {}, g.usage ? `${g.usage.prompt_tokens} prompt + ${g.usage.completion_tokens} completion = ${g.usage.total_tokens}` : "—"),
      g.webhook_id ? [h("dt", {}, "Webhook"), h("dd", {}, h("a", { href: "#/webhooks/" + encodeURIComponent(g.webhook_id), class: "mono" }, g.webhook_id))] : null);
    const actions = h("div", { class: "toolbar" },
      h("a", { href: "#/generations" }, "← All generations"),
      h("button", { type: "button", class: "quiet", onclick: () => route() }, "Refresh"),
      g.status === "queued" ? h("button", { type: "button", class: "danger", onclick: async (ev) => {
        ev.target.disabled = true;
        try { await api("/generation/" + encodeURIComponent(g.id) + "/cancel", { method: "POST" }); say("Cancelled."); route(); }
        catch (e) { say(e.message, true); ev.target.disabled = false; }
      } }, "Cancel generation") : null);
    const parts = [actions, fields];
    if (g.error) parts.push(h("h2", {}, "Error"), h("p", { class: "error" }, `${g.error.code}: ${g.error.message}`));
    if (g.response) {
      parts.push(h("h2", { id: "response-title" }, "Response"),
        h("div", { class: "answer", id: "response-text", "aria-labelledby": "response-title" }, responseText(g.response) || "(no text)"),
        h("details", {}, h("summary", {}, "Response JSON"), h("pre", { id: "response-json" }, JSON.stringify(g.response, null, 2))));
    } else if (g.status === "queued" || g.status === "in_progress") {
      parts.push(h("p", { class: "muted" }, "No response yet; this page refreshes until the generation ends."));
      every(2000, seq, () => generationView(seq, id));
    }
    parts.push(h("h2", {}, "Request"), h("pre", { id: "request-json" }, g.request ? JSON.stringify(g.request, null, 2) : "(not available)"));
    show(seq, "Generation " + g.id, ...parts);
  }

  // ---- batches -----------------------------------------------------------

  function batchProgress(b, id) {
    const rc = b.request_counts || { total: 0, completed: 0, failed: 0 };
    const done = rc.completed + rc.failed;
    const label = `${b.id}: ${done} of ${rc.total || "?"} lines done`;
    return h("div", {},
      h("progress", { id, max: rc.total || 1, value: rc.total ? done : 0, "aria-label": label }),
      h("div", { class: "counts" }, `${rc.completed} completed · ${rc.failed} failed · ${rc.total} total`));
  }

  const ended = (b) => ["completed", "failed", "expired", "cancelled"].includes(b.status);

  async function batchesView(seq) {
    const page = await api("/batches?limit=50");
    const rows = page.data.map((b) => h("tr", {},
      h("td", {}, h("a", { href: "#/batches/" + encodeURIComponent(b.id), class: "mono" }, b.id)),
      h("td", {}, badge(b.status)),
      h("td", { class: "progress-cell" }, batchProgress(b, null)),
      h("td", { class: "mono" }, b.endpoint),
      h("td", {}, when(b.created_at))));
    const table = h("table", {},
      h("caption", {}, page.data.length ? "Batches, newest first; progress updates live." : "No batches yet. Start one with the Batch API or `lull batch run`."),
      h("thead", {}, h("tr", {}, ["ID", "Status", "Progress", "Endpoint", "Created"].map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", {}, rows));
    if (!show(seq, "Batches", h("div", { class: "toolbar" }, h("button", { type: "button", class: "quiet", onclick: () => route() }, "Refresh")), table)) return;
    if (page.data.some((b) => !ended(b))) every(2000, seq, () => batchesView(seq));
  }

  // download fetches a file with the bearer key and saves it through a blob
  // URL, so the key never appears in a link.
  async function download(fileID, name, button) {
    button.disabled = true;
    say("Downloading " + name + "…");
    try {
      const resp = await api("/files/" + encodeURIComponent(fileID) + "/content", { raw: true });
      const blob = await resp.blob();
      const url = URL.createObjectURL(blob);
      const a = h("a", { href: url, download: name });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10000);
      say(`Saved ${name} (${blob.size} bytes).`);
    } catch (e) {
      say("Download failed: " + e.message, true);
    } finally {
      button.disabled = false;
    }
  }

  function fileButton(fileID, name, label) {
    if (!fileID) return null;
    const b = h("button", { type: "button", class: "quiet", "data-file": fileID, onclick: () => download(fileID, name, b) }, label);
    return b;
  }

  async function batchView(seq, id) {
    const b = await api("/batches/" + encodeURIComponent(id));
    const body = [
      h("dt", {}, "Status"), h("dd", { id: "batch-status" }, badge(b.status)),
      h("dt", {}, "Progress"), h("dd", {}, batchProgress(b, "batch-progress")),
      h("dt", {}, "Endpoint"), h("dd", { class: "mono" }, b.endpoint),
      h("dt", {}, "Window"), h("dd", {}, b.completion_window),
      h("dt", {}, "Created"), h("dd", {}, when(b.created_at)),
      h("dt", {}, "Expires"), h("dd", {}, when(b.expires_at)),
      h("dt", {}, "Ended"), h("dd", {}, when(b.completed_at || b.failed_at || b.expired_at || b.cancelled_at)),
      h("dt", {}, "Input file"), h("dd", { class: "mono" }, b.input_file_id)];
    const files = h("div", { class: "toolbar", id: "batch-files" },
      fileButton(b.output_file_id, b.id + "-output.jsonl", "Download results"),
      fileButton(b.error_file_id, b.id + "-errors.jsonl", "Download errors"),
      fileButton(b.input_file_id, b.id + "-input.jsonl", "Download input"));
    const actions = h("div", { class: "toolbar" },
      h("a", { href: "#/batches" }, "← All batches"),
      !ended(b) && b.status !== "cancelling" && b.status !== "finalizing" ? h("button", { type: "button", class: "danger", onclick: async (ev) => {
        ev.target.disabled = true;
        try { await api("/batches/" + encodeURIComponent(b.id) + "/cancel", { method: "POST" }); say("Cancelling " + b.id + "."); route(); }
        catch (e) { say(e.message, true); ev.target.disabled = false; }
      } }, "Cancel batch") : null);
    const errs = b.errors && b.errors.data && b.errors.data.length ? [h("h2", {}, "Validation errors"),
      h("ul", {}, b.errors.data.map((e) => h("li", {}, (e.line ? `line ${e.line}: ` : "") + `${e.message} (${e.code})`)))] : [];
    if (!show(seq, "Batch " + b.id, actions, h("dl", { class: "fields" }, body), h("h2", {}, "Files"), files, ...errs)) return;
    if (!ended(b)) every(1000, seq, () => batchView(seq, id));
  }

  // ---- webhooks ----------------------------------------------------------

  async function webhooksView(seq) {
    const page = await api("/webhooks");
    const url = h("input", { id: "webhook-url", name: "url", type: "url", required: true, placeholder: "https://example.com/hooks/lull", size: 40 });
    const desc = h("input", { id: "webhook-description", name: "description", maxlength: 512, size: 24 });
    const created = h("div", { id: "webhook-created" });
    const form = h("form", { class: "inline", onsubmit: async (ev) => {
      ev.preventDefault();
      try {
        const w = await api("/webhooks", { method: "POST", body: { url: url.value, description: desc.value || undefined } });
        await webhooksView(seq);
        region("webhook-created", h("div", { class: "notice", role: "alert" },
          h("p", {}, "Registered ", h("a", { href: "#/webhooks/" + encodeURIComponent(w.id), class: "mono" }, w.id), ". Its signing secret is shown only now:"),
          h("p", {}, h("code", { id: "webhook-secret" }, w.secret))));
      } catch (e) { say(e.message, true); }
    } },
    h("label", { for: "webhook-url" }, "URL"), url,
    h("label", { for: "webhook-description" }, "Description"), desc,
    h("button", { type: "submit" }, "Register endpoint"));
    const rows = page.data.map((w) => h("tr", {},
      h("td", {}, h("a", { href: "#/webhooks/" + encodeURIComponent(w.id), class: "mono" }, w.id)),
      h("td", { class: "mono" }, w.url),
      h("td", {}, badge(w.status)),
      h("td", {}, (w.events || []).join(", ")),
      h("td", {}, w.description || "")));
    const table = h("table", {},
      h("caption", {}, page.data.length ? "Your webhook endpoints." : "No webhook endpoints yet."),
      h("thead", {}, h("tr", {}, ["ID", "URL", "Status", "Events", "Description"].map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", {}, rows));
    show(seq, "Webhooks", table, h("h2", {}, "Register an endpoint"), form, created);
  }

  function attemptItem(a) {
    const code = a.status_code === null || a.status_code === undefined ? "no answer" : String(a.status_code);
    const at = new Date(a.at * 1000);
    return h("li", {},
      h("span", { class: "code " + (a.status_code >= 200 && a.status_code < 300 ? "ok" : "bad") }, code),
      ` · ${a.latency_ms} ms · `,
      h("time", { datetime: at.toISOString(), title: at.toISOString() }, at.toLocaleTimeString()),
      a.error ? h("div", { class: "muted small" }, a.error) : null);
  }

  async function webhookView(seq, id) {
    const [w, deliveries] = await Promise.all([
      api("/webhooks/" + encodeURIComponent(id)),
      api("/webhooks/" + encodeURIComponent(id) + "/deliveries?limit=50"),
    ]);
    const fields = h("dl", { class: "fields" },
      h("dt", {}, "URL"), h("dd", { class: "mono" }, w.url),
      h("dt", {}, "Status"), h("dd", {}, badge(w.status), w.disabled_reason ? " " + w.disabled_reason : ""),
      h("dt", {}, "Events"), h("dd", {}, (w.events || []).join(", ")),
      h("dt", {}, "Created"), h("dd", {}, when(w.created_at)));
    const test = h("button", { type: "button", class: "quiet", id: "send-test", onclick: async () => {
      test.disabled = true;
      try {
        const models = await api("/models");
        const g = await api("/slow/chat/completions", { method: "POST", body: {
          model: models.data[0].id, max_tokens: 1, messages: [{ role: "user", content: "lull webhook test" }],
          metadata: { webhook_id: w.id } } });
        say(`Sent test generation ${g.id}; its delivery appears below when it ends.`);
      } catch (e) { say(e.message, true); }
      test.disabled = false;
    } }, "Send test event");
    const rows = deliveries.data.map((d) => {
      const retry = h("button", { type: "button", class: "quiet", "data-delivery": d.id, "aria-label": "Retry delivery " + d.id, onclick: async () => {
        retry.disabled = true;
        try {
          await api(`/webhooks/${encodeURIComponent(w.id)}/deliveries/${encodeURIComponent(d.id)}/retry`, { method: "POST" });
          say(`Retry of ${d.id} queued.`);
          await webhookView(seq, id);
        } catch (e) { say(e.message, true); retry.disabled = false; }
      } }, "Retry");
      return h("tr", { "data-delivery": d.id },
        h("td", {}, h("code", { class: "small" }, d.id), h("div", { class: "muted small" }, d.event_type)),
        h("td", {}, d.generation_id ? h("a", { href: "#/generations/" + encodeURIComponent(d.generation_id), class: "mono small" }, d.generation_id) : "—"),
        h("td", {}, badge(d.status), d.next_attempt_at ? h("div", { class: "muted small" }, "next ", when(d.next_attempt_at)) : null),
        h("td", {}, d.attempts.length ? h("ol", { class: "attempts", "aria-label": "Attempts of " + d.id }, d.attempts.map(attemptItem))
          : h("span", { class: "muted" }, "none yet")),
        h("td", {}, retry));
    });
    const table = h("div", { class: "scroll" }, h("table", { id: "deliveries" },
      h("caption", {}, deliveries.data.length ? "Recent deliveries, newest first, each attempt with the endpoint's status code and latency; this list refreshes every few seconds." : "No deliveries yet."),
      h("thead", {}, h("tr", {}, ["Delivery", "Generation", "Status", "Attempts (code · latency · time)", ""].map((t) =>
        h("th", { scope: "col" }, t || h("span", { class: "sr-only" }, "Actions"))))),
      h("tbody", {}, rows)));
    const actions = h("div", { class: "toolbar" }, h("a", { href: "#/webhooks" }, "← All webhooks"), test,
      h("span", { class: "muted" }, "(no test endpoint in the API: this sends a real 1-token generation that names this endpoint)"));
    if (!show(seq, "Webhook " + w.id, actions, fields, h("h2", {}, "Deliveries"), table)) return;
    every(3000, seq, () => webhookView(seq, id));
  }

  // ---- usage -------------------------------------------------------------

  // There is no usage endpoint yet: usage is summed here from the caller's
  // generations (newest first), up to MAX_GENERATIONS or DAYS days back.
  const DAYS = 30;
  const MAX_GENERATIONS = 2000;

  async function usageView(seq) {
    const since = Date.now() / 1000 - DAYS * 86400;
    const byDay = new Map();
    let after = "", seen = 0, truncated = false;
    for (;;) {
      const page = await api("/generations?limit=100" + (after ? "&after=" + encodeURIComponent(after) : ""));
      if (seq !== renderSeq) return;
      let old = false;
      for (const g of page.data) {
        if (g.created_at < since) { old = true; break; }
        const day = new Date(g.created_at * 1000).toISOString().slice(0, 10);
        const d = byDay.get(day) || { tokens: 0, requests: 0 };
        d.requests++;
        d.tokens += g.usage ? g.usage.total_tokens : 0;
        byDay.set(day, d);
        seen++;
      }
      if (old || !page.has_more) break;
      if (seen >= MAX_GENERATIONS) { truncated = true; break; }
      after = page.last_id;
      say(`Reading generations… ${seen}`);
    }
    const days = [];
    for (let i = DAYS - 1; i >= 0; i--) {
      const day = new Date(Date.now() - i * 86400000).toISOString().slice(0, 10);
      days.push({ day, ...(byDay.get(day) || { tokens: 0, requests: 0 }) });
    }
    const note = h("p", { class: "muted" },
      `Tokens per day (UTC) over the last ${DAYS} days, summed in your browser from your slow requests` +
      (truncated ? ` (the newest ${MAX_GENERATIONS} only)` : "") + ". lull has no usage endpoint yet, and the generations list it reads leaves batch lines out.");
    const rows = days.filter((d) => d.requests > 0).map((d) => h("tr", {},
      h("td", {}, d.day), h("td", { class: "num" }, String(d.requests)), h("td", { class: "num" }, String(d.tokens))));
    const table = h("table", { id: "usage-table" },
      h("caption", {}, rows.length ? "Days with requests" : "No requests in this period."),
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Day"), h("th", { scope: "col", class: "num" }, "Requests"), h("th", { scope: "col", class: "num" }, "Tokens"))),
      h("tbody", {}, rows));
    show(seq, "Usage", note, chart(days), table);
  }

  // chart draws tokens per day as an SVG bar chart (attributes only: no
  // inline styles, which the Content-Security-Policy forbids).
  function chart(days) {
    const W = 900, H = 260, left = 56, bottom = 28, top = 12;
    const max = Math.max(1, ...days.map((d) => d.tokens));
    const bw = (W - left - 8) / days.length;
    const svg = h("svg", { class: "chart", id: "usage-chart", viewBox: `0 0 ${W} ${H}`, role: "img",
      "aria-label": `Tokens per day, last ${days.length} days; the largest day used ${max} tokens` });
    svg.append(h("line", { class: "axis", x1: left, y1: H - bottom, x2: W - 4, y2: H - bottom }));
    for (const frac of [0, 0.5, 1]) {
      const y = H - bottom - frac * (H - bottom - top);
      svg.append(h("line", { class: "axis", x1: left, y1: y, x2: W - 4, y2: y }),
        h("text", { x: left - 6, y: y + 4, "text-anchor": "end" }, String(Math.round(max * frac))));
    }
    days.forEach((d, i) => {
      const bh = (d.tokens / max) * (H - bottom - top);
      const x = left + i * bw + 1;
      svg.append(h("rect", { class: "bar", x: x.toFixed(1), y: (H - bottom - bh).toFixed(1), width: Math.max(bw - 2, 1).toFixed(1), height: bh.toFixed(1) },
        h("title", {}, `${d.day}: ${d.tokens} tokens, ${d.requests} requests`)));
      if (i % 5 === 0 || i === days.length - 1) {
        svg.append(h("text", { x: (x + bw / 2).toFixed(1), y: H - 10, "text-anchor": "middle" }, d.day.slice(5)));
      }
    });
    return svg;
  }

  // ---- start -------------------------------------------------------------

  document.addEventListener("DOMContentLoaded", () => {
    $("sign-in-form").addEventListener("submit", onSignIn);
    $("sign-out").addEventListener("click", () => signOut("Signed out."));
    window.addEventListener("hashchange", route);
    route();
  });
})();
