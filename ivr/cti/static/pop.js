// The screen-pop card's contents: who calls, what they did in the IVR, and what the CRM knows.
// Pure DOM building from one call object (the ``call.offered`` event, or the call record after a
// reload); every value goes in as text.

import {el, safeHref} from "./common.js";

const CALL_STATUS = {
  ringing: "Ringing",
  dialing: "Dialling",
  connected: "Connected",
  ended: "Ended",
  missed: "Missed",
  transferred: "Transferred",
  left: "Left the conference",
};

export function statusText(call) {
  let text = CALL_STATUS[call.status] || call.status;
  if (call.status === "ended" && call.outcome && call.outcome !== "completed") text += ` (${call.outcome.replace(/_/g, " ")})`;
  if (call.status === "missed" && call.reason) text += ` (${call.reason.replace(/_/g, " ")})`;
  return text;
}

function row(label, value, key) {
  if (value === undefined || value === null || value === "") return null;
  return [el("dt", {}, label), el("dd", {dataset: {field: key}}, String(value))];
}

function seconds(value) {
  const n = Number(value);
  return Number.isFinite(n) ? `${n.toFixed(n < 10 ? 1 : 0)} s` : null;
}

/** The caller's facts: numbers, hotline, language, queue, priority, time waited. */
export function callFacts(call) {
  return el("dl", {class: "facts"},
    row("Caller", call.ani || "unknown", "ani"),
    row("Dialled", call.dnis, "dnis"),
    row("Hotline", call.hotline, "hotline"),
    row("Language", (call.journey && call.journey.language) || call.language, "language"),
    row("Queue", call.queue, "queue"),
    row("Priority", call.priority, "priority"),
    row("Transferred by", call.transferred_from, "transferred-from"),
    row("Consult from", call.consult_from, "consult-from"),
    row("Direction", call.direction === "outbound" ? "outbound (you dialled)" : null, "direction"),
    row("Waited", seconds(call.waited_s), "waited"));
}

/** One IVR step as a line: node (type), keys pressed, phrase and confidence, outcome. */
export function journeyStep(step) {
  const parts = [el("span", {class: "node"}, step.node || "?")];
  if (step.type) parts.push(el("span", {class: "type"}, step.type));
  if (step.attempt && step.attempt > 1) parts.push(el("span", {class: "attempt"}, `attempt ${step.attempt}`));
  if (step.digit) parts.push(el("span", {class: "keys", title: "keys pressed"}, "keys ", el("kbd", {}, step.digit)));
  if (step.phrase) {
    const conf = Number(step.confidence);
    parts.push(el("span", {class: "phrase", title: "what the caller said"}, `“${step.phrase}”`,
      Number.isFinite(conf) ? el("span", {class: conf < 0.6 ? "confidence low" : "confidence"},
                                  ` ${Math.round(conf * 100)}%`) : null));
  }
  if (step.detail) parts.push(el("span", {class: "detail"}, step.detail));
  const outcome = step.goto && step.goto !== step.outcome ? `${step.outcome} → ${step.goto}` : step.outcome;
  if (outcome) parts.push(el("span", {class: "outcome"}, `→ ${outcome}`));
  return el("li", {class: "step"}, parts);
}

// variables every call has (shown above as the call's facts)
const BUILTIN = new Set(["caller", "dnis", "language", "plan", "plan_version"]);

export function journeyView(journey) {
  const steps = (journey && Array.isArray(journey.steps)) ? journey.steps : [];
  const data = (journey && journey.data && typeof journey.data === "object") ? journey.data : {};
  const out = [el("h3", {}, "IVR journey", journey && journey.plan ? el("span", {class: "muted"}, ` · ${journey.plan}`) : null)];
  out.push(steps.length ? el("ol", {class: "journey"}, steps.map(journeyStep))
                        : el("p", {class: "muted"}, "No IVR steps recorded."));
  const keys = Object.keys(data).filter((k) => !BUILTIN.has(k));
  if (keys.length) {
    out.push(el("h3", {}, "Collected"),
             el("dl", {class: "facts data"}, keys.map((k) => row(k, String(data[k]), `data.${k}`))));
  }
  return out;
}

const SKIP = new Set(["id", "name", "link", "url", "fields"]);

function crmRecord(record) {
  const href = safeHref(record.link || record.url);
  const name = record.name || record.id || "record";
  const title = href ? el("a", {href, target: "_blank", rel: "noopener noreferrer", class: "crm-link"}, name)
                     : el("strong", {}, name);
  // the connector puts the configured fields under "fields"; other flat values are shown too
  const extra = [...Object.entries(record.fields || {}), ...Object.entries(record)]
    .filter(([k, v]) => !SKIP.has(k) && (typeof v === "string" || typeof v === "number" || typeof v === "boolean"))
    .slice(0, 8);
  return [title, record.id && record.name ? el("span", {class: "muted"}, ` #${record.id}`) : null,
          extra.length ? el("dl", {class: "facts crm-fields"}, extra.map(([k, v]) => row(k, String(v), `crm.${k}`))) : null];
}

/** The CRM part: one record with its link, several to choose from, or a flag saying there is none. */
export function crmView(crm) {
  const box = el("div", {class: "crm", dataset: {crm: crm ? crm.status : "absent"}}, el("h3", {}, "CRM"));
  if (!crm || crm.status === "none") {
    box.append(el("p", {class: "flag"}, "No CRM data for this caller"));
  } else if (crm.status === "timeout" || crm.status === "error") {
    box.append(el("p", {class: "flag warn"}, crm.status === "timeout" ? "CRM unavailable (no answer in time)"
                                                                     : "CRM unavailable"));
  } else if (crm.status === "matched" && crm.record) {
    box.append(el("div", {class: "crm-record"}, crmRecord(crm.record)));
  } else if (crm.status === "multiple" && Array.isArray(crm.records)) {
    box.append(el("p", {class: "muted"}, `${crm.records.length} records match this caller:`),
               el("ul", {class: "crm-records"}, crm.records.map((r) => el("li", {}, crmRecord(r)))));
  } else {
    box.append(el("p", {class: "flag"}, "No CRM data for this caller"));
  }
  return box;
}
