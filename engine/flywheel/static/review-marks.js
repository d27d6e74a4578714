// The criterion marks of the label bar: one row per judge criterion of the shown record, with
// the judge's verdict and the reviewer's pass/fail. A mark is saved at once (a new label each
// time); the overall label moves on to the next record. Texts are set with textContent only.

const marks = { record: null, rows: [], selected: -1, save: null };

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}

function setLabel(row, passed) {
  row.dataset.label = passed === null ? "" : passed ? "pass" : "fail";
}

function markRow(criterion, index) {
  const row = el("div", null, "mark");
  row.dataset.criterion = criterion.name;
  row.append(el("kbd", index < 9 ? index + 1 : ""));
  const name = el("span", criterion.name, "name");
  if (criterion.question) name.title = criterion.question;
  row.append(name);
  const judged = criterion.judge && typeof criterion.judge.passed === "boolean";
  const judge = el("span", judged ? `judge ${criterion.judge.passed ? "✓" : "✗"}` : "judge –",
                   judged ? (criterion.judge.passed ? "judge ok" : "judge bad") : "judge");
  if (judged && criterion.judge.critique) judge.title = criterion.judge.critique;
  row.append(judge);
  for (const passed of [true, false]) {
    const button = el("button", passed ? "✓" : "✗", passed ? "pass" : "fail");
    button.title = `${criterion.name}: ${passed ? "pass" : "fail"}`;
    button.addEventListener("click", () => mark(index, passed));
    row.append(button);
  }
  setLabel(row, criterion.label ? criterion.label.passed : null);
  return row;
}

// Show the record's criteria; `save(criterion, passed)` stores one mark (a promise).
export function showMarks(record, save) {
  marks.record = record;
  marks.save = save;
  marks.rows = record ? record.criteria.map(markRow) : [];
  document.getElementById("marks").replaceChildren(...marks.rows);
  select(-1);
}

export function select(index) {
  marks.selected = index >= 0 && index < marks.rows.length ? index : -1;
  marks.rows.forEach((row, i) => row.classList.toggle("selected", i === marks.selected));
  showImplied();
}

// A digit: select that criterion, or clear the selection when it is selected already.
export function toggle(index) {
  select(index === marks.selected ? -1 : index);
}

export const hasSelection = () => marks.selected >= 0;

// Mark the selected criterion and select the next one (none after the last).
export function markSelected(passed) {
  const index = marks.selected;
  select(index + 1 < marks.rows.length ? index + 1 : -1);
  return mark(index, passed);
}

function mark(index, passed) {
  const row = marks.rows[index];
  const record = marks.record;
  row.classList.add("saving");
  return marks.save(row.dataset.criterion, passed).then((saved) => {
    if (saved && record === marks.record) setLabel(row, passed);
    row.classList.remove("saving");
    showImplied();
  });
}

// The overall verdict the marks imply: fail once one criterion fails, pass once all pass.
export function implied() {
  const labels = marks.rows.map((row) => row.dataset.label);
  if (labels.includes("fail")) return false;
  if (labels.length && labels.every((label) => label === "pass")) return true;
  return null;
}

function showImplied() {
  const verdict = implied();
  const box = document.getElementById("implied");
  if (!marks.rows.length) box.textContent = "";
  else if (verdict === null) box.textContent = "Mark every criterion (or press P / F).";
  else box.textContent = `The criteria say ${verdict ? "pass" : "fail"}: Enter labels the record so.`;
  box.dataset.verdict = verdict === null ? "" : verdict ? "pass" : "fail";
}
