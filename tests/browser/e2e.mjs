// The visitor widget and the agent console in a real browser (Debian's chromium,
// driven by playwright-core), against a running local gateway. Started by
// tests/tests/browser_e2e.rs, which runs the gateway on memory and on moto:
//
//   node tests/browser/e2e.mjs --base http://127.0.0.1:PORT --console URL --shots DIR
//
// Exits 0 when every step passed; otherwise prints the failed step, saves
// failure screenshots in DIR and exits 1.
import { mkdirSync, readFileSync, existsSync } from "node:fs";
import { join } from "node:path";
import { chromium } from "playwright-core";

const args = Object.fromEntries(
  process.argv.slice(2).reduce((pairs, a, i, all) => (a.startsWith("--") ? [...pairs, [a.slice(2), all[i + 1]]] : pairs), []),
);
for (const required of ["base", "console", "shots"]) {
  if (!args[required]) {
    console.error(`missing --${required}`);
    process.exit(2);
  }
}
const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";
if (!existsSync(executablePath)) {
  console.error(`no browser at ${executablePath}: install Debian's chromium (make setup does) or set CHROMIUM`);
  process.exit(2);
}
mkdirSync(args.shots, { recursive: true });
const TIMEOUT = 15_000;

const browser = await chromium.launch({
  executablePath,
  headless: true,
  // This machine's network is closed: no background or update traffic, no sandbox as root.
  args: [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});
const visitorContext = await browser.newContext({ acceptDownloads: true, viewport: { width: 1100, height: 760 } });
const agentContext = await browser.newContext({ acceptDownloads: true, viewport: { width: 1100, height: 760 } });
const visitor = await visitorContext.newPage();
const agent = await agentContext.newPage();
// The pages run under a strict Content-Security-Policy: any blocked inline script, style,
// handler or connection fails the test, whichever way the browser reports it.
const cspViolations = [];
for (const [name, page] of [["visitor", visitor], ["agent", agent]]) {
  page.setDefaultTimeout(TIMEOUT);
  page.on("pageerror", (e) => console.error(`${name} page error: ${e.message}`));
  page.on("dialog", (d) => d.accept());
  page.on("console", (m) => {
    if (m.type() === "error" && /content security policy/i.test(m.text())) cspViolations.push(`${name}: ${m.text()}`);
  });
  await page.exposeFunction("__reportCsp", (text) => cspViolations.push(`${name}: ${text}`));
  // Init scripts run outside the page's CSP, so this listener itself is never blocked.
  await page.addInitScript(() => {
    document.addEventListener("securitypolicyviolation", (e) =>
      window.__reportCsp(`${e.violatedDirective} blocked ${e.blockedURI || "inline"} (${e.sourceFile}:${e.lineNumber})`),
    );
  });
}

const steps = [];
async function step(name, fn) {
  const started = Date.now();
  try {
    await fn();
    if (cspViolations.length) throw new Error(`Content-Security-Policy violations: ${cspViolations.join("; ")}`);
    steps.push({ step: name, ms: Date.now() - started });
  } catch (e) {
    console.error(`FAILED at "${name}": ${e.message}`);
    await visitor.screenshot({ path: join(args.shots, "failure-visitor.png"), fullPage: true }).catch(() => {});
    await agent.screenshot({ path: join(args.shots, "failure-console.png"), fullPage: true }).catch(() => {});
    await browser.close();
    process.exit(1);
  }
}
const expectText = async (locator, text) => {
  await locator.filter({ hasText: text }).first().waitFor();
};

const question = "Hello, where is my order #1042?";
const answer = "Hi! It left our warehouse this morning.";
let sessionId;

const securityHeaders = (response, page, framing) => {
  const h = response.headers();
  const csp = h["content-security-policy"] || "";
  if (!csp.includes("script-src 'self'") || /unsafe-inline|unsafe-eval/.test(csp)) throw new Error(`${page} CSP: ${csp}`);
  if (framing !== csp.includes("frame-ancestors 'none'")) throw new Error(`${page} framing: ${csp}`);
  if (h["x-content-type-options"] !== "nosniff") throw new Error(`${page} lacks nosniff`);
  if (h["referrer-policy"] !== "no-referrer") throw new Error(`${page} referrer policy: ${h["referrer-policy"]}`);
};

await step("the agent console signs in and goes online", async () => {
  const response = await agent.goto(args.console);
  securityHeaders(response, "console", true);
  await agent.locator("body[data-state=online]").waitFor();
  if (agent.url().includes("token")) throw new Error("the token stayed in the console's URL");
});

await step("the visitor widget opens a session and goes online", async () => {
  const response = await visitor.goto(`${args.base}/demo`);
  securityHeaders(response, "demo", false);
  if ((await visitorContext.cookies()).length) throw new Error("the widget got a cookie");
  await visitor.locator("[data-test=widget][data-state=online]").waitFor();
  sessionId = await visitor.locator("[data-test=widget]").getAttribute("data-session");
  if (!/^ses_[0-9a-f]{32}$/.test(sessionId || "")) throw new Error(`no session id: ${sessionId}`);
});

await step("the visitor sends a message and it is acknowledged", async () => {
  await visitor.locator("[data-test=input]").fill(question);
  await visitor.locator("[data-test=input]").press("Enter");
  await expectText(visitor.locator("[data-test=message][data-role=visitor]"), question);
});

await step("the agent console lists the conversation live and opens it", async () => {
  const item = agent.locator(`[data-test=conversation-item][data-session="${sessionId}"]`);
  await item.waitFor();
  await item.click();
  await expectText(agent.locator("[data-test=thread-message][data-role=visitor]"), question);
});

await step("the visitor sees the agent typing", async () => {
  await agent.locator("[data-test=reply]").pressSequentially("Hi", { delay: 20 });
  await visitor.locator("[data-test=typing]").waitFor({ state: "visible" });
});

await step("the agent replies and the visitor sees the reply", async () => {
  await agent.locator("[data-test=reply]").fill(answer);
  await agent.locator("[data-test=reply]").press("Enter");
  await expectText(visitor.locator("[data-test=message][data-role=agent]"), answer);
  await visitor.locator("[data-test=typing]").waitFor({ state: "hidden" });
});

await step("the agent sees that the visitor read the reply, and nothing is unread", async () => {
  await agent.locator("[data-test=seen]").waitFor();
  const badge = agent.locator(`[data-test=conversation-item][data-session="${sessionId}"] .ec-unread`);
  await badge.waitFor({ state: "detached" });
  // Past the console's periodic refresh: the server's read state agrees.
  await agent.waitForTimeout(3500);
  if (await badge.count()) throw new Error("the open conversation shows unread messages");
});

await step("screenshots of both pages", async () => {
  await visitor.screenshot({ path: join(args.shots, "visitor.png"), fullPage: true });
  await agent.screenshot({ path: join(args.shots, "console.png"), fullPage: true });
});

await step("a reload resumes the same session with its full history", async () => {
  await visitor.reload();
  await visitor.locator("[data-test=widget][data-state=online]").waitFor();
  const resumed = await visitor.locator("[data-test=widget]").getAttribute("data-session");
  if (resumed !== sessionId) throw new Error(`resumed ${resumed}, expected ${sessionId}`);
  await expectText(visitor.locator("[data-test=message][data-role=agent]"), answer);
  const texts = await visitor.locator("[data-test=message]").allTextContents();
  if (texts.join("|") !== [question, answer].join("|")) throw new Error(`history after reload: ${JSON.stringify(texts)}`);
  await visitor.screenshot({ path: join(args.shots, "visitor-after-reload.png"), fullPage: true });
});

await step("the visitor downloads their data", async () => {
  const [download] = await Promise.all([visitor.waitForEvent("download"), visitor.locator("[data-test=export]").click()]);
  const path = join(args.shots, "visitor-export.json");
  await download.saveAs(path);
  const doc = JSON.parse(readFileSync(path, "utf8"));
  if (doc.schema !== "eurochat.gdpr-export/1") throw new Error(`schema ${doc.schema}`);
  const all = JSON.stringify(doc);
  for (const text of [question, answer, sessionId]) {
    if (!all.includes(text)) throw new Error(`export lacks ${text}`);
  }
});

await step("the visitor deletes their data", async () => {
  await visitor.locator("[data-test=erase]").click();
  await expectText(visitor.locator("[data-test=notice]"), "Your data was deleted");
  if ((await visitor.locator("[data-test=message]").count()) !== 0) throw new Error("messages still shown");
});

await step("the agent console no longer lists the conversation", async () => {
  await agent.locator(`[data-test=conversation-item][data-session="${sessionId}"]`).waitFor({ state: "detached" });
  await agent.locator("[data-test=conversation]").waitFor({ state: "hidden" });
});

await step("a reload after deletion starts afresh with no history", async () => {
  await visitor.reload();
  await visitor.locator("[data-test=widget][data-state=online]").waitFor();
  const fresh = await visitor.locator("[data-test=widget]").getAttribute("data-session");
  if (fresh === sessionId) throw new Error("the erased session came back");
  if ((await visitor.locator("[data-test=message]").count()) !== 0) throw new Error("history survived erasure");
  await visitor.screenshot({ path: join(args.shots, "visitor-after-delete.png"), fullPage: true });
  await agent.screenshot({ path: join(args.shots, "console-after-delete.png"), fullPage: true });
});

const sharedEmail = "same.address@example.org";
await step("an admin's request by email previews the matches with a warning before anything happens", async () => {
  // Two visitors typed the same address into the pre-chat form: only one can be the requester.
  for (const name of ["Requester", "Stranger"]) {
    const r = await visitorContext.request.post(`${args.base}/v1/sessions`, {
      headers: { origin: args.base },
      data: { siteId: "demo", prechat: { name, email: sharedEmail, consent: { purpose: "support-follow-up", policyVersion: "2026-01" } } },
    });
    if (r.status() !== 201) throw new Error(`pre-chat session: ${r.status()}`);
  }
  await agent.locator("[data-test=lookup-email]").fill(sharedEmail);
  await agent.locator("[data-test=lookup]").click();
  await agent.locator("[data-test=lookup-result]").waitFor();
  await expectText(agent.locator("[data-test=lookup-warning]"), "nobody verifies");
  const marked = agent.locator("[data-test=lookup-session][data-found-by=unverifiedEmail]");
  if ((await marked.count()) !== 2) throw new Error(`${await marked.count()} sessions marked unverified, expected 2`);
  for (const button of ["lookup-download", "lookup-erase"]) {
    if (!(await agent.locator(`[data-test=${button}]`).isDisabled())) throw new Error(`${button} usable before confirming`);
  }
  await agent.screenshot({ path: join(args.shots, "console-email-request.png"), fullPage: true });
});

await step("after confirming, the admin downloads the marked export and erases exactly what was shown", async () => {
  await agent.locator("[data-test=lookup-verified]").check();
  const [download] = await Promise.all([agent.waitForEvent("download"), agent.locator("[data-test=lookup-download]").click()]);
  const path = join(args.shots, "email-request-export.json");
  await download.saveAs(path);
  const doc = JSON.parse(readFileSync(path, "utf8"));
  if (!doc.note || doc.subject.foundBy !== "unverifiedEmail") throw new Error("the export does not say the email is unverified");
  if (doc.sessions.length !== 2 || doc.sessions.some((s) => s.foundBy !== "unverifiedEmail")) throw new Error("sessions not marked");
  await agent.locator("[data-test=lookup-erase]").click(); // the confirm dialog is accepted
  await expectText(agent.locator("[data-test=console-notice]"), "Erased");
  await agent.locator("[data-test=lookup-email]").fill(sharedEmail);
  await agent.locator("[data-test=lookup]").click();
  await expectText(agent.locator("[data-test=lookup-warning]"), "No session has this email");
});

await browser.close();
console.log(JSON.stringify({ passed: steps.length, steps }));
