// The npm `@anthropic-ai/sdk`: Messages, plain and streamed, and a tool round trip.
// See common.mjs for the calling convention.
import Anthropic from '@anthropic-ai/sdk';
import { TOOL, main, prompt, runTool } from './common.mjs';

function client(s) {
  // The SDK appends /v1/messages itself.
  return new Anthropic({ baseURL: s.base, apiKey: s.key, maxRetries: 0, timeout: 60_000 });
}

async function turn(s, messages, tools) {
  const c = client(s);
  const body = { model: s.model, max_tokens: 200, system: 'You are terse.', messages, ...(tools ? { tools } : {}) };
  if (!s.stream) return { message: await c.messages.create(body), deltas: null, events: null };
  const stream = c.messages.stream(body);
  const events = [];
  let deltas = 0;
  stream.on('streamEvent', (e) => events.push(e.type));
  stream.on('text', (t) => { if (t) deltas += 1; });
  const message = await stream.finalMessage();
  return { message, deltas, events: [...new Set(events)] };
}

const text = (m) => m.content.filter((b) => b.type === 'text').map((b) => b.text).join('');

async function messages(s) {
  const { message, deltas, events } = await turn(s, [{ role: 'user', content: prompt(s) }]);
  return { text: text(message), finish: message.stop_reason, usage: message.usage, deltas, events, model: message.model, blocks: message.content.map((b) => b.type) };
}

async function messagesTools(s) {
  const tools = [{ name: TOOL.name, description: TOOL.description, input_schema: TOOL.parameters }];
  const history = [{ role: 'user', content: prompt(s) }];
  const first = await turn(s, history, tools);
  const uses = first.message.content.filter((b) => b.type === 'tool_use');
  if (uses.length !== 1) throw new Error(`expected one tool_use, got ${JSON.stringify(first.message.content)}`);
  const use = uses[0];
  history.push({ role: 'assistant', content: first.message.content });
  history.push({ role: 'user', content: [{ type: 'tool_result', tool_use_id: use.id, content: runTool(use.input) }] });
  const second = await turn(s, history, tools);
  return {
    tool_call: { id: use.id, name: use.name, arguments: use.input },
    first_finish: first.message.stop_reason,
    first_events: first.events,
    text: text(second.message),
    finish: second.message.stop_reason,
    usage: second.message.usage,
  };
}

await main({ messages, messages_tools: messagesTools });
