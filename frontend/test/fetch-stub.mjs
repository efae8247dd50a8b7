// A stand-in for fetch: answers each call from a list and remembers the requests.
export function stubFetch(t, answers) {
  const calls = [];
  const original = globalThis.fetch;
  globalThis.fetch = async (url, init = {}) => {
    calls.push({ url, method: init.method || "GET", headers: init.headers || {}, body: init.body ? JSON.parse(init.body) : undefined });
    const answer = answers[Math.min(calls.length, answers.length) - 1];
    if (answer instanceof Error) throw answer;
    return new Response(answer.body === undefined ? null : JSON.stringify(answer.body), { status: answer.status ?? 200 });
  };
  t.after(() => {
    globalThis.fetch = original;
  });
  return calls;
}

/** A progress list that records (step, state) instead of drawing it. */
export function recordingProgress() {
  const seen = [];
  return { seen, set: (step, state) => seen.push(`${step}:${state}`) };
}
