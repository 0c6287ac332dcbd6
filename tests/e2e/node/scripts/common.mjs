// Shared bits of the SDK scripts the end-to-end tests run (tests/e2e/test_node_sdks.py).
//
// Each script takes one JSON argument {base, key, model, case, stream, nonce}, talks to `base`
// (the gateway, or an upstream directly) with a real npm SDK, and prints one JSON line with what
// the SDK returned: text, finish reason, usage, stream deltas, the tool call it saw. The Python
// test decides what is right; a script only fails (exit 1, error on stderr) when the SDK throws.

// The one tool every tool round trip offers; the mock provider calls it with {"query": "value"}.
export const TOOL = {
  name: 'lookup',
  description: 'Looks a word up in the test dictionary.',
  parameters: {
    type: 'object',
    properties: { query: { type: 'string', description: 'The word to look up.' } },
    required: ['query'],
  },
};

// What running the tool gives: the test looks for this text in the model's final answer.
export function runTool(args) {
  return `lookup(${args.query}) = 42`;
}

// The mock provider answers "echo: <this>", or calls the tool when the text says "use tool".
export function prompt(scenario) {
  return scenario.case.endsWith('tools') ? `Please use tool (${scenario.nonce})` : `Say hello (${scenario.nonce})`;
}

export async function main(handlers) {
  const scenario = JSON.parse(process.argv[2]);
  const handler = handlers[scenario.case];
  if (!handler) throw new Error(`unknown case ${scenario.case}`);
  try {
    const result = await handler(scenario);
    process.stdout.write(JSON.stringify(result) + '\n');
  } catch (err) {
    const detail = {
      name: err?.constructor?.name,
      message: err?.message,
      status: err?.status,
      error: err?.error,
    };
    process.stderr.write(`SDK error: ${JSON.stringify(detail)}\n${err?.stack ?? ''}\n`);
    process.exit(1);
  }
}
