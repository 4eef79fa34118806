// The hub's page: lists the zoos a token may see and their models, shows a model's details
// and runs one image through the hub's cloud inference. The token lives in sessionStorage
// and travels in the `token` header only (never in a URL).
"use strict";

const TOKEN_KEY = "dgzoo.hub.token";
const $ = (id) => document.getElementById(id);

function token() { return sessionStorage.getItem(TOKEN_KEY) || ""; }

function status(text, isError) {
  const s = $("status");
  s.textContent = text;
  s.classList.toggle("error", !!isError);
}

async function api(path, options) {
  const opts = Object.assign({ headers: {} }, options || {});
  opts.headers = Object.assign({ token: token() }, opts.headers);
  const r = await fetch(path, opts);
  const text = await r.text();
  let body;
  try { body = JSON.parse(text); } catch (e) { body = text; }
  if (!r.ok) throw new Error((body && body.detail) ? (typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail)) : ("HTTP " + r.status));
  return body;
}

const seg = encodeURIComponent;

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v; else if (k.startsWith("data-")) e.setAttribute(k, v); else e[k] = v;
  }
  for (const c of children) e.append(c);
  return e;
}

// The parameters that matter, from a model's JSON configuration.
function summary(params) {
  const dev = (params.DEVICE || [{}])[0] || {};
  const pre = (params.PRE_PROCESS || [{}])[0] || {};
  const post = (params.POST_PROCESS || [{}])[0] || {};
  return {
    runtime: dev.RuntimeAgent || "",
    device: dev.DeviceType || "",
    input: pre.InputW && pre.InputH ? pre.InputW + "x" + pre.InputH : (pre.InputType || ""),
    postprocess: post.OutputPostprocessType || "",
  };
}

let current = null; // { zoo, model }

async function loadZoos() {
  const box = $("zoos");
  box.replaceChildren();
  $("details").hidden = true;
  if (!token()) { status("Enter a token to see its zoos."); return; }
  status("Loading…");
  try {
    const { zoos } = await api("/ui/api/zoos");
    for (const zoo of zoos) {
      const [org, name] = zoo.split("/");
      const models = await api("/zoo/v1/public/models/" + seg(org) + "/" + seg(name));
      const rows = Object.keys(models).sort().map((m) => {
        const s = summary(models[m]);
        const row = el("tr", { class: "model", "data-model": m, "data-zoo": zoo },
          el("td", { class: "name" }, m), el("td", {}, s.runtime), el("td", {}, s.device),
          el("td", {}, s.input), el("td", {}, s.postprocess), el("td", { class: "labels" }, "…"));
        row.addEventListener("click", () => showModel(zoo, m, row));
        // Label counts come with each model's info.
        api("/zoo/v1/public/models/" + seg(org) + "/" + seg(name) + "/" + seg(m) + "/info")
          .then((info) => { row.querySelector(".labels").textContent = String(Object.keys(info.model_labels || {}).length); })
          .catch(() => { row.querySelector(".labels").textContent = "?"; });
        return row;
      });
      const head = el("tr", {}, ...["model", "runtime", "device", "input", "postprocess", "labels"].map((h) => el("th", {}, h)));
      box.append(el("section", { class: "zoo", "data-zoo": zoo }, el("h2", {}, zoo),
        el("table", { class: "models" }, el("thead", {}, head), el("tbody", {}, ...rows))));
    }
    status(zoos.length ? zoos.length + " zoo(s)" : "This token sees no zoo.");
  } catch (e) {
    status(e.message, true);
  }
}

async function showModel(zoo, model, row) {
  document.querySelectorAll("tr.model.selected").forEach((r) => r.classList.remove("selected"));
  row.classList.add("selected");
  const [org, name] = zoo.split("/");
  try {
    const info = await api("/zoo/v1/public/models/" + seg(org) + "/" + seg(name) + "/" + seg(model) + "/info");
    current = { zoo, model };
    $("model-name").textContent = model;
    const s = summary(info.model_params || {});
    $("model-summary").replaceChildren(...["runtime", "device", "input", "postprocess"].flatMap((k) => [el("dt", {}, k), el("dd", {}, s[k])]),
      el("dt", {}, "zoo"), el("dd", {}, zoo));
    const labels = info.model_labels || {};
    const keys = Object.keys(labels).sort((a, b) => Number(a) - Number(b));
    $("label-count").textContent = String(keys.length);
    $("labels").replaceChildren(...keys.map((k) => el("li", { value: Number(k) }, String(labels[k]))));
    $("params").textContent = JSON.stringify(info.model_params, null, 2);
    $("outcome").hidden = true;
    $("details").hidden = false;
  } catch (e) {
    status(e.message, true);
  }
}

async function runImage(ev) {
  ev.preventDefault();
  const file = $("image").files[0];
  if (!current || !file) { status("Choose an image first.", true); return; }
  const [org, name] = current.zoo.split("/");
  status("Running " + current.model + "…");
  $("run").disabled = true;
  try {
    const out = await api("/ui/api/predict/" + seg(org) + "/" + seg(name) + "/" + seg(current.model), {
      method: "POST", body: file, headers: { "Content-Type": file.type || "application/octet-stream" },
    });
    $("overlay").src = out.overlay;
    $("results").textContent = JSON.stringify(out.results, null, 2);
    const best = (out.results || []).filter((r) => r && r.label !== undefined)
      .sort((a, b) => (b.score || 0) - (a.score || 0))[0];
    $("top-label").textContent = best ? best.label + (best.score !== undefined ? " (" + Number(best.score).toFixed(3) + ")" : "") : "none";
    $("outcome").hidden = false;
    status("Done: " + (out.results || []).length + " result(s)");
  } catch (e) {
    status(e.message, true);
  } finally {
    $("run").disabled = false;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("token").value = token();
  $("token-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
    loadZoos();
  });
  $("forget-token").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    $("token").value = "";
    loadZoos();
  });
  $("try-form").addEventListener("submit", runImage);
  loadZoos();
});
