// The npm `openai` SDK: Chat Completions and Responses, plain and streamed, and a tool round
// trip on each. See common.mjs for the calling convention.
import OpenAI from 'openai';
import { TOOL, main, prompt, runTool } from './common.mjs';

function client(s) {
  return new OpenAI({ baseURL: `${s.base}/v1`, apiKey: s.key, maxRetries: 0, timeout: 60_000 });
}

const CHAT_TOOLS = [{ type: 'function', function: TOOL }];

async function chatTurn(s, messages, tools) {
  const c = client(s);
  const body = { model: s.model, messages, max_tokens: 200, ...(tools ? { tools } : {}) };
  if (!s.stream) {
    const r = await c.chat.completions.create(body);
    return { completion: r, deltas: null };
  }
  const stream = c.chat.completions.stream({ ...body, stream_options: { include_usage: true } });
  let deltas = 0;
  let chunks = 0;
  stream.on('chunk', () => (chunks += 1));
  stream.on('content', (d) => { if (d) deltas += 1; });
  const r = await stream.finalChatCompletion();
  return { completion: r, deltas, chunks };
}

async function chat(s) {
  const { completion, deltas } = await chatTurn(s, [
    { role: 'system', content: 'You are terse.' },
    { role: 'user', content: prompt(s) },
  ]);
  const choice = completion.choices[0];
  return { text: choice.message.content, finish: choice.finish_reason, usage: completion.usage, deltas, model: completion.model };
}

async function chatTools(s) {
  const messages = [{ role: 'user', content: prompt(s) }];
  const first = await chatTurn(s, messages, CHAT_TOOLS);
  const msg = first.completion.choices[0].message;
  const calls = msg.tool_calls ?? [];
  if (calls.length !== 1) throw new Error(`expected one tool call, got ${JSON.stringify(msg)}`);
  const call = calls[0];
  messages.push({ role: 'assistant', content: msg.content ?? null, tool_calls: calls });
  messages.push({ role: 'tool', tool_call_id: call.id, content: runTool(JSON.parse(call.function.arguments)) });
  const second = await chatTurn(s, messages, CHAT_TOOLS);
  const choice = second.completion.choices[0];
  return {
    tool_call: { id: call.id, name: call.function.name, arguments: JSON.parse(call.function.arguments) },
    first_finish: first.completion.choices[0].finish_reason,
    text: choice.message.content,
    finish: choice.finish_reason,
    usage: second.completion.usage,
  };
}

async function responsesTurn(s, input, tools) {
  const c = client(s);
  const body = { model: s.model, input, max_output_tokens: 200, ...(tools ? { tools } : {}) };
  if (!s.stream) return { response: await c.responses.create(body), events: null, deltas: null };
  const stream = c.responses.stream(body);
  const events = [];
  let deltas = 0;
  for await (const event of stream) {
    events.push(event.type);
    if (event.type === 'response.output_text.delta' && event.delta) deltas += 1;
  }
  return { response: await stream.finalResponse(), events, deltas };
}

async function responses(s) {
  const { response, events, deltas } = await responsesTurn(s, prompt(s));
  return {
    text: response.output_text,
    finish: response.status,
    usage: response.usage,
    output_types: response.output.map((i) => i.type),
    events: events ? [...new Set(events)] : null,
    deltas,
    model: response.model,
  };
}

async function responsesTools(s) {
  const tools = [{ type: 'function', name: TOOL.name, description: TOOL.description, parameters: TOOL.parameters, strict: false }];
  const input = [{ role: 'user', content: prompt(s) }];
  const first = await responsesTurn(s, input, tools);
  const calls = first.response.output.filter((i) => i.type === 'function_call');
  if (calls.length !== 1) throw new Error(`expected one function_call, got ${JSON.stringify(first.response.output)}`);
  const call = calls[0];
  input.push(...first.response.output);
  input.push({ type: 'function_call_output', call_id: call.call_id, output: runTool(JSON.parse(call.arguments)) });
  const second = await responsesTurn(s, input, tools);
  return {
    tool_call: { id: call.call_id, name: call.name, arguments: JSON.parse(call.arguments) },
    first_finish: first.response.status,
    first_events: first.events ? [...new Set(first.events)] : null,
    text: second.response.output_text,
    finish: second.response.status,
    usage: second.response.usage,
  };
}

await main({ chat, chat_tools: chatTools, responses, responses_tools: responsesTools });
