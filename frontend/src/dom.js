// Small DOM helpers the page scripts share: busy buttons, file saving, copying to the clipboard.

export const byId = (id) => document.getElementById(id);

/** Resolves after the browser has painted, so that a progress message shows before heavy work starts. */
export function nextFrame() {
  return new Promise((resolve) => requestAnimationFrame(() => setTimeout(resolve, 0)));
}

export function setBusy(button, busy, busyText) {
  if (!button) return;
  if (busy) {
    if (!button.dataset.label) button.dataset.label = button.textContent;
    if (busyText) button.textContent = busyText;
    button.disabled = true;
    button.setAttribute("aria-busy", "true");
  } else {
    if (button.dataset.label) button.textContent = button.dataset.label;
    button.disabled = false;
    button.removeAttribute("aria-busy");
  }
}

/** Offers content made in the browser as a download (nothing goes over the network). */
export function saveFile(content, filename, type) {
  const blob = new Blob([content], { type });
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = url;
  a.download = filename;
  a.rel = "noopener";
  a.hidden = true;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

function copyWithSelection(text) {
  // Fallback for browsers without the async clipboard (or without permission).
  const area = document.createElement("textarea");
  area.value = text;
  area.setAttribute("readonly", "");
  area.style.position = "fixed";
  area.style.opacity = "0";
  document.body.appendChild(area);
  area.select();
  let ok;
  try {
    ok = document.execCommand("copy");
  } catch {
    ok = false;
  }
  area.remove();
  return ok;
}

/** Copies text; the button (if any) says "Copied" (or how to copy by hand) for two seconds. */
export async function copyText(text, button) {
  let ok;
  try {
    await navigator.clipboard.writeText(text);
    ok = true;
  } catch {
    ok = copyWithSelection(text);
  }
  if (button) {
    const label = button.dataset.copyLabel || button.textContent;
    button.dataset.copyLabel = label;
    button.textContent = ok ? "Copied" : "Copy failed: select and copy it by hand";
    setTimeout(() => {
      button.textContent = label;
    }, 2000);
  }
  return ok;
}
