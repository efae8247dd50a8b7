// Copy buttons: <button class="copy" data-copy="text">, anywhere on the page (one listener for all).
import { copyText } from "../dom.js";

export function setupCopyButtons(root) {
  root.addEventListener("click", (event) => {
    const button = event.target.closest("button.copy[data-copy]");
    if (button) copyText(button.dataset.copy, button);
  });
}
