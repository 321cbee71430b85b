// A horizontal bar chart of agent states, drawn as inline SVG (no library).

const SVG = "http://www.w3.org/2000/svg";
const WIDTH = 360, ROW = 30, LABEL = 86, COUNT = 34;

function node(tag, attrs, text) {
  const n = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, String(v));
  if (text !== undefined) n.textContent = text;
  return n;
}

/** Draw ``counts`` ({state: n}) in ``order`` into ``container``; each bar group carries
 * ``data-state`` and ``data-count``. */
export function drawStateChart(container, counts, order) {
  const total = order.reduce((sum, s) => sum + (counts[s] || 0), 0);
  const height = order.length * ROW + 24;
  const svg = node("svg", {viewBox: `0 0 ${WIDTH} ${height}`, role: "img",
                           "aria-label": order.map((s) => `${s} ${counts[s] || 0}`).join(", ")});
  const span = WIDTH - LABEL - COUNT;
  order.forEach((state, i) => {
    const n = counts[state] || 0, y = i * ROW + 4;
    const g = node("g", {"data-state": state, "data-count": n});
    g.append(node("text", {x: 0, y: y + 16}, state),
             node("rect", {class: "track", x: LABEL, y, width: span, height: ROW - 10, rx: 4}),
             node("rect", {class: `bar bar-${state}`, x: LABEL, y, width: total ? Math.max(n ? 3 : 0, span * n / total) : 0,
                           height: ROW - 10, rx: 4}),
             node("text", {class: "count", x: WIDTH - COUNT + 8, y: y + 16}, String(n)));
    svg.append(g);
  });
  svg.append(node("text", {x: 0, y: height - 4, class: "total"}, `${total} agent${total === 1 ? "" : "s"}`));
  container.replaceChildren(svg);
}
