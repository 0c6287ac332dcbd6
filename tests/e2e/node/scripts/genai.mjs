// The npm `@google/genai` SDK (Gemini API): generateContent, plain and streamed, and a function
// calling round trip. It talks to {base}/v1/models/... (the SDK's default API version) unless
// the scenario names `api_version`. See common.mjs for the calling convention.
import { GoogleGenAI } from '@google/genai';
import { TOOL, main, prompt, runTool } from './common.mjs';

function client(s) {
  return new GoogleGenAI({
    apiKey: s.key,
    httpOptions: { baseUrl: s.base, timeout: 60_000, ...(s.api_version ? { apiVersion: s.api_version } : {}) },
  });
}

async function turn(s, contents, tools) {
  const ai = client(s);
  const request = {
    model: s.model,
    contents,
    config: { systemInstruction: 'You are terse.', maxOutputTokens: 200, ...(tools ? { tools } : {}) },
  };
  if (!s.stream) {
    const r = await ai.models.generateContent(request);
    return { parts: r.candidates?.[0]?.content?.parts ?? [], finish: r.candidates?.[0]?.finishReason, usage: r.usageMetadata, chunks: null, model: r.modelVersion };
  }
  const parts = [];
  let finish;
  let usage;
  let chunks = 0;
  let model;
  for await (const chunk of await ai.models.generateContentStream(request)) {
    const cand = chunk.candidates?.[0];
    const got = cand?.content?.parts ?? [];
    // Count the chunks that carry text: the stream must come through piece by piece.
    if (got.some((p) => typeof p.text === 'string' && p.text && !p.thought)) chunks += 1;
    parts.push(...got);
    finish = cand?.finishReason ?? finish;
    usage = chunk.usageMetadata ?? usage;
    model = chunk.modelVersion ?? model;
  }
  return { parts, finish, usage, chunks, model };
}

const text = (parts) => parts.filter((p) => typeof p.text === 'string' && !p.thought).map((p) => p.text).join('');

async function generate(s) {
  const r = await turn(s, [{ role: 'user', parts: [{ text: prompt(s) }] }]);
  return { text: text(r.parts), finish: r.finish, usage: r.usage, deltas: r.chunks, model: r.model };
}

async function generateTools(s) {
  const tools = [{ functionDeclarations: [{ name: TOOL.name, description: TOOL.description, parameters: TOOL.parameters }] }];
  const contents = [{ role: 'user', parts: [{ text: prompt(s) }] }];
  const first = await turn(s, contents, tools);
  const calls = first.parts.filter((p) => p.functionCall);
  if (calls.length !== 1) throw new Error(`expected one functionCall, got ${JSON.stringify(first.parts)}`);
  const call = calls[0].functionCall;
  contents.push({ role: 'model', parts: first.parts });
  contents.push({
    role: 'user',
    parts: [{ functionResponse: { name: call.name, ...(call.id ? { id: call.id } : {}), response: { output: runTool(call.args) } } }],
  });
  const second = await turn(s, contents, tools);
  return {
    tool_call: { id: call.id ?? null, name: call.name, arguments: call.args },
    first_finish: first.finish,
    text: text(second.parts),
    finish: second.finish,
    usage: second.usage,
  };
}

await main({ generate, generate_tools: generateTools });
