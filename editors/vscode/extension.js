'use strict';
// The VS Code client of dsl-compress: starts `dsl-compress lsp` over stdio for .rules files
// and restarts it when its settings change. Plain JavaScript, so there is nothing to build.

const vscode = require('vscode');
const { LanguageClient, TransportKind } = require('vscode-languageclient/node');

const LANGUAGE_ID = 'dsl-rules';
const SECTION = 'dslCompress';
const INSTALL_HINT =
  "Install dsl-compress with its lsp extra (`pip install 'dsl-compress[lsp]'`, or " +
  "`pip install '.[lsp]'` in its checkout), or point the setting dslCompress.serverCommand " +
  'at the dsl-compress of the environment that has it.';

let client = null;

// The command line from the settings; the defaults repeat package.json's for a missing value.
function serverCommandLine() {
  const settings = vscode.workspace.getConfiguration(SECTION);
  return {
    command: settings.get('serverCommand', 'dsl-compress'),
    args: settings.get('serverArgs', ['lsp']),
  };
}

function createClient() {
  const { command, args } = serverCommandLine();
  const folder = vscode.workspace.workspaceFolders && vscode.workspace.workspaceFolders[0];
  const executable = {
    command,
    args,
    transport: TransportKind.stdio,
    options: folder ? { cwd: folder.uri.fsPath } : {},
  };
  const clientOptions = {
    documentSelector: [
      { scheme: 'file', language: LANGUAGE_ID },
      { scheme: 'untitled', language: LANGUAGE_ID },
    ],
  };
  return new LanguageClient(SECTION, 'dsl-compress', executable, clientOptions);
}

async function startClient() {
  client = createClient();
  try {
    await client.start();
  } catch (error) {
    const { command, args } = serverCommandLine();
    const message = error && error.message ? error.message : String(error);
    vscode.window.showErrorMessage(
      `dsl-compress: could not start the language server \`${[command, ...args].join(' ')}\`: ` +
        `${message}. ${INSTALL_HINT}`,
    );
  }
}

async function stopClient() {
  const running = client;
  client = null;
  if (running) await running.stop().catch(() => undefined);
}

async function restartClient() {
  await stopClient();
  await startClient();
}

async function activate(context) {
  context.subscriptions.push(
    vscode.commands.registerCommand(`${SECTION}.restartServer`, restartClient),
    vscode.workspace.onDidChangeConfiguration((event) => {
      if (event.affectsConfiguration(SECTION)) restartClient();
    }),
  );
  await startClient();
}

function deactivate() {
  return stopClient();
}

module.exports = { activate, deactivate };
