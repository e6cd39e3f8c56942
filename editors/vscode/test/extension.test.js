'use strict';
// Runs extension.js against stand-ins for the `vscode` module and vscode-languageclient (no
// VS Code needed) and checks what it asks for: the server's command line from the settings
// package.json declares (with the same defaults), stdio, the dsl-rules language, a restart
// when the settings change, and an install hint when the server cannot start. Exits 1 on
// any failure. Run: `node test/extension.test.js` in editors/vscode.

const assert = require('assert');
const fs = require('fs');
const Module = require('module');
const path = require('path');

const EXTENSION = path.resolve(__dirname, '..');
const MANIFEST = JSON.parse(fs.readFileSync(path.join(EXTENSION, 'package.json'), 'utf8'));
const STDIO = 'stdio-transport';

// What the stand-ins saw, reset by each check.
function freshWorld(settings, startError) {
  const world = { settings, clients: [], errors: [], commands: new Map(), listeners: [], reads: [] };
  world.vscode = {
    workspace: {
      workspaceFolders: [{ uri: { fsPath: '/project' } }],
      getConfiguration(section) {
        return {
          get(key, fallback) {
            world.reads.push({ key: `${section}.${key}`, fallback });
            const value = world.settings[`${section}.${key}`];
            return value === undefined ? fallback : value;
          },
        };
      },
      onDidChangeConfiguration(listener) {
        world.listeners.push(listener);
        return { dispose() {} };
      },
    },
    commands: {
      registerCommand(name, handler) {
        world.commands.set(name, handler);
        return { dispose() {} };
      },
    },
    window: {
      showErrorMessage(message) {
        world.errors.push(message);
      },
    },
  };
  class LanguageClient {
    constructor(id, name, serverOptions, clientOptions) {
      Object.assign(this, { id, name, serverOptions, clientOptions, started: false, stopped: false });
      world.clients.push(this);
    }
    async start() {
      if (startError) throw startError;
      this.started = true;
    }
    async stop() {
      this.stopped = true;
    }
  }
  world.languageclient = { LanguageClient, TransportKind: { stdio: STDIO } };
  return world;
}

// Loads a fresh copy of extension.js that sees the stand-ins of `world`.
function loadExtension(world) {
  const entry = path.join(EXTENSION, MANIFEST.main);
  const originalLoad = Module._load;
  Module._load = function load(request, ...rest) {
    if (request === 'vscode') return world.vscode;
    if (request === 'vscode-languageclient/node') return world.languageclient;
    return originalLoad.call(this, request, ...rest);
  };
  try {
    delete require.cache[require.resolve(entry)];
    return require(entry);
  } finally {
    Module._load = originalLoad;
  }
}

async function activated(settings = {}, startError = null) {
  const world = freshWorld(settings, startError);
  const extension = loadExtension(world);
  const context = { subscriptions: [] };
  await extension.activate(context);
  return { world, extension, context };
}

const checks = {
  'package.json declares the language, its grammar and files, and activates on it': () => {
    const [language] = MANIFEST.contributes.languages;
    assert.strictEqual(language.id, 'dsl-rules');
    assert.deepStrictEqual(language.extensions, ['.rules']);
    assert.ok(MANIFEST.activationEvents.includes('onLanguage:dsl-rules'));
    const [grammar] = MANIFEST.contributes.grammars;
    assert.strictEqual(grammar.language, language.id);
    for (const file of [MANIFEST.main, language.configuration, grammar.path]) {
      assert.ok(fs.existsSync(path.join(EXTENSION, file)), `${file} is missing`);
    }
    const scopeName = JSON.parse(fs.readFileSync(path.join(EXTENSION, grammar.path), 'utf8')).scopeName;
    assert.strictEqual(grammar.scopeName, scopeName);
    assert.ok(MANIFEST.dependencies['vscode-languageclient']);
  },
  'by default it starts `dsl-compress lsp` over stdio for dsl-rules documents': async () => {
    const { world } = await activated();
    assert.strictEqual(world.clients.length, 1);
    const [client] = world.clients;
    assert.ok(client.started);
    assert.strictEqual(client.serverOptions.command, 'dsl-compress');
    assert.deepStrictEqual(client.serverOptions.args, ['lsp']);
    assert.strictEqual(client.serverOptions.transport, STDIO);
    assert.strictEqual(client.serverOptions.options.cwd, '/project');
    const languages = client.clientOptions.documentSelector.map((selector) => selector.language);
    assert.deepStrictEqual([...new Set(languages)], ['dsl-rules']);
  },
  'every setting it reads is declared in package.json, with the same default': async () => {
    const { world } = await activated();
    const declared = MANIFEST.contributes.configuration.properties;
    assert.ok(world.reads.length > 0);
    for (const { key, fallback } of world.reads) {
      assert.ok(key in declared, `${key} is read but not declared`);
      assert.deepStrictEqual(fallback, declared[key].default, `${key}: default differs`);
    }
    assert.deepStrictEqual(Object.keys(declared).sort(), [...new Set(world.reads.map((r) => r.key))].sort());
  },
  'the configured command and arguments are passed through': async () => {
    const settings = {
      'dslCompress.serverCommand': '/venv/bin/python',
      'dslCompress.serverArgs': ['-m', 'dsl_compress', 'lsp', '--manifest', 'manifest.json'],
    };
    const { world } = await activated(settings);
    assert.strictEqual(world.clients[0].serverOptions.command, '/venv/bin/python');
    assert.deepStrictEqual(world.clients[0].serverOptions.args, settings['dslCompress.serverArgs']);
  },
  'a change of its settings restarts the server with the new command line': async () => {
    const { world } = await activated();
    world.settings['dslCompress.serverArgs'] = ['lsp', '--manifest', 'm.json'];
    for (const listener of world.listeners) await listener({ affectsConfiguration: (s) => s === 'editor' });
    assert.strictEqual(world.clients.length, 1, 'an unrelated setting restarted the server');
    for (const listener of world.listeners) await listener({ affectsConfiguration: (s) => s === 'dslCompress' });
    await new Promise((resolve) => setImmediate(resolve));
    assert.strictEqual(world.clients.length, 2);
    assert.ok(world.clients[0].stopped);
    assert.ok(world.clients[1].started);
    assert.deepStrictEqual(world.clients[1].serverOptions.args, ['lsp', '--manifest', 'm.json']);
  },
  'the restart command declared in package.json restarts the server': async () => {
    const { world } = await activated();
    const declared = MANIFEST.contributes.commands.map((c) => c.command);
    assert.deepStrictEqual([...world.commands.keys()], declared);
    await world.commands.get(declared[0])();
    assert.strictEqual(world.clients.length, 2);
    assert.ok(world.clients[0].stopped && world.clients[1].started);
  },
  'a server that cannot start gives an error naming the command and how to install it': async () => {
    const { world } = await activated({}, new Error('spawn dsl-compress ENOENT'));
    assert.strictEqual(world.errors.length, 1);
    assert.match(world.errors[0], /`dsl-compress lsp`/);
    assert.match(world.errors[0], /ENOENT/);
    assert.match(world.errors[0], /pip install 'dsl-compress\[lsp\]'/);
  },
  'deactivate stops the server': async () => {
    const { world, extension } = await activated();
    await extension.deactivate();
    assert.ok(world.clients[0].stopped);
  },
};

async function main() {
  let failures = 0;
  for (const [name, check] of Object.entries(checks)) {
    try {
      await check();
    } catch (error) {
      failures += 1;
      console.error(`FAIL ${name}: ${error.message}`);
    }
  }
  console.log(`${Object.keys(checks).length} extension checks; ${failures} failures`);
  process.exitCode = failures ? 1 : 0;
}

main();
