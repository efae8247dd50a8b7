// Errors the user can act on, and the page's one error banner.

/** An error whose message is written for the user (shown as is, not logged). */
export class UserError extends Error {}

/** The message of any thrown value, for "Something went wrong: ..." texts. */
export function errorText(e) {
  return e && e.message ? e.message : String(e);
}

/** The message to show for an error: a UserError as it is, anything else logged and prefixed. */
export function userMessage(e, prefix) {
  if (e instanceof UserError) return e.message;
  console.error(e);
  return `${prefix}: ${errorText(e)}`;
}

/** The banner at the top of the page (role="alert"); one message at a time. */
export function errorBanner(element) {
  return {
    show(message) {
      element.textContent = message;
      element.hidden = false;
      element.scrollIntoView({ block: "nearest" });
    },
    clear() {
      element.textContent = "";
      element.hidden = true;
    },
  };
}
