// The chat page served at `/`: plain HTML + JS, no build step. Streams replies from
// /v1/chat/completions and shows tokens/s. An API key can be given as ?api_key=.
#pragma once

namespace g4::server {

inline constexpr const char* kChatPageHtml = R"HTML(<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>g4 chat</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font-family:system-ui,sans-serif;max-width:860px;margin:0 auto;padding:1em;background:#fafafa}
#log{min-height:300px;border:1px solid #ccc;background:#fff;padding:.5em;overflow-y:auto;max-height:60vh}
.msg{margin:.4em 0;white-space:pre-wrap}.user{color:#024}.assistant{color:#131}.err{color:#a00}
textarea{width:100%;box-sizing:border-box}#stats{color:#555;font-size:.9em}
label{margin-right:1em}
</style></head><body>
<h2>g4 chat</h2>
<div><label>System prompt <input id="system" size="50" placeholder="(none)"></label>
<label>Temperature <input id="temp" type="number" value="0.7" min="0" max="2" step="0.1" style="width:4em"></label>
<label>Max tokens <input id="maxtok" type="number" value="256" min="1" style="width:5em"></label></div>
<div id="log"></div>
<form id="form"><textarea id="input" rows="3" placeholder="Type a message, Enter to send"></textarea>
<button id="send" type="submit">Send</button> <button id="clear" type="button">New chat</button>
<span id="stats"></span></form>
<script>
const key = new URLSearchParams(location.search).get('api_key');
const log = document.getElementById('log'), input = document.getElementById('input');
const stats = document.getElementById('stats');
let history = [];
function add(role, text) {
  const d = document.createElement('div'); d.className = 'msg ' + role;
  d.textContent = (role === 'user' ? 'You: ' : role === 'assistant' ? 'Model: ' : '') + text;
  log.appendChild(d); log.scrollTop = log.scrollHeight; return d;
}
document.getElementById('clear').onclick = () => { history = []; log.innerHTML = ''; stats.textContent = ''; };
input.addEventListener('keydown', e => { if (e.key === 'Enter' && !e.shiftKey) { e.preventDefault(); document.getElementById('form').requestSubmit(); } });
document.getElementById('form').onsubmit = async (ev) => {
  ev.preventDefault();
  const text = input.value.trim(); if (!text) return;
  input.value = ''; add('user', text); history.push({role: 'user', content: text});
  const msgs = []; const sys = document.getElementById('system').value.trim();
  if (sys) msgs.push({role: 'system', content: sys});
  const body = {model: 'default', messages: msgs.concat(history), stream: true,
    temperature: parseFloat(document.getElementById('temp').value),
    max_tokens: parseInt(document.getElementById('maxtok').value),
    stream_options: {include_usage: true}};
  const out = add('assistant', ''); let reply = '', n = 0, cnt = 0, t0 = performance.now(), t1 = 0;
  document.getElementById('send').disabled = true;
  try {
    const headers = {'Content-Type': 'application/json'};
    if (key) headers['Authorization'] = 'Bearer ' + key;
    const r = await fetch('/v1/chat/completions', {method: 'POST', headers, body: JSON.stringify(body)});
    if (!r.ok) { const e = await r.json(); throw new Error(e.error ? e.error.message : r.statusText); }
    const reader = r.body.getReader(), dec = new TextDecoder(); let buf = '';
    for (;;) {
      const {value, done} = await reader.read(); if (done) break;
      buf += dec.decode(value, {stream: true});
      let i;
      while ((i = buf.indexOf('\n\n')) >= 0) {
        const line = buf.slice(0, i).trim(); buf = buf.slice(i + 2);
        if (!line.startsWith('data: ')) continue;
        const data = line.slice(6); if (data === '[DONE]') continue;
        const j = JSON.parse(data);
        if (j.usage) n = j.usage.completion_tokens;
        if (j.choices && j.choices[0] && j.choices[0].delta && j.choices[0].delta.content) {
          if (!t1) t1 = performance.now(); cnt++;
          reply += j.choices[0].delta.content; out.textContent = 'Model: ' + reply;
          log.scrollTop = log.scrollHeight;
        }
      }
      const dt = (performance.now() - (t1 || t0)) / 1000;
      stats.textContent = (t1 ? ((t1 - t0) | 0) + ' ms to first token, ' : '') +
        ((n || cnt) && dt > 0 ? ((n || cnt) / dt).toFixed(1) + ' tokens/s' : '');
    }
    history.push({role: 'assistant', content: reply});
    out.dataset.done = '1';
  } catch (e) { add('err', 'Error: ' + e.message); }
  document.getElementById('send').disabled = false;
};
</script></body></html>
)HTML";

}  // namespace g4::server
