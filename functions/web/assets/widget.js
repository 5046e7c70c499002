// eurochat visitor widget. Embed on any page of an origin the site lists:
//   <link rel="stylesheet" href="https://HTTP-API/eurochat.css">
//   <script src="https://HTTP-API/widget.js" data-site="SITE" defer></script>
// The HTTP API is the script's own origin unless data-api says otherwise; the WebSocket
// URL is the one of the deployment that served this file (filled in when served) unless
// data-ws says otherwise.
// The token lives in localStorage and travels in request bodies, as a bearer token and as
// the WebSocket subprotocol: never in a URL, never in a cookie. Runs under a strict
// Content-Security-Policy: no inline script or style, no eval.
// Protocol: docs/protocol.md (1.1: every frame carries a `ref` its answer echoes; answers may
// arrive in any order). No dependencies; text is always inserted as text.
(() => {
  "use strict";
  const script = document.currentScript;
  const site = script.dataset.site;
  const api = script.dataset.api || new URL(script.src).origin;
  const wsUrl = script.dataset.ws || "{{WS_URL}}";
  const tokenKey = `eurochat:${site}:token`;

  let token = localStorage.getItem(tokenKey);
  let socket = null;
  let erased = false;
  let retries = 0;
  let counter = 0;
  let refs = 0;
  let agentReadSeq = 0;
  let typingSent = false;
  let typingTimer = null;
  let agentTypingTimer = null;
  const messages = new Map(); // seq -> message
  const pending = new Map(); // clientMsgId -> text, until acknowledged
  const outbox = []; // frames waiting for an open socket

  const el = (tag, attrs = {}, text) => {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    return node;
  };

  // The widget's markup.
  const root = el("section", { class: "ec-widget", "aria-label": "Chat", "data-test": "widget" });
  const head = el("header", { class: "ec-head" });
  head.append(el("strong", {}, "Chat with us"));
  const status = el("span", { class: "ec-status", "data-test": "status" }, "connecting…");
  head.append(status);
  const log = el("ol", { class: "ec-log", "data-test": "log", "aria-live": "polite" });
  const typing = el("div", { class: "ec-typing", "data-test": "typing", hidden: "" }, "Agent is typing…");
  const form = el("form", { class: "ec-form" });
  const input = el("textarea", { rows: "2", placeholder: "Write a message…", "data-test": "input", "aria-label": "Message" });
  const sendButton = el("button", { type: "submit", "data-test": "send" }, "Send");
  form.append(input, sendButton);
  const tools = el("footer", { class: "ec-tools" });
  const exportButton = el("button", { type: "button", "data-test": "export" }, "Download my data");
  const eraseButton = el("button", { type: "button", "data-test": "erase" }, "Delete my data");
  tools.append(exportButton, eraseButton);
  const notice = el("p", { class: "ec-notice", "data-test": "notice", role: "status" });
  root.append(head, log, typing, form, tools, notice);

  const say = (text) => {
    notice.textContent = text;
  };

  async function post(path, body, bearer) {
    const headers = { "content-type": "application/json" };
    if (bearer) headers.authorization = `Bearer ${bearer}`;
    // No cookie exists, so none is sent. The page's Referrer-Policy is no-referrer, under which
    // a same-origin POST carries "Origin: null" (Fetch standard) and the API would refuse it;
    // "same-origin" keeps the real Origin and still sends no Referer to any other origin.
    const r = await fetch(api + path, {
      method: "POST",
      headers,
      body: JSON.stringify(body),
      credentials: "omit",
      referrerPolicy: "same-origin",
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

  // Opens the visitor's session, resuming the stored one when it still works.
  async function openSession() {
    let r = await post("/v1/sessions", token ? { siteId: site, token } : { siteId: site });
    if ((r.status === 401 || r.status === 404) && token) {
      localStorage.removeItem(tokenKey);
      token = null;
      r = await post("/v1/sessions", { siteId: site });
    }
    if (r.status !== 200 && r.status !== 201) {
      say(`Chat unavailable (${problem(r)})`);
      return false;
    }
    token = r.body.token;
    localStorage.setItem(tokenKey, token);
    root.dataset.session = r.body.sessionId;
    return true;
  }

  function lastSeq() {
    return messages.size ? Math.max(...messages.keys()) : 0;
  }

  // Every frame gets a `ref` (a message's is its clientMsgId), so its answer or error is
  // matched to it whatever order answers arrive in.
  const withRef = (frame) => (frame.ref ? frame : { ...frame, ref: frame.clientMsgId || `${frame.action}-${++refs}` });

  function send(frame) {
    frame = withRef(frame);
    if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(frame));
    else {
      outbox.push(frame);
      if (!socket || socket.readyState === WebSocket.CLOSED) start();
    }
  }

  function render() {
    log.replaceChildren();
    const sorted = [...messages.values()].sort((a, b) => a.seq - b.seq);
    const lastSeen = sorted.filter((m) => m.role === "visitor" && m.seq <= agentReadSeq).pop();
    for (const m of sorted) {
      const attrs = { class: `ec-msg ec-${m.role}`, "data-test": "message", "data-role": m.role, "data-seq": m.seq };
      // An agent's name comes with its live messages (not with history): shown as a tooltip.
      if (m.authorName) attrs.title = m.authorName;
      const li = el("li", attrs, m.text);
      log.append(li);
      if (m === lastSeen) log.append(el("li", { class: "ec-seen", "data-test": "seen" }, "Seen"));
    }
    for (const [id, text] of pending) {
      log.append(el("li", { class: "ec-msg ec-visitor ec-pending", "data-test": "pending", "data-ref": id }, text));
    }
    log.scrollTop = log.scrollHeight;
  }

  function markRead() {
    const seq = lastSeq();
    const fromAgent = [...messages.values()].some((m) => m.role !== "visitor" && m.seq === seq);
    if (seq > 0 && fromAgent && document.visibilityState === "visible") send({ action: "markRead", seq });
  }

  function receive(frame) {
    switch (frame.type) {
      case "hello":
        // The server's protocol version and limits (docs/protocol.md, "hello").
        root.dataset.protocol = frame.protocol;
        if (frame.limits) input.dataset.maxBytes = String(frame.limits.maxTextBytes);
        return;
      case "ack":
        // The ack carries the message as stored: render that, not the local copy.
        if (pending.has(frame.ref) || frame.message) {
          messages.set(frame.seq, frame.message || { seq: frame.seq, role: "visitor", text: pending.get(frame.ref) });
          pending.delete(frame.ref);
        }
        break;
      case "message":
        messages.set(frame.message.seq, frame.message);
        if (frame.message.role !== "visitor") {
          typing.hidden = true;
          markRead();
        }
        break;
      case "history":
        for (const m of frame.messages) messages.set(m.seq, m);
        agentReadSeq = Math.max(agentReadSeq, frame.agentReadSeq || 0);
        if (frame.hasMore) send({ action: "history", after: lastSeq() });
        else markRead();
        break;
      case "typing":
        if (frame.role !== "visitor") {
          typing.hidden = !frame.isTyping;
          clearTimeout(agentTypingTimer);
          if (frame.isTyping) agentTypingTimer = setTimeout(() => (typing.hidden = true), 8000);
        }
        return;
      case "read":
        if (frame.role !== "visitor") agentReadSeq = Math.max(agentReadSeq, frame.seq);
        break;
      case "error":
        // A server older than 1.1 does not know `hello`; nothing to tell the visitor.
        if (frame.ref && frame.ref.startsWith("hello-")) return;
        say(`Not sent: ${frame.code}`);
        if (frame.ref) pending.delete(frame.ref);
        break;
      default:
        return;
    }
    render();
  }

  function connect() {
    socket = new WebSocket(wsUrl, ["eurochat.v1", token]);
    socket.onopen = () => {
      retries = 0;
      status.textContent = "online";
      root.dataset.state = "online";
      socket.send(JSON.stringify(withRef({ action: "hello" })));
      // Resume: everything after the last message this page holds, page by page.
      socket.send(JSON.stringify(withRef({ action: "history", after: lastSeq() })));
      while (outbox.length) socket.send(JSON.stringify(outbox.shift()));
    };
    socket.onmessage = (e) => receive(JSON.parse(e.data));
    socket.onclose = () => {
      status.textContent = "offline";
      root.dataset.state = "offline";
      if (!erased) setTimeout(start, Math.min(30000, 500 * 2 ** retries++));
    };
  }

  async function start() {
    erased = false;
    if (socket && socket.readyState !== WebSocket.CLOSED) return;
    socket = null;
    if (await openSession()) connect();
  }

  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const text = input.value.trim();
    if (!text) return;
    const clientMsgId = `m-${Date.now()}-${++counter}`;
    pending.set(clientMsgId, text);
    input.value = "";
    stopTyping();
    send({ action: "sendMessage", clientMsgId, text });
    render();
  });
  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey) {
      e.preventDefault();
      form.requestSubmit();
    }
  });
  function stopTyping() {
    clearTimeout(typingTimer);
    if (typingSent) send({ action: "typing", isTyping: false });
    typingSent = false;
  }
  input.addEventListener("input", () => {
    if (!typingSent && input.value.trim()) {
      typingSent = true;
      send({ action: "typing", isTyping: true });
    }
    clearTimeout(typingTimer);
    typingTimer = setTimeout(stopTyping, 3000);
  });
  document.addEventListener("visibilitychange", markRead);

  // All pages of the export, as one JSON file.
  exportButton.addEventListener("click", async () => {
    if (!token) return say("Nothing stored about you.");
    const pages = [];
    let cursor = null;
    do {
      const r = await post("/v1/gdpr/export", cursor ? { cursor } : {}, token);
      if (r.status !== 200) return say(`Export failed (${problem(r)})`);
      pages.push(r.body);
      cursor = r.body.next;
    } while (cursor);
    const doc = pages.length === 1 ? pages[0] : { pages };
    const url = URL.createObjectURL(new Blob([JSON.stringify(doc, null, 2)], { type: "application/json" }));
    const a = el("a", { href: url, download: "eurochat-my-data.json" });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
    say("Your data was downloaded.");
  });

  eraseButton.addEventListener("click", async () => {
    if (!token) return say("Nothing stored about you.");
    if (!confirm("Delete this chat and everything we store about you? This cannot be undone.")) return;
    const r = await post("/v1/gdpr/erase", {}, token);
    if (r.status !== 200) return say(`Deletion failed (${problem(r)})`);
    erased = true;
    if (socket) {
      socket.onclose = null;
      socket.close();
      socket = null;
    }
    status.textContent = "offline";
    root.dataset.state = "erased";
    localStorage.removeItem(tokenKey);
    token = null;
    messages.clear();
    pending.clear();
    agentReadSeq = 0;
    delete root.dataset.session;
    render();
    say(`Your data was deleted (${r.body.total} items). Writing again starts a new chat.`);
  });

  document.body.append(root);
  start();
})();
