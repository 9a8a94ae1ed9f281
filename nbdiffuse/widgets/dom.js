// DOM helpers shared by every widget's module (widgets/assets.py puts this file after
// frame_decode.js, before the widget's own files): one way to make an element.

const SVG_NS = "http://www.w3.org/2000/svg";

// h("div", { class: "x", text: "hello", "aria-label": "..." }, child, [more, children]) -> element.
// attrs: "class" sets the class name, "text" the text content, the rest are attributes: true sets an
// empty attribute, false / null / undefined leave it out. children: nodes or strings, arrays of them
// (flattened), and falsy values, which are skipped (so `condition && node` reads naturally).
function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (value !== undefined && value !== null && value !== false) node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) if (child) node.append(child);
  return node;
}

// An SVG element with its attributes (every value written as text).
function svg(tag, attrs = {}) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  return node;
}
