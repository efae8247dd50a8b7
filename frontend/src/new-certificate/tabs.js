// The two tabs (generate here / paste a CSR), with the arrow, Home and End keys of the WAI-ARIA tabs pattern.
import { byId } from "../dom.js";

/** The tab the key moves to from tab `index` of `count`, or null for any other key. */
export function tabIndexAfterKey(key, index, count) {
  if (key === "ArrowRight") return (index + 1) % count;
  if (key === "ArrowLeft") return (index - 1 + count) % count;
  if (key === "Home") return 0;
  if (key === "End") return count - 1;
  return null;
}

/** Wires the tabs; onSelect runs after each change of tab. */
export function setupTabs(tabs, onSelect) {
  const select = (tab, focus) => {
    for (const t of tabs) {
      const selected = t === tab;
      t.setAttribute("aria-selected", String(selected));
      t.tabIndex = selected ? 0 : -1;
      byId(t.getAttribute("aria-controls")).hidden = !selected;
    }
    if (focus) tab.focus();
    onSelect();
  };
  for (const [i, tab] of tabs.entries()) {
    tab.addEventListener("click", () => select(tab, false));
    tab.addEventListener("keydown", (ev) => {
      const next = tabIndexAfterKey(ev.key, i, tabs.length);
      if (next === null) return;
      ev.preventDefault();
      select(tabs[next], true);
    });
  }
}
