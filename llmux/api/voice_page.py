"""GET /voice: a small page to talk to llmux (``/v1/realtime``) from a browser.

Server-rendered HTML with vanilla JavaScript and nothing fetched from elsewhere, so it works
offline. Push-to-talk (hold the button or the space bar) or hands-free (server VAD); it shows
both sides' transcripts and plays the answer as it arrives. The key is typed into the page and
sent as the ``openai-insecure-api-key.`` subprotocol, as OpenAI's browser SDK does; the page
itself is public (it holds no secret). Browsers give a page the microphone only in a secure
context: ``http://localhost`` or HTTPS.
"""

from __future__ import annotations

from litestar import Controller, Response, get

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>llmux voice</title>
<style>
 body{font:16px/1.45 system-ui,sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem;color:#1d232a;background:#f7f7f5}
 h1{font-size:1.4rem;margin:0 0 1rem} fieldset{border:1px solid #ccd;border-radius:8px;margin:0 0 1rem;padding:.6rem 1rem}
 label{margin-right:1rem} input,select,button{font:inherit} input[type=password]{width:16rem}
 #talk{width:100%;padding:1.1rem;font-size:1.2rem;border-radius:10px;border:0;background:#2b6cb0;color:#fff;cursor:pointer}
 #talk:disabled{background:#9aa8b8;cursor:default} #talk.live{background:#c53030}
 #log{margin-top:1rem;min-height:8rem} .turn{padding:.45rem .7rem;border-radius:8px;margin:.35rem 0;white-space:pre-wrap}
 .user{background:#e2ecf7} .assistant{background:#fff;border:1px solid #dde} .note{color:#667;font-size:.9rem}
 #status{color:#556;font-size:.9rem;margin:.5rem 0}
</style></head><body>
<h1>Talk to llmux <small class="note"><a href="/ui">dashboard</a></small></h1>
<fieldset><label>API key <input id="key" type="password" autocomplete="off"></label>
<label>Model <input id="model" placeholder="default chat model" size="14"></label><br>
<label>Instructions <input id="instructions" size="44" value="You are a voice assistant. Answer in one or two short sentences."></label>
<label>Max tokens <input id="maxTokens" size="5" placeholder="none"></label><br>
<label><input type="radio" name="mode" value="ptt" checked> push-to-talk</label>
<label><input type="radio" name="mode" value="vad"> hands-free</label>
<button id="connect">Connect</button></fieldset>
<button id="talk" disabled>Hold to talk (or hold the space bar)</button>
<div id="status">Not connected.</div><div id="log"></div>
<script>
"use strict";
const RATE = 24000, $ = (id) => document.getElementById(id);
let ws = null, ctx = null, mic = null, sending = false, playAt = 0, playing = [], answer = null, answerId = null, responding = false;
$("key").value = localStorage.getItem("llmux-key") || "";
const status = (t) => { $("status").textContent = t; };
const mode = () => document.querySelector("input[name=mode]:checked").value;
function line(cls, text) { const d = document.createElement("div"); d.className = "turn " + cls; d.textContent = text;
  $("log").appendChild(d); d.scrollIntoView({block: "end"}); return d; }
function b64(bytes) { let s = ""; for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000)); return btoa(s); }
function send(event) { if (ws && ws.readyState === 1) ws.send(JSON.stringify(event)); }
function stopPlayback() { for (const s of playing) { try { s.stop(); } catch (e) {} } playing = []; playAt = 0; }
function play(base64) {
  const raw = atob(base64), pcm = new Int16Array(raw.length / 2);
  for (let i = 0; i < pcm.length; i++) pcm[i] = raw.charCodeAt(2 * i) | (raw.charCodeAt(2 * i + 1) << 8);
  const buf = ctx.createBuffer(1, pcm.length, RATE), ch = buf.getChannelData(0);
  for (let i = 0; i < pcm.length; i++) ch[i] = pcm[i] / 32768;
  const src = ctx.createBufferSource(); src.buffer = buf; src.connect(ctx.destination);
  playAt = Math.max(playAt, ctx.currentTime + 0.05); src.start(playAt); playAt += buf.duration;
  playing.push(src); src.onended = () => { playing = playing.filter((s) => s !== src); };
}
const WORKLET = "class Tap extends AudioWorkletProcessor{process(i){if(i[0]&&i[0][0])this.port.postMessage(i[0][0].slice(0));return true}}registerProcessor('tap',Tap)";
async function startMic() {
  const stream = await navigator.mediaDevices.getUserMedia({audio: {channelCount: 1, echoCancellation: true, noiseSuppression: true}});
  await ctx.audioWorklet.addModule(URL.createObjectURL(new Blob([WORKLET], {type: "text/javascript"})));
  const node = new AudioWorkletNode(ctx, "tap"); let pending = [];
  node.port.onmessage = (e) => { if (!sending) return; pending.push(e.data);
    if (pending.reduce((n, a) => n + a.length, 0) < RATE / 10) return;   // 100 ms per append
    const n = pending.reduce((k, a) => k + a.length, 0), out = new Int16Array(n); let at = 0;
    for (const a of pending) for (let i = 0; i < a.length; i++) out[at++] = Math.max(-1, Math.min(1, a[i])) * 32767;
    pending = []; send({type: "input_audio_buffer.append", audio: b64(new Uint8Array(out.buffer))}); };
  ctx.createMediaStreamSource(stream).connect(node); mic = stream;
}
function onEvent(e) {
  switch (e.type) {
    case "session.created": status("Connected: " + e.session.model + (mode() === "vad" ? " — just talk." : " — hold the button to talk.")); break;
    case "input_audio_buffer.speech_started": stopPlayback(); status("Listening…"); break;
    case "input_audio_buffer.speech_stopped": status("Thinking…"); break;
    case "conversation.item.input_audio_transcription.completed": if (e.transcript) line("user", e.transcript); break;
    case "response.created": answerId = e.response.id; answer = null; responding = true; break;
    case "response.audio_transcript.delta": case "response.text.delta":
      if (e.response_id !== answerId) break; if (!answer) answer = line("assistant", ""); answer.textContent += e.delta; break;
    case "response.audio.delta": if (e.response_id === answerId) { play(e.delta); status("Speaking…"); } break;
    case "response.function_call_arguments.done": line("note", "tool call " + e.name + "(" + e.arguments + ")"); break;
    case "response.done": responding = false; if (e.response.status === "cancelled" && answer) answer.textContent += " …";
      status(e.response.status === "failed" ? "The answer failed: " + JSON.stringify(e.response.status_details) : "Ready."); break;
    case "error": line("note", "error: " + e.error.message); break;
  }
}
$("connect").onclick = async () => {
  if (ws) ws.close(); localStorage.setItem("llmux-key", $("key").value);
  ctx = ctx || new AudioContext({sampleRate: RATE}); await ctx.resume();
  if (!mic) { try { await startMic(); } catch (err) { status("No microphone: " + err.message + " (use http://localhost or HTTPS)"); return; } }
  const model = $("model").value.trim(), url = location.origin.replace(/^http/, "ws") + "/v1/realtime" + (model ? "?model=" + encodeURIComponent(model) : "");
  ws = new WebSocket(url, ["realtime", "openai-insecure-api-key." + $("key").value, "openai-beta.realtime-v1"]);
  ws.onmessage = (m) => onEvent(JSON.parse(m.data));
  ws.onclose = () => { status("Disconnected (a wrong key is refused)."); $("talk").disabled = true; sending = false; };
  ws.onopen = () => { const vad = mode() === "vad"; sending = vad; $("talk").disabled = vad;
    const session = {turn_detection: vad ? {type: "server_vad"} : null, instructions: $("instructions").value};
    const limit = parseInt($("maxTokens").value, 10); if (limit > 0) session.max_response_output_tokens = limit;
    send({type: "session.update", session}); };
};
function press() { if (!ws || mode() !== "ptt" || sending) return; stopPlayback();
  if (responding) send({type: "response.cancel"}); send({type: "input_audio_buffer.clear"});
  sending = true; $("talk").classList.add("live"); status("Listening…"); }
function release() { if (!sending || mode() !== "ptt") return; sending = false; $("talk").classList.remove("live");
  send({type: "input_audio_buffer.commit"}); send({type: "response.create"}); status("Thinking…"); }
$("talk").onpointerdown = press; $("talk").onpointerup = release; $("talk").onpointerleave = release;
document.addEventListener("keydown", (e) => { if (e.code === "Space" && e.target.tagName !== "INPUT" && !e.repeat) { e.preventDefault(); press(); } });
document.addEventListener("keyup", (e) => { if (e.code === "Space" && e.target.tagName !== "INPUT") { e.preventDefault(); release(); } });
</script></body></html>
"""


class VoicePageController(Controller):
    path = "/voice"

    @get("/", media_type="text/html", include_in_schema=False)
    async def page(self) -> Response[str]:
        return Response(PAGE, media_type="text/html", headers={"Cache-Control": "no-cache"})
