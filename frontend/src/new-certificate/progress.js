// The steps of making a certificate in the browser, shown as a list (#progress-key, -csr, -issue)
// whose items carry data-state pending | active | done | error.
import { UserError, errorText } from "./errors.js";

export const STEPS = ["key", "csr", "issue"];

const MARKS = { pending: "", active: "(in progress)", done: "(done)", error: "(failed)" };
const DOING = { key: "generating the key", csr: "building the certificate request", issue: "requesting the certificate" };

/** The progress list: set(step, state) updates one item. */
export function progressList(list) {
  return {
    set(step, state) {
      const item = list.querySelector(`#progress-${step}`);
      item.dataset.state = state;
      const mark = item.querySelector(".nc-step-state");
      if (mark) mark.textContent = MARKS[state];
    },
    reset() {
      list.hidden = false;
      for (const step of STEPS) this.set(step, "pending");
    },
  };
}

/** Thrown by runStep: which step failed, and why. */
export class StepError extends Error {
  constructor(step, cause) {
    super(errorText(cause), { cause });
    this.step = step;
  }

  /** The message for the user: a UserError's own text, else what was being done when it broke. */
  get userMessage() {
    if (this.cause instanceof UserError) return this.cause.message;
    return `Something went wrong while ${DOING[this.step]}: ${this.message}`;
  }
}

/** Runs one step's work with its item active, then done; on failure marks it failed and throws a StepError. */
export async function runStep(progress, step, work) {
  progress.set(step, "active");
  try {
    const result = await work();
    progress.set(step, "done");
    return result;
  } catch (e) {
    progress.set(step, "error");
    throw new StepError(step, e);
  }
}
