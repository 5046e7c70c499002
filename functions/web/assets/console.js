// eurochat agent console: the site's open conversations, live; reply; export or
// erase a visitor; answer a data request by email (preview, warn, confirm). The agent token comes from the page's fragment (#token=…),
// which browsers never send to a server, and is kept for this tab only.
// Protocol: docs/protocol.md (1.1: every frame carries a `ref` its answer echoes; answers may
// arrive in any order). No dependencies; text is always inserted as text.
(() => {
  "use strict";
  const page = document.currentScript.dataset;
  const wsUrl = page.ws;
  const api = location.origin;

  const fromHash = new URLSearchParams(location.hash.slice(1)).get("token");
  if (fromHash) {
    sessionStorage.setItem("eurochat:agent-token", fromHash);
    history.replaceState(null, "", location.pathname);
  }
  let token = sessionStorage.getItem("eurochat:agent-token");
  // The site is the token's (its claims are readable base64url JSON; the server checks the signature).
  const claims = (() => {
    try {
      const b64 = (token || "").split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
      return JSON.parse(atob(b64));
    } catch {
      return {};
    }
  })();
  document.querySelector("[data-test=console-site]").textContent = claims.site || "(signed out)";

  const $ = (sel) => document.querySelector(sel);
  const el = (tag, attrs = {}, text) => {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    return node;
  };
  const list = $("[data-test=conversations]");
  const pane = $("[data-test=conversation]");
  const log = $("[data-test=thread]");
  const title = $("[data-test=title]");
  const typing = $("[data-test=visitor-typing]");
  const form = $("[data-test=reply-form]");
  const input = $("[data-test=reply]");
  const notice = $("[data-test=console-notice]");
  const status = $("[data-test=console-status]");

  let socket = null;
  let retries = 0;
  let counter = 0;
  let current = null; // the open conversation
  let conversations = [];
  let thread = new Map(); // seq -> message, of the open conversation
  let visitorReadSeq = 0;
  const pending = new Map();

  const say = (text) => (notice.textContent = text);
  let refs = 0;
  // Every frame gets a `ref` (a reply's is its clientMsgId), echoed by its answer or error.
  const send = (frame) =>
    socket &&
    socket.readyState === WebSocket.OPEN &&
    socket.send(JSON.stringify({ ...frame, ref: frame.clientMsgId || `${frame.action}-${++refs}` }));
  const label = (c) => c.name || `Visitor ${c.visitorId.slice(4, 12)}`;
  const refresh = () => send({ action: "listConversations", status: "open", limit: 50 });

  function renderList() {
    list.replaceChildren();
    if (!conversations.length) list.append(el("li", { class: "ec-empty" }, "No open conversations"));
    // The listing comes newest-begun first; show the most recently active first.
    const byActivity = [...conversations].sort((a, b) => (b.lastActivityAt || 0) - (a.lastActivityAt || 0));
    for (const c of byActivity) {
      const unread = Math.max(0, c.lastSeq - c.agentReadSeq);
      const li = el("li", { "data-test": "conversation-item", "data-session": c.sessionId, tabindex: "0" });
      if (current && current.sessionId === c.sessionId) li.classList.add("ec-current");
      li.append(el("span", {}, label(c)));
      if (unread) li.append(el("b", { class: "ec-unread" }, String(unread)));
      li.addEventListener("click", () => open(c));
      li.addEventListener("keydown", (e) => e.key === "Enter" && open(c));
      list.append(li);
    }
  }

  function renderThread() {
    log.replaceChildren();
    const sorted = [...thread.values()].sort((a, b) => a.seq - b.seq);
    const lastSeen = sorted.filter((m) => m.role === "agent" && m.seq <= visitorReadSeq).pop();
    for (const m of sorted) {
      const attrs = { class: `ec-msg ec-${m.role}`, "data-test": "thread-message", "data-role": m.role };
      if (m.authorName) attrs.title = m.authorName;
      log.append(el("li", attrs, m.text));
      if (m === lastSeen) log.append(el("li", { class: "ec-seen", "data-test": "seen" }, "Seen by the visitor"));
    }
    for (const text of pending.values()) log.append(el("li", { class: "ec-msg ec-agent ec-pending" }, text));
    log.scrollTop = log.scrollHeight;
  }

  function open(c) {
    current = c;
    thread = new Map();
    pending.clear();
    visitorReadSeq = c.visitorReadSeq || 0;
    pane.hidden = false;
    title.textContent = label(c);
    pane.dataset.session = c.sessionId;
    typing.hidden = true;
    send({ action: "join", sessionId: c.sessionId });
    send({ action: "history", sessionId: c.sessionId, after: 0 });
    renderList();
    renderThread();
    input.focus();
  }

  function closePane() {
    current = null;
    pane.hidden = true;
    delete pane.dataset.session;
    renderList();
  }

  function markRead() {
    if (!current || !thread.size) return;
    const seq = Math.max(...thread.keys());
    if (seq > current.agentReadSeq) {
      current.agentReadSeq = seq;
      send({ action: "markRead", sessionId: current.sessionId, seq });
    }
  }

  function receive(f) {
    switch (f.type) {
      case "conversations":
        conversations = f.items;
        if (current) {
          const fresh = conversations.find((c) => c.sessionId === current.sessionId);
          if (fresh) {
            // Keep what this tab already read; the listing may predate its markRead.
            fresh.agentReadSeq = Math.max(fresh.agentReadSeq, current.agentReadSeq);
            current = fresh;
          } else {
            say("The conversation was deleted.");
            closePane();
          }
        }
        renderList();
        return;
      case "message": {
        const m = f.message;
        const known = conversations.find((c) => c.sessionId === m.sessionId);
        if (known) {
          known.lastSeq = Math.max(known.lastSeq, m.seq);
          known.lastActivityAt = Math.max(known.lastActivityAt || 0, m.createdAt || 0);
        } else refresh();
        if (current && m.sessionId === current.sessionId) {
          thread.set(m.seq, m);
          if (m.role === "visitor") typing.hidden = true;
          renderThread();
          markRead();
        }
        renderList();
        return;
      }
      case "ack":
        if (current && f.sessionId === current.sessionId && pending.has(f.ref)) {
          // The ack carries the message as stored (with the agent's display name).
          thread.set(f.seq, f.message || { seq: f.seq, role: "agent", text: pending.get(f.ref) });
          pending.delete(f.ref);
          current.lastSeq = Math.max(current.lastSeq, f.seq);
          renderThread();
          // The agent's own reply is not unread.
          markRead();
          renderList();
        }
        return;
      case "history":
        if (!current || f.sessionId !== current.sessionId) return;
        for (const m of f.messages) thread.set(m.seq, m);
        visitorReadSeq = Math.max(visitorReadSeq, f.visitorReadSeq || 0);
        if (f.hasMore) send({ action: "history", sessionId: current.sessionId, after: Math.max(...thread.keys()) });
        else markRead();
        renderThread();
        return;
      case "typing":
        if (current && f.sessionId === current.sessionId && f.role === "visitor") typing.hidden = !f.isTyping;
        return;
      case "read":
        if (current && f.sessionId === current.sessionId && f.role === "visitor") {
          visitorReadSeq = Math.max(visitorReadSeq, f.seq);
          renderThread();
        }
        return;
      case "deleted":
        conversations = conversations.filter((c) => c.sessionId !== f.sessionId);
        if (current && current.sessionId === f.sessionId) closePane();
        renderList();
        return;
      case "error":
        say(`Refused: ${f.code}`);
        if (f.ref) pending.delete(f.ref);
        return;
      default:
    }
  }

  function connect() {
    if (!token) {
      status.textContent = "signed out: open this page as …/console#token=<agent token> (eurochat-admin mint-token prints one)";
      return;
    }
    socket = new WebSocket(wsUrl, ["eurochat.v1", token]);
    socket.onopen = () => {
      retries = 0;
      status.textContent = "online";
      document.body.dataset.state = "online";
      refresh();
      if (current) open(current);
    };
    socket.onmessage = (e) => receive(JSON.parse(e.data));
    socket.onclose = () => {
      status.textContent = "offline";
      document.body.dataset.state = "offline";
      setTimeout(connect, Math.min(30000, 500 * 2 ** retries++));
    };
  }

  async function post(path, body) {
    const r = await fetch(api + path, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
      body: JSON.stringify(body),
      // Under the page's no-referrer policy a POST would carry `Origin: null`, which the
      // GDPR routes refuse; same-origin keeps the real Origin and sends no Referer elsewhere.
      referrerPolicy: "same-origin",
      credentials: "omit",
    });
    let json = null;
    try {
      json = await r.json();
    } catch (_) {
      json = null;
    }
    return { status: r.status, body: json };
  }
  const problem = (r) => (r.body && r.body.error ? r.body.error.code : `HTTP ${r.status}`);

  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const text = input.value.trim();
    if (!text || !current) return;
    const clientMsgId = `a-${Date.now()}-${++counter}`;
    pending.set(clientMsgId, text);
    input.value = "";
    send({ action: "typing", sessionId: current.sessionId, isTyping: false });
    send({ action: "sendMessage", sessionId: current.sessionId, clientMsgId, text });
    renderThread();
  });
  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey) {
      e.preventDefault();
      form.requestSubmit();
    }
  });
  let typingTimer = null;
  input.addEventListener("input", () => {
    if (!current) return;
    if (!typingTimer) send({ action: "typing", sessionId: current.sessionId, isTyping: true });
    clearTimeout(typingTimer);
    typingTimer = setTimeout(() => {
      typingTimer = null;
      if (current) send({ action: "typing", sessionId: current.sessionId, isTyping: false });
    }, 3000);
  });

  $("[data-test=export-visitor]").addEventListener("click", async () => {
    if (!current) return;
    const pages = [];
    let cursor = null;
    do {
      const body = cursor ? { visitorId: current.visitorId, cursor } : { visitorId: current.visitorId };
      const r = await post("/v1/gdpr/export", body);
      if (r.status !== 200) return say(`Export refused (${problem(r)})`);
      pages.push(r.body);
      cursor = r.body.next;
    } while (cursor);
    const doc = pages.length === 1 ? pages[0] : { pages };
    const url = URL.createObjectURL(new Blob([JSON.stringify(doc, null, 2)], { type: "application/json" }));
    const a = el("a", { href: url, download: `eurochat-${current.visitorId}.json` });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
    say("Export downloaded.");
  });

  $("[data-test=erase-visitor]").addEventListener("click", async () => {
    if (!current || !confirm(`Erase everything stored about ${label(current)}?`)) return;
    const r = await post("/v1/gdpr/erase", { visitorId: current.visitorId });
    if (r.status !== 200) return say(`Erasure refused (${problem(r)})`);
    say(`Erased ${r.body.total} items.`);
    conversations = conversations.filter((c) => c.sessionId !== current.sessionId);
    closePane();
    refresh();
  });

  // Data requests by email. A pre-chat email is typed by the visitor and verified by nobody, so
  // a lookup may match a stranger who typed the same address. Nothing is downloaded or erased
  // before the admin has seen the matched sessions with that warning and confirmed that they
  // verified the requester (docs/gdpr.md, "Requests by email").
  const lookupForm = $("[data-test=lookup-form]");
  const lookupEmail = $("[data-test=lookup-email]");
  const lookupResult = $("[data-test=lookup-result]");
  const lookupWarning = $("[data-test=lookup-warning]");
  const lookupSessions = $("[data-test=lookup-sessions]");
  const lookupVerified = $("[data-test=lookup-verified]");
  const lookupDownload = $("[data-test=lookup-download]");
  const lookupErase = $("[data-test=lookup-erase]");
  let preview = null; // { email, first page of the export }

  const unverifiedWarning = (n) =>
    `${n} session${n === 1 ? "" : "s"} found by an email address that visitors type and nobody verifies: ` +
    "some may belong to someone else who typed the same address. Verify the requester first " +
    "(a reply from that address, or a session id from their widget's \"Download my data\").";

  function resetLookup() {
    preview = null;
    lookupResult.hidden = true;
    lookupVerified.checked = false;
    lookupDownload.disabled = true;
    lookupErase.disabled = true;
    lookupSessions.replaceChildren();
  }

  lookupForm.addEventListener("submit", async (e) => {
    e.preventDefault();
    resetLookup();
    const email = lookupEmail.value.trim();
    if (!email) return;
    // The export's first page is the preview: it lists the sessions with how each was found.
    const r = await post("/v1/gdpr/export", { email });
    if (r.status !== 200) return say(`Lookup refused (${problem(r)})`);
    preview = { email, first: r.body };
    const count = r.body.subject.sessionCount;
    lookupResult.dataset.count = String(count);
    lookupWarning.textContent = count ? unverifiedWarning(count) : "No session has this email.";
    for (const s of r.body.sessions) {
      const li = el("li", { class: "ec-match", "data-test": "lookup-session", "data-found-by": s.foundBy || "" });
      const who = s.preChatForm && s.preChatForm.name ? ` · ${s.preChatForm.name}` : "";
      const visitor = s.visitorId ? ` · visitor ${s.visitorId}` : "";
      li.append(el("span", {}, `${s.sessionId.slice(0, 12)}…${visitor} · ${s.createdAt || ""} · ${s.messageCount || 0} messages${who} · `));
      if (s.foundBy === "unverifiedEmail") li.append(el("span", { class: "ec-mark" }, "unverified email"));
      lookupSessions.append(li);
    }
    if (r.body.sessions.length < count) lookupSessions.append(el("li", { class: "ec-match" }, `…and ${count - r.body.sessions.length} more`));
    lookupErase.textContent = `Erase ${count} session${count === 1 ? "" : "s"}`;
    lookupResult.hidden = false;
  });

  lookupVerified.addEventListener("change", () => {
    const ready = Boolean(preview && preview.first.subject.sessionCount && lookupVerified.checked);
    lookupDownload.disabled = !ready;
    lookupErase.disabled = !ready;
  });

  lookupDownload.addEventListener("click", async () => {
    if (!preview || !lookupVerified.checked) return;
    const pages = [preview.first];
    let cursor = preview.first.next;
    while (cursor) {
      const r = await post("/v1/gdpr/export", { email: preview.email, cursor });
      if (r.status !== 200) return say(`Export refused (${problem(r)})`);
      pages.push(r.body);
      cursor = r.body.next;
    }
    const doc = pages.length === 1 ? pages[0] : { pages };
    const url = URL.createObjectURL(new Blob([JSON.stringify(doc, null, 2)], { type: "application/json" }));
    const a = el("a", { href: url, download: "eurochat-email-request.json" });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
    say("Export downloaded; it marks every session as found by an unverified email.");
  });

  lookupErase.addEventListener("click", async () => {
    if (!preview || !lookupVerified.checked) return;
    const count = preview.first.subject.sessionCount;
    if (!confirm(`${unverifiedWarning(count)}\n\nErase these ${count} sessions for good?`)) return;
    // Erase exactly the visitors the preview showed, not whatever matches the email by now.
    let total = 0;
    for (const visitorId of preview.first.subject.visitorIds) {
      const r = await post("/v1/gdpr/erase", { visitorId });
      if (r.status !== 200) return say(`Erasure refused (${problem(r)}) after ${total} items`);
      total += r.body.total;
    }
    resetLookup();
    say(`Erased ${total} items of ${count} sessions.`);
    refresh();
  });

  // Erasures and new visitors elsewhere show up without a reload.
  setInterval(refresh, 3000);
  connect();
})();
