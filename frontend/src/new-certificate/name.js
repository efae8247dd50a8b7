// The certificate's name, as typed in either form.
import { UserError } from "./errors.js";

export const NAME_MAX_LENGTH = 100;

/** What is wrong with a name, or null. */
export function nameProblem(name) {
  if (!name) return "Give the certificate a name (for example the machine it is for).";
  if (name.length > NAME_MAX_LENGTH) return `The name can be at most ${NAME_MAX_LENGTH} characters.`;
  return null;
}

/** The trimmed name from an input; marks the input invalid and throws a UserError when it is unusable. */
export function readName(input) {
  const name = input.value.trim();
  const problem = nameProblem(name);
  if (problem) {
    input.setAttribute("aria-invalid", "true");
    input.focus();
    throw new UserError(problem);
  }
  input.removeAttribute("aria-invalid");
  return name;
}
