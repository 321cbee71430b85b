// The wallboard's charts, drawn as inline SVG (no library): a horizontal bar chart of agent states, and
// a queue's day by interval (offered / answered / abandoned bars, the service level as a line against
// its target).

const SVG = "http://www.w3.org/2000/svg";
const WIDTH = 360, ROW = 30, LABEL = 96, COUNT = 34;

function node(tag, attrs, text) {
  const n = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, String(v));
  if (text !== undefined) n.textContent = text;
  return n;
}

/** Draw ``counts`` ({state: n}) in ``order`` into ``container``, each bar labelled ``labels[state]``
 * (the state itself without one); each bar group carries ``data-state`` and ``data-count``. */
export function drawStateChart(container, counts, order, labels = {}) {
  const total = order.reduce((sum, s) => sum + (counts[s] || 0), 0);
  const height = order.length * ROW + 24;
  const name = (s) => labels[s] || s;
  const svg = node("svg", {viewBox: `0 0 ${WIDTH} ${height}`, role: "img",
                           "aria-label": order.map((s) => `${name(s)} ${counts[s] || 0}`).join(", ")});
  const span = WIDTH - LABEL - COUNT;
  order.forEach((state, i) => {
    const n = counts[state] || 0, y = i * ROW + 4;
    const g = node("g", {"data-state": state, "data-count": n});
    g.append(node("text", {x: 0, y: y + 16}, name(state)),
             node("rect", {class: "track", x: LABEL, y, width: span, height: ROW - 10, rx: 4}),
             node("rect", {class: `bar bar-${state}`, x: LABEL, y, width: total ? Math.max(n ? 3 : 0, span * n / total) : 0,
                           height: ROW - 10, rx: 4}),
             node("text", {class: "count", x: WIDTH - COUNT + 8, y: y + 16}, String(n)));
    svg.append(g);
  });
  svg.append(node("text", {x: 0, y: height - 4, class: "total"}, `${total} agent${total === 1 ? "" : "s"}`));
  container.replaceChildren(svg);
}

const IW = 760, IH = 240, PAD_L = 34, PAD_R = 40, PAD_T = 12, PAD_B = 34;

function hhmm(iso) {
  const d = new Date(iso);
  return `${String(d.getHours()).padStart(2, "0")}:${String(d.getMinutes()).padStart(2, "0")}`;
}

/**
 * A queue's intervals (GET /api/v1/queues/{queue}/intervals ``intervals``): per interval three bars
 * (offered, answered, abandoned; left axis, calls) and a point of the service level (SL2 at
 * ``threshold`` seconds; right axis, %) joined by a line, with the ``target`` share dashed. Each
 * interval's group carries ``data-start``, ``data-offered``, ``data-answered``, ``data-abandoned`` and
 * ``data-sl`` (a share, "" when nothing was answered or abandoned).
 */
export function drawIntervalChart(container, intervals, {threshold, target}) {
  const n = Math.max(1, intervals.length);
  const top = Math.max(1, ...intervals.map((iv) => iv.offered || 0));
  const plotW = IW - PAD_L - PAD_R, plotH = IH - PAD_T - PAD_B;
  const slot = plotW / n, bar = Math.max(1, slot / 4);
  const y = (v) => PAD_T + plotH - (plotH * v) / top;
  const yPct = (share) => PAD_T + plotH - plotH * share;
  const svg = node("svg", {viewBox: `0 0 ${IW} ${IH}`, role: "img", class: "intervals",
                           "aria-label": `offered, answered and abandoned calls and service level within ${threshold} s per interval`});
  svg.append(node("line", {class: "axis", x1: PAD_L, y1: PAD_T + plotH, x2: PAD_L + plotW, y2: PAD_T + plotH}),
             node("text", {class: "tick", x: PAD_L - 6, y: y(top) + 4, "text-anchor": "end"}, String(top)),
             node("text", {class: "tick", x: PAD_L - 6, y: PAD_T + plotH + 4, "text-anchor": "end"}, "0"),
             node("text", {class: "tick", x: PAD_L + plotW + 6, y: yPct(1) + 4}, "100%"),
             node("text", {class: "tick", x: PAD_L + plotW + 6, y: yPct(0) + 4}, "0%"));
  if (target) {
    svg.append(node("line", {class: "target", x1: PAD_L, x2: PAD_L + plotW, y1: yPct(target), y2: yPct(target)}),
               node("text", {class: "tick target-label", x: PAD_L + plotW + 6, y: yPct(target) + 4},
                    `${Math.round(target * 100)}%`));
  }
  const points = [];
  const every = Math.max(1, Math.ceil(n / 12)); // at most a dozen time labels
  intervals.forEach((iv, i) => {
    const x0 = PAD_L + i * slot + (slot - 3 * bar) / 2;
    const sl = ((iv.service_level || {})[String(threshold)] || {}).sl2;
    const g = node("g", {class: "interval", "data-start": iv.start, "data-offered": iv.offered || 0,
                         "data-answered": iv.answered || 0, "data-abandoned": iv.abandoned || 0,
                         "data-sl": sl === null || sl === undefined ? "" : sl});
    [["offered", iv.offered], ["answered", iv.answered], ["abandoned", iv.abandoned]].forEach(([kind, v], k) => {
      const h = PAD_T + plotH - y(v || 0);
      g.append(node("rect", {class: `ibar ibar-${kind}`, x: x0 + k * bar, y: y(v || 0), width: bar, height: h},
                    undefined));
    });
    g.append(node("title", {}, `${hhmm(iv.start)}: ${iv.offered || 0} offered, ${iv.answered || 0} answered, ` +
                               `${iv.abandoned || 0} abandoned, SL ${sl === null || sl === undefined ? "—" : `${Math.round(sl * 100)}%`}`));
    if (i % every === 0) {
      g.append(node("text", {class: "tick", x: PAD_L + i * slot + slot / 2, y: IH - PAD_B + 16, "text-anchor": "middle"},
                    hhmm(iv.start)));
    }
    svg.append(g);
    if (sl !== null && sl !== undefined) points.push([PAD_L + i * slot + slot / 2, yPct(sl)]);
  });
  if (points.length) {
    svg.append(node("polyline", {class: "sl-line", points: points.map((p) => p.join(",")).join(" ")}));
    for (const [px, py] of points) svg.append(node("circle", {class: "sl-point", cx: px, cy: py, r: 2.5}));
  }
  const legend = [["offered", "offered"], ["answered", "answered"], ["abandoned", "abandoned"]];
  legend.forEach(([kind, text], k) => {
    const lx = PAD_L + k * 110;
    svg.append(node("rect", {class: `ibar ibar-${kind}`, x: lx, y: IH - 12, width: 10, height: 10}),
               node("text", {class: "tick", x: lx + 14, y: IH - 3}, text));
  });
  svg.append(node("line", {class: "sl-line", x1: PAD_L + 340, x2: PAD_L + 360, y1: IH - 7, y2: IH - 7}),
             node("text", {class: "tick", x: PAD_L + 366, y: IH - 3}, `SL ${threshold} s (target dashed)`));
  container.replaceChildren(svg);
}
