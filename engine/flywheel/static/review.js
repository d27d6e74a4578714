// The review page. Every text from the run is model output, so it is set with textContent
// only (never innerHTML); the server's Content-Security-Policy also forbids inline scripts.
import { hasSelection, implied, markSelected, select, showMarks, toggle } from "./review-marks.js";

const $ = (id) => document.getElementById(id);
const FILTERS = ["mode", "skill", "type", "judge", "disagreement"];
const params = new URLSearchParams(location.search);
const token = params.get("token");
const state = { record: null, trail: [], sessionLabels: 0, busy: false, marking: Promise.resolve() };

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}

function skipped() {
  return JSON.parse(sessionStorage.getItem("gristmill.skip") || "[]");
}

function query() {
  const q = new URLSearchParams();
  for (const name of FILTERS) {
    const input = $(name);
    const value = input.type === "checkbox" ? (input.checked ? "1" : "") : input.value;
    if (value) q.set(name, value);
  }
  const skip = skipped();
  if (skip.length) q.set("skip", skip.slice(-200).join(","));
  return q;
}

async function api(path, options = {}) {
  const headers = { Accept: "application/json", ...(options.headers || {}) };
  if (token) headers["X-Review-Token"] = token;
  const response = await fetch(path, { ...options, headers });
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

function fillOptions(select, values) {
  const have = new Set(Array.from(select.options, (o) => o.value));
  for (const value of values) {
    if (!have.has(value)) select.append(new Option(value, value));
  }
}

function showProgress(p) {
  const box = $("progress");
  box.replaceChildren();
  const parts = [
    ["labelled", `${p.labelled} / ${p.records}`], ["in filter", `${p.matching_labelled} / ${p.matching}`],
    ["left in this mode", p.pending], ["human pass", p.human_passed], ["human fail", p.human_failed],
    ["disagreements", p.disagreements], ["this session", state.sessionLabels]];
  parts.forEach(([name, value], i) => {
    if (i) box.append(" · ");
    const part = el("span", `${name} `);
    part.dataset.counter = name;
    part.append(el("b", value));
    box.append(part);
  });
}

function showJudge(judge) {
  const box = $("judge-verdict");
  box.replaceChildren();
  if (!judge) { box.append(el("span", "No judge verdict on this record.")); return; }
  box.append(el("span", judge.passed ? "passed" : "failed", `verdict ${judge.passed ? "pass" : "fail"}`),
             el("span", ` (judge ${judge.version || "?"})`));
  for (const [name, c] of Object.entries(judge.criteria || {})) {
    const row = el("div", null, "criterion");
    row.append(el("span", c.passed ? "✓ " : "✗ ", c.passed ? "ok" : "bad"), el("b", name));
    if (c.critique) row.append(el("div", c.critique, "critique"));
    box.append(row);
  }
}

function showValidators(r) {
  const box = $("validators");
  box.replaceChildren(el("div", "Accepted by every stage's validators."));
  if (r.in_dataset === true) box.append(el("div", "Kept in dataset.jsonl.", "ok"));
  if (r.in_dataset === false) box.append(el("div", "Removed from dataset.jsonl as a duplicate.", "bad"));
  if (r.seed_rejects.length) {
    box.append(el("div", `Other work from this seed was rejected (${r.seed_rejects.length}):`));
    const list = el("ul");
    for (const j of r.seed_rejects) {
      list.append(el("li", `${j.stage}: ${j.validator || j.error} — ${j.reason} (attempt ${j.attempt})`));
    }
    box.append(list);
  }
}

function showSingle(r) {
  $("instruction").textContent = r.instruction;
  $("answer").textContent = r.answer;
  const context = $("context");
  context.replaceChildren();
  for (const m of r.context) context.append(el("div", m.role, "role"), el("div", m.content, "text"));
  $("context-box").hidden = !r.context.length;
}

// Every turn in order; an assistant's tool calls (name, arguments) inside its turn, and a tool
// result headed by the call it answers.
function showTurn(m) {
  const turn = el("li", null, `turn ${m.role}`);
  turn.dataset.role = m.role;
  const head = m.role === "tool" ? `result of ${m.tool_name || "?"} (${m.tool_call_id})` : m.role;
  turn.append(el("div", head, "role"));
  if (m.content || !m.tool_calls.length) turn.append(el("div", m.content, "text"));
  for (const call of m.tool_calls) {
    const box = el("div", null, "call");
    box.append(el("div", `calls ${call.name} (${call.id})`, "call-name"),
               el("div", call.arguments, "text arguments"));
    turn.append(box);
  }
  return turn;
}

function showConversation(turns, tools) {
  $("conversation").replaceChildren(...turns.map(showTurn));
  $("tools").replaceChildren(...tools.map((t) => {
    const box = el("div", null, "tool");
    box.append(el("b", t.name), el("div", t.description, "critique"),
               el("div", t.parameters, "text arguments"));
    return box;
  }));
}

function showRecord(r) {
  state.record = r;
  $("record").hidden = !r;
  $("record").dataset.id = r ? r.id : "";
  $("empty").hidden = !!r;
  for (const id of ["pass", "fail", "skip"]) $(id).disabled = !r;
  if (!r) {
    showMarks(null);
    $("empty").textContent = "Nothing left to review with this sampling mode and these filters.";
    return;
  }
  const meta = [`record ${r.id}`, r.skill && `skill ${r.skill}`, r.type && `type ${r.type}`,
                r.agent && `agent ${r.agent}`, r.model && `model ${r.model}`].filter(Boolean);
  $("meta").textContent = meta.join(" · ");
  $("single").hidden = !!r.conversation;
  $("conversation-box").hidden = !r.conversation;
  $("tools-box").hidden = !r.tools.length;
  if (r.conversation) showConversation(r.conversation, r.tools);
  else showSingle(r);
  $("seed-source").textContent = r.seed ? `(${r.seed.source}, ${r.seed.chars} chars)` : "(not kept)";
  $("seed").textContent = r.seed ? r.seed.excerpt + (r.seed.chars > r.seed.excerpt.length ? " …" : "") : "";
  showJudge(r.judge);
  showValidators(r);
  const lineage = $("lineage");
  lineage.replaceChildren(...r.lineage.map((step) => el("li", `${step.stage} ${step.id}`)));
  const earlier = $("earlier");
  earlier.replaceChildren(...r.labels.map((l) => el("li",
    `${new Date(l.labeled_at * 1000).toLocaleString()}: ${l.criterion ? l.criterion + " " : ""}` +
    `${l.passed ? "pass" : "fail"}${l.reviewer ? " by " + l.reviewer : ""}` +
    `${l.critique ? " — " + l.critique : ""}`)));
  $("earlier-box").hidden = !r.labels.length;
  $("critique").value = "";
  showMarks(r, (criterion, passed) => saveMark(r, criterion, passed));
}

function show(body) {
  fillOptions($("skill"), body.facets.skills);
  fillOptions($("type"), body.facets.types);
  showProgress(body.progress);
  showRecord(body.record);
}

async function load(path) {
  try {
    show(await api(path));
    $("status").textContent = "";
  } catch (error) {
    $("status").textContent = `Could not load: ${error.message}`;
  }
}

const loadNext = () => load(`/api/next?${query()}`);

const post = (body) => api("/api/label", { method: "POST",
  headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });

// Marks are saved one after another, in the order given; resolves to whether it was saved.
function saveMark(r, criterion, passed) {
  const saving = state.marking.then(() => post({ record_id: r.id, criterion, passed }))
    .then(() => true, (error) => {
      $("status").textContent = `Not saved: ${criterion} ${passed ? "pass" : "fail"}: ${error.message}`;
      return false;
    });
  state.marking = saving;
  return saving;
}

// The overall label (after the marks given so far are saved); then the next record.
async function label(passed) {
  const r = state.record;
  if (!r || state.busy) return;
  state.busy = true;
  try {
    await state.marking;
    await post({ record_id: r.id, criterion: null, passed, critique: $("critique").value });
    state.sessionLabels += 1;
    state.trail.push(r.id);
    await loadNext();
    $("status").textContent = `Labelled ${r.id} ${passed ? "pass" : "fail"}.`;
  } catch (error) {
    $("status").textContent = `Not saved: ${error.message}`;
  } finally {
    state.busy = false;
  }
}

function skip() {
  if (!state.record) return;
  sessionStorage.setItem("gristmill.skip", JSON.stringify([...skipped(), state.record.id]));
  state.trail.push(state.record.id);
  loadNext();
}

function back() {
  const id = state.trail.pop();
  if (id) load(`/api/record/${encodeURIComponent(id)}?${query()}`);
}

function onFilterChange() {
  const keep = new URLSearchParams(query());
  keep.delete("skip");
  if (token) keep.set("token", token);
  history.replaceState(null, "", `?${keep}`);
  loadNext();
}

// p / f mark the selected criterion, else label the record; P / F always label the record.
function passOrFail(passed) {
  if (!state.record || state.busy) return;
  if (hasSelection()) markSelected(passed);
  else label(passed);
}

function labelAsImplied() {
  const verdict = implied();
  if (verdict === null) $("status").textContent = "Mark every criterion first, or press P / F.";
  else label(verdict);
}

const KEYS = { p: () => passOrFail(true), f: () => passOrFail(false), P: () => label(true),
               F: () => label(false), Enter: labelAsImplied, Escape: () => select(-1),
               s: skip, n: skip, j: skip, b: back, k: back, c: () => $("critique").focus() };

function onKey(event) {
  if (event.target === $("critique")) {
    if (event.key === "Escape") $("critique").blur();
    return;
  }
  if (event.ctrlKey || event.metaKey || event.altKey || event.target.tagName === "SELECT") return;
  const digit = /^[1-9]$/.test(event.key) ? Number(event.key) - 1 : -1;
  const action = digit >= 0 ? () => toggle(digit) : KEYS[event.key];
  if (action) { event.preventDefault(); action(); }
}

function start() {
  for (const name of FILTERS) {
    const input = $(name);
    const value = params.get(name) || "";
    if (input.type === "checkbox") input.checked = value === "1";
    else if (value) {
      if (!Array.from(input.options, (o) => o.value).includes(value)) input.append(new Option(value, value));
      input.value = value;
    }
    input.addEventListener("change", onFilterChange);
  }
  $("pass").addEventListener("click", () => label(true));
  $("fail").addEventListener("click", () => label(false));
  $("skip").addEventListener("click", skip);
  $("back").addEventListener("click", back);
  document.addEventListener("keydown", onKey);
  const first = params.get("record");  // a link to one record: ?record=ID
  if (first) load(`/api/record/${encodeURIComponent(first)}?${query()}`);
  else loadNext();
}

start();
