// llmux's dashboard (/ui) as an operator uses it, in headless Debian Chromium (playwright-core):
// sign in with a wrong key (refused), then the admin key; read the VRAM bar; press Load on a model
// and wait for it to become resident on the bar; pin it. With "upstreams" ([{id, state, inFlight}]),
// first wait for each remote upstream's row to show that state (and relays in flight) and read the
// section. Prints one JSON object on stdout.
//
//   node dashboard.mjs '{"url": "http://127.0.0.1:8081", "key": "sk-...", "load": "smollm2-135m",
//                        "out": "/tmp/shots", "timeoutMs": 60000,
//                        "upstreams": [{"id": "far", "state": "down"}]}'
import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";
import { join } from "node:path";

const args = JSON.parse(process.argv[2]);
const timeout = args.timeoutMs ?? 60000;
mkdirSync(args.out, { recursive: true });
const result = { steps: [], screenshots: [], console: [], pageErrors: [] };

const browser = await chromium.launch({
  executablePath: args.chromium ?? "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-dev-shm-usage"],
});
const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
page.setDefaultTimeout(timeout);
page.on("pageerror", (e) => result.pageErrors.push(e.message));
page.on("console", (m) => { if (m.type() === "error" || m.type() === "warning") result.console.push(m.text()); });

async function shot(name) {
  const path = join(args.out, `${String(result.screenshots.length + 1).padStart(2, "0")}-${name}.png`);
  await page.screenshot({ path, fullPage: true });
  result.screenshots.push(path);
}

const segments = () => page.$$eval("#vram-bar .segment", (s) => s.map((e) => ({ model: e.dataset.model, state: e.dataset.state })));
const rowState = (model) => page.locator(`#models tr[data-model="${model}"] [data-testid=state]`).innerText();

try {
  await page.goto(`${args.url}/ui`, { waitUntil: "load" });
  await page.locator("#login-key").waitFor();
  await shot("sign-in");

  await page.fill("#login-key", "sk-not-a-key-of-this-server-000");
  await page.click("#login-submit");
  await page.locator("#login-error").filter({ hasText: /./ }).waitFor();
  result.wrongKey = await page.locator("#login-error").innerText();
  result.steps.push("wrong key refused");

  await page.fill("#login-key", args.key);
  await page.click("#login-submit");
  await page.locator("#connection", { hasText: "live" }).waitFor();
  await page.locator("#models tbody tr").first().waitFor();
  result.steps.push("signed in, stream live");
  result.models = await page.$$eval("#models tbody tr", (rows) => rows.map((r) => r.dataset.model));
  result.barBefore = await segments();
  await page.locator("#usage [data-testid=usage-table], #usage [data-testid=usage-unavailable]").first().waitFor();
  result.usage = await page.locator("#usage").innerText();
  result.keyInStorage = await page.evaluate(() => sessionStorage.getItem("llmux.adminKey") !== null);
  for (const u of args.upstreams ?? []) {
    const row = page.locator(`#upstreams tr[data-upstream="${u.id}"][data-state="${u.state}"]`);
    await row.waitFor();
    if (u.inFlight !== undefined) await row.locator("[data-testid=in-flight]", { hasText: new RegExp(`^${u.inFlight}$`) }).waitFor();
  }
  result.upstreamsHidden = await page.locator("#upstreams-panel").isHidden();
  result.upstreams = await page.$$eval("#upstreams tbody tr", (rows) => rows.map((r) => ({
    id: r.dataset.upstream, state: r.querySelector("[data-testid=state]").innerText,
    inFlight: r.querySelector("[data-testid=in-flight]").innerText,
    lastError: r.querySelector("[data-testid=last-error]").innerText, cells: [...r.cells].map((c) => c.innerText) })));
  result.pageText = await page.locator("body").innerText();
  if (args.upstreams) result.steps.push("upstreams shown");
  await shot("dashboard");

  await page.click(`button[data-action=load][data-model="${args.load}"]`);
  result.steps.push(`pressed Load on ${args.load}`);
  await page.locator(`#vram-bar .segment[data-model="${args.load}"][data-state=ready]`).waitFor();
  result.loadedState = await rowState(args.load);
  result.barAfter = await segments();
  await page.locator("#swaps tbody tr").first().waitFor();
  result.swaps = await page.$$eval("#swaps tbody tr", (rows) => rows.map((r) => [...r.cells].map((c) => c.innerText)));
  await shot("loaded");

  await page.click(`button[data-action=pin][data-model="${args.load}"]`);
  await page.locator(`#models tr[data-model="${args.load}"] .badge`, { hasText: "pinned" }).waitFor();
  result.steps.push("pinned");
  result.events = await page.$$eval("#events li", (items) => items.map((i) => i.innerText));
  await shot("pinned");

  await page.click("#logout");
  await page.locator("#login-key").waitFor();
  result.keyAfterSignOut = await page.evaluate(() => sessionStorage.getItem("llmux.adminKey"));
  result.steps.push("signed out");
} catch (error) {
  result.error = String(error);
  await shot("failure").catch(() => {});
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
