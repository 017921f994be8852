// One chat in Open WebUI, as a user does it, in headless Debian Chromium (playwright-core drives it):
// open the UI, pick a model, send a message, wait for the streamed answer, optionally press
// "Read Aloud" on it. Prints one JSON object (answer, toasts, screenshots) on stdout.
// ESM resolves playwright-core from the node_modules beside this file (ESM ignores NODE_PATH).
//
//   node chat.mjs '{"url": "http://127.0.0.1:8080", "model": "smollm2", "message": "Say hello.",
//                   "out": "/tmp/shots", "readAloud": true, "timeoutMs": 300000}'
import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";
import { join } from "node:path";

const args = JSON.parse(process.argv[2]);
const timeout = args.timeoutMs ?? 300000;
mkdirSync(args.out, { recursive: true });
const result = { answer: "", toasts: [], screenshots: [], steps: [], readAloud: null };
const shots = [];

const browser = await chromium.launch({
  executablePath: args.chromium ?? "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-dev-shm-usage", "--autoplay-policy=no-user-gesture-required"],
});
const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
page.setDefaultTimeout(60000);
page.on("pageerror", (e) => result.steps.push(`pageerror: ${e.message}`));

async function shot(name) {
  const path = join(args.out, `${String(shots.length + 1).padStart(2, "0")}-${name}.png`);
  await page.screenshot({ path, fullPage: false });
  shots.push(path);
}

async function toasts() {
  // Open WebUI's toasts are svelte-sonner's: <li data-sonner-toast>.
  return (await page.locator("[data-sonner-toast]").allInnerTexts()).map((t) => t.trim()).filter(Boolean);
}

async function dismissModals() {
  // The first visit may show the "What's New" changelog; its button closes it.
  for (const label of ["Okay, Let's Go!", "Okay, let's go!"]) {
    const button = page.getByRole("button", { name: label });
    if (await button.count()) await button.first().click().catch(() => {});
  }
  await page.keyboard.press("Escape").catch(() => {});
}

try {
  await page.goto(args.url, { waitUntil: "networkidle", timeout });
  await page.locator("#chat-input").waitFor({ timeout });
  await dismissModals();
  result.steps.push("ui loaded");
  await shot("loaded");

  // Pick the model in the model selector at the top of the chat.
  await page.getByRole("button", { name: /select a model/i }).first().click();
  const search = page.getByPlaceholder(/search a model/i);
  if (await search.count()) await search.first().fill(args.model);
  await page.locator(`[data-value="${args.model}"]`).first().click();
  result.steps.push(`picked ${args.model}`);
  await shot("model-picked");

  const input = page.locator("#chat-input");
  await input.click();
  await page.keyboard.type(args.message);
  await page.locator("#send-message-button").click();
  result.steps.push("sent");

  // The answer is done when the response's action buttons (Copy, Read Aloud, ...) appear:
  // Open WebUI shows them only once the stream has finished.
  const content = page.locator("#response-content-container").last();
  await content.waitFor({ timeout });
  await shot("streaming");
  const readAloud = page.getByRole("button", { name: /read aloud/i }).last();
  await readAloud.waitFor({ state: "attached", timeout });
  result.answer = (await content.innerText()).trim();
  result.toasts.push(...(await toasts()));
  result.steps.push("answered");
  await shot("answered");

  if (args.readAloud) {
    await page.locator(".chat-assistant").last().hover().catch(() => {});
    await readAloud.click({ force: true });
    // While it fetches or plays, the button turns into a "Stop"/spinner; wait for a request to the
    // audio endpoint to come back instead of a fixed delay.
    const response = await page.waitForResponse((r) => r.url().includes("/audio/speech"), { timeout });
    result.readAloud = { url: response.url(), status: response.status() };
    result.toasts.push(...(await toasts()));
    await shot("read-aloud");
  }
} catch (error) {
  result.error = String(error);
  result.toasts.push(...(await toasts().catch(() => [])));
  await shot("failure").catch(() => {});
} finally {
  result.screenshots = shots;
  await browser.close();
  console.log(JSON.stringify(result));
}
