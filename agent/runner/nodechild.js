// The Node.js query kernel's child process: runs each snippet in one global context, so
// variables, functions and classes persist between runs (the Python kernel's pychild.py
// plays the same part). Started by the runner as `node nodechild.js FD`; FD is a socket
// carrying the runner's framing (4-byte big-endian length, UTF-8 JSON):
//   runner -> child  {"op": "exec", "code"}          {"op": "complete", "req_id", "code"}
//   child -> runner  {"op": "done"}                  {"op": "completion", "req_id", "items"}
// The program's output goes to stdout/stderr (pipes to the runner), not over FD.
'use strict';

const net = require('net');
const path = require('path');
const vm = require('vm');
const { createRequire } = require('module');

const channel = new net.Socket({ fd: Number(process.argv[2]), readable: true, writable: true });
// Snippets run in the global scope, where Node's module-level helpers do not exist.
globalThis.require = createRequire(path.join(process.cwd(), '[snippet]'));

// An error thrown later (a timer, a rejected promise nobody awaited) belongs on stderr,
// not to the death of the kernel and its state.
const report = (error) => {
  process.stderr.write(`${error && error.stack ? error.stack : String(error)}\n`);
};
process.on('uncaughtException', report);
process.on('unhandledRejection', report);
// The runner's interrupt: breakOnSigint stops a running snippet; otherwise ignore it.
process.on('SIGINT', () => {});
// Nothing to do when the runner goes away but to go too.
channel.on('close', () => process.exit(0));
channel.on('error', () => process.exit(0));

function send(message) {
  const body = Buffer.from(JSON.stringify(message), 'utf8');
  const head = Buffer.alloc(4);
  head.writeUInt32BE(body.length, 0);
  channel.write(Buffer.concat([head, body]));
}

const KEYWORDS = (
  'async await break case catch class const continue debugger default delete do else ' +
  'export extends false finally for function if import in instanceof let new null return ' +
  'static super switch this throw true try typeof undefined var void while yield'
).split(' ');

function names(object) {
  const found = new Set();
  for (let o = object; o !== null && o !== undefined; o = Object.getPrototypeOf(o)) {
    for (const name of Object.getOwnPropertyNames(o)) found.add(name);
  }
  return [...found];
}

function complete(code) {
  // `a.b.pre` lists the properties of a.b (evaluated: a plain property path only);
  // a bare `pre` lists globals and keywords.
  const member = /([A-Za-z_$][\w$]*(?:\.[A-Za-z_$][\w$]*)*)\.([\w$]*)$/.exec(code);
  if (member) {
    let target;
    try {
      target = vm.runInThisContext(member[1]);
    } catch (error) {
      return [];
    }
    return names(Object(target))
      .filter((name) => name.startsWith(member[2]) && /^[A-Za-z_$][\w$]*$/.test(name))
      .sort()
      .map((name) => `${member[1]}.${name}`);
  }
  const word = /[A-Za-z_$][\w$]*$/.exec(code);
  if (!word) return [];
  const all = new Set([...names(globalThis), ...KEYWORDS, ...[...declared].filter(defined)]);
  return [...all].filter((name) => name.startsWith(word[0]) && name !== word[0]).sort();
}

// Top-level let/const/class live in the context's lexical scope, not on globalThis:
// names a snippet declared are remembered for completion (offered while defined).
const declared = new Set();
const DECLARATION = /\b(?:let|const|var|class|function\*?)\s+([A-Za-z_$][\w$]*)/g;

function defined(name) {
  try {
    return vm.runInThisContext(`typeof ${name}`) !== 'undefined';
  } catch (error) {
    return false; // not yet initialised
  }
}

async function handle(message) {
  if (message.op === 'exec') {
    for (const match of String(message.code).matchAll(DECLARATION)) declared.add(match[1]);
    try {
      const result = vm.runInThisContext(String(message.code), {
        filename: 'snippet.js',
        breakOnSigint: true,
      });
      // A snippet that evaluates to a promise (an async IIFE...) is done when it settles.
      if (result && typeof result.then === 'function') await result;
    } catch (error) {
      report(error);
    }
    send({ op: 'done' });
  } else if (message.op === 'complete') {
    let items = [];
    try {
      items = complete(String(message.code));
    } catch (error) {
      items = [];
    }
    send({ op: 'completion', req_id: message.req_id, items: items.slice(0, 200) });
  } else if (message.op === 'environ') {
    // A warm pool's kernel, claimed: the session's environment from now on.
    for (const [name, value] of Object.entries(message.environ || {})) {
      process.env[name] = String(value);
    }
  }
}

// Messages are handled one at a time, in order.
let buffer = Buffer.alloc(0);
let chain = Promise.resolve();
channel.on('data', (chunk) => {
  buffer = Buffer.concat([buffer, chunk]);
  while (buffer.length >= 4) {
    const size = buffer.readUInt32BE(0);
    if (buffer.length < 4 + size) break;
    const message = JSON.parse(buffer.subarray(4, 4 + size).toString('utf8'));
    buffer = buffer.subarray(4 + size);
    chain = chain.then(() => handle(message));
  }
});
