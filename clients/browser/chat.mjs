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
// Every toast the page ever shows (svelte-sonner's <li data-sonner-toast data-type=...>), even one
// that disappears between two checks.
await page.addInitScript(() => {
  window.__toasts = [];
  new MutationObserver((changes) => {
    for (const change of changes) for (const node of change.addedNodes) {
      if (node.nodeType !== 1) continue;
      for (const toast of [node, ...node.querySelectorAll("[data-sonner-toast]")]) {
        if (!toast.matches("[data-sonner-toast]")) continue;
        setTimeout(() => window.__toasts.push({ type: toast.dataset.type, text: toast.innerText.trim() }), 50);
      }
    }
  }).observe(document, { childList: true, subtree: true });
});

async function shot(name) {
  const path = join(args.out, `${String(shots.length + 1).padStart(2, "0")}-${name}.png`);
  await page.screenshot({ path, fullPage: false });
  shots.push(path);
}

async function toasts() {
  return page.evaluate(() => window.__toasts);
}

async function dismissModals() {
  // The first visit may show the "What's New" changelog; its button closes it.
  const button = page.getByRole("button", { name: /okay, let's go/i });
  await button.waitFor({ timeout: 10000 }).catch(() => {});
  if (await button.count()) await button.first().click();
}

try {
  await page.goto(args.url, { waitUntil: "load", timeout });
  await page.locator("#chat-input").waitFor({ timeout });
  await dismissModals();
  result.steps.push("ui loaded");
  await shot("loaded");

  // Pick the model in the model selector at the top of the chat.
  await page.locator("#model-selector-model-button").click();
  await page.getByPlaceholder(/search a model/i).fill(args.model);
  await page.locator(`[role=option][data-value="${args.model}"]`).click();
  await page.locator("#model-selector-model-button", { hasText: args.model }).waitFor();
  result.steps.push(`picked ${args.model}`);
  await shot("model-picked");

  const input = page.locator("#chat-input");
  await input.click();
  await page.keyboard.type(args.message);
  await page.keyboard.press("Enter");
  result.steps.push("sent");

  // The answer is done when the response's action buttons (Copy, Read Aloud, ...) appear:
  // Open WebUI shows them only once the stream has finished.
  const content = page.locator("#response-content-container").last();
  await content.waitFor({ timeout });
  await shot("streaming");
  const readAloud = page.getByRole("button", { name: /read aloud/i }).last();
  await readAloud.waitFor({ state: "attached", timeout });
  result.answer = (await content.innerText()).trim();
  result.steps.push("answered");
  await shot("answered");

  if (args.readAloud) {
    await page.locator(".chat-assistant").last().hover().catch(() => {});
    // Wait for Open WebUI's own speech endpoint to answer (it calls llmux's) rather than a delay.
    const spoken = page.waitForResponse((r) => r.url().includes("/audio/speech"), { timeout });
    await readAloud.click({ force: true });
    const response = await spoken;
    result.readAloud = { url: response.url(), status: response.status() };
    await shot("read-aloud");
  }
} catch (error) {
  result.error = String(error);
  await shot("failure").catch(() => {});
} finally {
  result.toasts = await toasts().catch(() => []);
  result.screenshots = shots;
  await browser.close();
  console.log(JSON.stringify(result));
}
