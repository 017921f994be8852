// The /voice page as a user drives it, in headless Debian Chromium (playwright-core): the fake
// microphone plays a WAV file (speech made by the demo TTS), the page talks hands-free or
// push-to-talk to /v1/realtime, and we wait for both sides of the conversation on screen.
// Prints one JSON object (user, assistant, played, statuses, errors, screenshot) on stdout.
//
//   node voice.mjs '{"url": "http://127.0.0.1:8081", "key": "...", "wav": "/tmp/q.wav",
//                    "mode": "vad", "out": "/tmp/shots", "timeoutMs": 240000}'
import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";
import { join } from "node:path";

const args = JSON.parse(process.argv[2]);
const timeout = args.timeoutMs ?? 240000;
mkdirSync(args.out, { recursive: true });
const result = { user: "", assistant: "", played: 0, statuses: [], errors: [], screenshot: null };

const browser = await chromium.launch({
  executablePath: args.chromium ?? "/usr/bin/chromium",
  args: [
    "--no-sandbox", "--disable-dev-shm-usage", "--autoplay-policy=no-user-gesture-required",
    "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
    `--use-file-for-fake-audio-capture=${args.wav}%noloop`,
  ],
});
try {
  const context = await browser.newContext();
  await context.grantPermissions(["microphone"], { origin: args.url });
  const page = await context.newPage();
  page.on("pageerror", (e) => result.errors.push(e.message));
  // Count the audio the page schedules for playback (AudioBufferSourceNode.start).
  await page.addInitScript(() => {
    window.__played = 0;
    const start = AudioBufferSourceNode.prototype.start;
    AudioBufferSourceNode.prototype.start = function (...a) { window.__played += this.buffer ? this.buffer.duration : 0; return start.apply(this, a); };
  });
  await page.goto(`${args.url}/voice`);
  await page.fill("#key", args.key);
  await page.check(`input[name=mode][value=${args.mode ?? "vad"}]`);
  if (args.maxTokens) await page.fill("#maxTokens", String(args.maxTokens));
  await page.click("#connect");
  await page.waitForFunction(() => document.getElementById("status").textContent.startsWith("Connected"), null, { timeout: 60000 });
  result.statuses.push(await page.textContent("#status"));
  if ((args.mode ?? "vad") === "ptt") {
    await page.dispatchEvent("#talk", "pointerdown");
    await page.waitForTimeout(args.holdMs ?? 6000);  // the fake microphone's file plays meanwhile
    await page.dispatchEvent("#talk", "pointerup");
  }
  await page.waitForSelector(".turn.user", { timeout });
  result.user = await page.textContent(".turn.user");
  await page.waitForFunction(() => document.getElementById("status").textContent === "Ready.", null, { timeout });
  result.assistant = (await page.textContent(".turn.assistant")) ?? "";
  result.played = await page.evaluate(() => window.__played);
  result.statuses.push(await page.textContent("#status"));
  result.screenshot = join(args.out, "voice.png");
  await page.screenshot({ path: result.screenshot, fullPage: true });
} catch (e) {
  result.errors.push(String(e));
  const page = browser.contexts()[0]?.pages()[0];
  if (page) {
    result.statuses.push(await page.textContent("#status"));
    result.log = await page.textContent("#log");
    result.screenshot = join(args.out, "voice-failed.png");
    await page.screenshot({ path: result.screenshot, fullPage: true });
  }
} finally {
  await browser.close();
  console.log(JSON.stringify(result));
}
