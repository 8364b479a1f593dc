"""The web page at ``/``: drop or pick images, see each one's score, decision and heat map, and
the threshold. Self-contained (no script, style or font from the network); it calls the same
``/v1/model`` and ``/v1/score?map=1`` endpoints as any client, one request per image."""

PAGE_HTML = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>gonomaly</title>
<style>
  body { font-family: system-ui, sans-serif; margin: 0 auto; max-width: 60rem; padding: 1rem; color: #222; }
  h1 { font-size: 1.4rem; margin: 0 0 .3rem; }
  #model { color: #555; margin-bottom: 1rem; }
  #drop { border: 2px dashed #888; border-radius: .5rem; padding: 1.5rem; text-align: center; }
  #drop.over { background: #eef4ff; border-color: #36c; }
  #results { display: flex; flex-wrap: wrap; gap: 1rem; margin-top: 1rem; }
  .result { border: 1px solid #ccc; border-radius: .5rem; padding: .6rem; width: 13rem; }
  .result img { width: 12rem; height: 12rem; object-fit: contain; image-rendering: pixelated; background: #000; }
  .name { font-weight: 600; overflow-wrap: anywhere; }
  .decision { display: inline-block; padding: .1rem .5rem; border-radius: 1rem; color: #fff; font-weight: 600; }
  .decision.normal { background: #2a7d2e; }
  .decision.anomalous { background: #c62828; }
  .error { color: #c62828; overflow-wrap: anywhere; }
  .pending { color: #777; }
</style>
</head>
<body>
<h1>gonomaly</h1>
<div id="model">Loading the model&hellip;</div>
<div id="drop">
  <p>Drop images here, or pick them:</p>
  <input id="files" type="file" accept="image/*" multiple>
</div>
<div id="results"></div>
<script>
"use strict";
const results = document.getElementById("results");
const model = document.getElementById("model");

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

async function loadModel() {
  const response = await fetch("/v1/model");
  const info = await response.json();
  if (!response.ok) { model.textContent = info.error || response.statusText; return; }
  model.textContent = "";
  model.append(`${info.model}, ${info.score} score, ` +
               `${info.image.width}x${info.image.height}x${info.image.channels}; threshold `);
  model.append(element("span", "", String(info.threshold.value.toPrecision(6))));
  model.lastChild.id = "threshold";
  model.append(` (${info.threshold.rule}); gonomaly ${info.version}`);
}

function show(card, image) {
  card.querySelector(".pending").remove();
  if (image.error) { card.append(element("div", "error", image.error)); return; }
  const picture = element("img", "overlay");
  picture.alt = `heat map of ${image.name}`;
  picture.src = `data:image/png;base64,${image.map_png}`;
  card.append(picture);
  card.append(element("div", "score", `score ${image.score.toPrecision(6)}`));
  card.append(element("div", "threshold", `threshold ${image.threshold.toPrecision(6)}`));
  card.append(element("span", `decision ${image.decision}`, image.decision));
  card.dataset.decision = image.decision;
}

async function score(file) {
  const card = element("div", "result");
  card.dataset.name = file.name;
  card.append(element("div", "name", file.name), element("div", "pending", "scoring\\u2026"));
  results.prepend(card);
  try {
    const response = await fetch(`/v1/score?map=1&name=${encodeURIComponent(file.name)}`, {
      method: "POST", body: file, headers: {"Content-Type": file.type || "application/octet-stream"}});
    const answer = await response.json();
    show(card, answer.images ? answer.images[0] : {error: answer.error || response.statusText});
  } catch (failure) {
    show(card, {error: String(failure)});
  }
  card.classList.add("done");
}

function scoreAll(files) { for (const file of files) score(file); }

const drop = document.getElementById("drop");
const input = document.getElementById("files");
input.addEventListener("change", () => { scoreAll(input.files); input.value = ""; });
drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (event) => {
  event.preventDefault();
  drop.classList.remove("over");
  scoreAll(event.dataTransfer.files);
});
loadModel();
</script>
</body>
</html>
"""
