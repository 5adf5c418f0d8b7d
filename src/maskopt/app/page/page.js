// maskopt serve: upload a photo, click (or drag a box), show masks and result.
"use strict";
const $ = (id) => document.getElementById(id);
const state = { photo: null, pick: null, photoUrl: null, name: "", width: 0, height: 0, result: null };

function say(text) { $("message").textContent = text || ""; }
function status(text) { $("status").textContent = text || ""; }
function busy(on) { $("progress").hidden = !on; document.body.style.cursor = on ? "progress" : ""; }

async function call(url, options) {
  const response = await fetch(url, options);
  let body;
  try { body = await response.json(); } catch (e) { body = { error: `the server answered ${response.status}` }; }
  if (!response.ok) {
    const error = new Error(body.error || `the server answered ${response.status}`);
    error.nearby = body.nearby || [];
    throw error;
  }
  return body;
}

async function info() {
  const about = await call("/api/info");
  if (about.demo_warning) { $("demo").textContent = about.demo_warning; $("demo").hidden = false; }
}

// the segments the server found near a pick that held none, outlined on the photo
function drawNearby(segments) {
  for (const old of document.querySelectorAll(".nearby")) old.remove();
  for (const segment of segments) {
    const [x0, y0, x1, y1] = segment.box;
    const outline = document.createElement("div");
    outline.className = "nearby";
    outline.style.left = `${100 * x0 / state.width}%`;
    outline.style.top = `${100 * y0 / state.height}%`;
    outline.style.width = `${100 * (x1 - x0) / state.width}%`;
    outline.style.height = `${100 * (y1 - y0) / state.height}%`;
    outline.textContent = `${segment.name} ${segment.score.toFixed(2)}`;
    $("stage").appendChild(outline);
  }
}

// no result on screen: after a failed pick or upload nothing stale stays downloadable
function clearResult() {
  state.result = null;
  $("result").removeAttribute("src"); delete $("result").dataset.mask;
  $("download").hidden = true; $("download").removeAttribute("href");
  $("compare").hidden = true; $("compare").setAttribute("aria-pressed", "false");
  drawNearby([]);
  if (state.photoUrl) $("input").src = state.photoUrl;
}

async function open(file) {
  say(""); status(`uploading ${file.name}…`); busy(true);
  try {
    const body = await call("/api/photo", { method: "POST", body: file,
      headers: { "X-Filename": file.name, "Content-Type": "application/octet-stream" } });
    state.photo = body.photo; state.width = body.width; state.height = body.height;
    state.pick = null; state.name = file.name;
    if (state.photoUrl) URL.revokeObjectURL(state.photoUrl);
    state.photoUrl = URL.createObjectURL(file);
    $("grow").max = body.max_grow;
    if (Number($("grow").value) > body.max_grow) $("grow").value = body.max_grow;
    $("grow-value").textContent = `${$("grow").value} px`;
    clearResult();
    status(`${file.name}: ${body.width}×${body.height}; click the object to remove`);
  } catch (error) {
    state.photo = null; state.name = "";
    if (state.photoUrl) URL.revokeObjectURL(state.photoUrl);
    state.photoUrl = null; $("input").removeAttribute("src");
    clearResult();
    say(error.message); status("");
  } finally { busy(false); }
}

function downloadName() {
  const stem = state.name.replace(/\.[^.]*$/, "") || "photo";
  return `${stem}-removed.png`;
}

async function remove() {
  if (!state.photo || !state.pick) return;
  say(""); busy(true); status("segmenting and inpainting…");
  const started = performance.now();
  try {
    const body = await call("/api/remove", { method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ photo: state.photo, ...state.pick, grow: Number($("grow").value) }) });
    drawNearby([]);
    state.result = body.result;
    $("input").src = body.overlay;
    $("result").src = body.result;
    $("result").dataset.mask = body.mask;
    $("download").href = body.result; $("download").download = downloadName();
    $("download").hidden = false;
    $("compare").hidden = false; $("compare").setAttribute("aria-pressed", "false");
    const total = (performance.now() - started) / 1000;
    status(`removed ${body.removed}; mask ${(100 * body.mask_share).toFixed(1)} % of the photo; ` +
           `${body.seconds.toFixed(2)} s on the server, ${total.toFixed(2)} s in all`);
    $("status").dataset.browserSeconds = total.toFixed(3);
  } catch (error) {
    clearResult();
    drawNearby(error.nearby || []);
    say(error.message); status("");
  } finally { busy(false); }
}

// before/after: the result view shows the photo as it was while pressed
$("compare").addEventListener("click", () => {
  const before = $("compare").getAttribute("aria-pressed") !== "true";
  $("compare").setAttribute("aria-pressed", String(before));
  $("result").src = before ? state.photoUrl : state.result;
  $("compare").textContent = before ? "show the result" : "show the original";
});

// photo pixel of a mouse event on the shown image
function photoXY(event) {
  const rect = $("input").getBoundingClientRect();
  return [(event.clientX - rect.left) * state.width / rect.width,
          (event.clientY - rect.top) * state.height / rect.height];
}

let dragFrom = null;
$("stage").addEventListener("mousedown", (event) => {
  if (!state.photo) return;
  dragFrom = { client: [event.clientX, event.clientY], photo: photoXY(event) };
});
$("stage").addEventListener("mousemove", (event) => {
  if (!dragFrom) return;
  const band = $("band"), rect = $("stage").getBoundingClientRect();
  const [x0, y0] = dragFrom.client;
  band.style.display = "block";
  band.style.left = `${Math.min(x0, event.clientX) - rect.left}px`;
  band.style.top = `${Math.min(y0, event.clientY) - rect.top}px`;
  band.style.width = `${Math.abs(event.clientX - x0)}px`;
  band.style.height = `${Math.abs(event.clientY - y0)}px`;
});
window.addEventListener("mouseup", (event) => {
  if (!dragFrom) return;
  const from = dragFrom; dragFrom = null; $("band").style.display = "none";
  const moved = Math.hypot(event.clientX - from.client[0], event.clientY - from.client[1]);
  const to = photoXY(event);
  const clamp = (v, top) => Math.min(Math.max(v, 0), top);
  if (moved < 6) {  // the pixel clicked, in whole photo pixels
    state.pick = { point: [clamp(Math.floor(from.photo[0]), state.width - 1),
                           clamp(Math.floor(from.photo[1]), state.height - 1)] };
  } else {
    const xs = [from.photo[0], to[0]].map((v) => clamp(Math.round(v), state.width)).sort((a, b) => a - b);
    const ys = [from.photo[1], to[1]].map((v) => clamp(Math.round(v), state.height)).sort((a, b) => a - b);
    state.pick = { box: [xs[0], ys[0], xs[1], ys[1]] };
  }
  remove();
});

$("grow").addEventListener("input", () => { $("grow-value").textContent = `${$("grow").value} px`; });
$("grow").addEventListener("change", remove);
$("file").addEventListener("change", () => { if ($("file").files[0]) open($("file").files[0]); });
const drop = $("drop");
drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (event) => {
  event.preventDefault(); drop.classList.remove("over");
  if (event.dataTransfer.files[0]) open(event.dataTransfer.files[0]);
});
info().catch((error) => say(error.message));
