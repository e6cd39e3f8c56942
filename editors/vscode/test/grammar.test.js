'use strict';
// Tokenizes every .rules file of the repository with the extension's TextMate grammar, as
// VS Code does (vscode-textmate + vscode-oniguruma), and checks concrete scopes on concrete
// tokens, that every keyword of grammar/rules.lark is highlighted as one, and that the
// grammar's state returns to the root wherever a statement ends. Exits 1 on any failure.
// Run: `npm test` (or `node test/grammar.test.js`) in editors/vscode after `npm install`.

const fs = require('fs');
const path = require('path');
const textmate = require('vscode-textmate');
const oniguruma = require('vscode-oniguruma');

const EXTENSION = path.resolve(__dirname, '..');
const REPO = path.resolve(EXTENSION, '..', '..');
const GRAMMAR = path.join(EXTENSION, 'syntaxes', 'rules.tmLanguage.json');
const LARK = path.join(REPO, 'grammar', 'rules.lark');
const EXAMPLE_FOLDERS = ['rules', path.join('tests', 'data')];

// [file, a text on the line, the token, which occurrence of it on that line, a scope it has]
const EXPECTED_SCOPES = [
  ['rules/resnet_channels.rules', 'let ratio', 'let', 0, 'keyword.control.statement.rules'],
  ['rules/resnet_channels.rules', 'let ratio', 'ratio', 0, 'entity.name.variable.let.rules'],
  ['rules/resnet_channels.rules', 'let ratio', '0.5', 0, 'constant.numeric.rules'],
  ['rules/resnet_channels.rules', 'prune layer', 'prune', 0, 'keyword.control.mode.rules'],
  ['rules/resnet_channels.rules', 'prune layer', 'layer', 0, 'variable.other.module.rules'],
  ['rules/resnet_channels.rules', 'prune layer', '*', 0, 'keyword.operator.wildcard.rules'],
  ['rules/resnet_channels.rules', 'prune layer', '.', 0, 'punctuation.accessor.rules'],
  ['rules/resnet_channels.rules', 'prune layer', 'weight', 0, 'variable.other.property.target.rules'],
  ['rules/resnet_channels.rules', 'prune layer', 'sparse_ratio', 0, 'entity.other.attribute-name.key.rules'],
  ['rules/resnet_channels.rules', 'prune layer', '=', 0, 'keyword.operator.assignment.rules'],
  ['rules/resnet_channels.rules', 'prune layer', 'ratio', 0, 'variable.other.value.rules'],
  ['rules/resnet_channels.rules', 'prune layer', 'out_channel', 0, 'variable.other.value.rules'],
  ['rules/resnet_channels.rules', 'align layer*.*.bn1.weight', 'align', 0, 'keyword.control.statement.rules'],
  ['rules/resnet_channels.rules', 'align layer*.*.bn1.weight', 'with', 0, 'keyword.control.clause.rules'],
  ['rules/resnet_channels.rules', 'align layer*.*.bn1.weight', 'bn1', 0, 'variable.other.module.rules'],
  ['rules/resnet_channels.rules', 'align layer*.*.bn1.weight', 'dims', 0, 'entity.other.attribute-name.key.rules'],
  ['rules/resnet_channels.rules', 'align layer*.*.bn1.weight', '[', 0, 'punctuation.section.brackets.begin.rules'],
  ['rules/resnet_channels.rules', 'align layer*.*.bn1.weight', '0', 0, 'constant.numeric.rules'],
  ['rules/resnet_channels.rules', '# Channel pruning', '#', 0, 'comment.line.number-sign.rules'],
  ['rules/global_backbone.rules', 'prune Conv2d', 'Conv2d', 0, 'entity.name.type.module.rules'],
  ['rules/global_backbone.rules', 'prune Conv2d', 'weight', 0, 'variable.other.property.target.rules'],
  ['rules/global_backbone.rules', 'prune Conv2d', 'in', 0, 'keyword.control.clause.rules'],
  ['rules/global_backbone.rules', 'prune Conv2d', '**', 0, 'keyword.operator.wildcard.rules'],
  ['rules/global_backbone.rules', 'prune Conv2d', 'backbone', 0, 'variable.other.value.rules'],
  ['rules/global_backbone.rules', 'exclude **.shortcut', 'exclude', 0, 'keyword.control.statement.rules'],
  ['rules/global_backbone.rules', 'exclude **.shortcut', 'shortcut', 0, 'variable.other.module.rules'],
  ['rules/global_backbone.rules', 'exclude **.shortcut', '#', 0, 'comment.line.number-sign.rules'],
  ['rules/custom_module.rules', 'register prune', 'register', 0, 'keyword.control.statement.rules'],
  ['rules/custom_module.rules', 'register prune', 'prune', 0, 'keyword.control.mode.rules'],
  ['rules/custom_module.rules', 'register prune', 'CustomizedModule', 0, 'entity.name.type.module.rules'],
  ['rules/custom_module.rules', 'register prune', '{', 0, 'punctuation.section.block.begin.rules'],
  ['rules/custom_module.rules', '_output_ align=p1', '_output_', 0, 'variable.other.property.target.rules'],
  ['rules/custom_module.rules', '_output_ align=p1', 'align', 0, 'entity.other.attribute-name.key.rules'],
  ['rules/custom_module.rules', '_output_ align=p1', 'p1', 0, 'variable.other.value.rules'],
  ['rules/custom_module.rules', '_output_ align=p1', '-1', 0, 'constant.numeric.rules'],
  ['rules/custom_module.rules', 'prune CustomizedModule.{p1,p2}', 'p2', 0, 'variable.other.property.target.rules'],
  ['rules/custom_module.rules', 'prune CustomizedModule.{p1,p2}', '{', 0, 'punctuation.section.braces.begin.rules'],
  ['tests/data/fmt/values.rules', 'let quote', '\\"', 0, 'constant.character.escape.rules'],
  ['tests/data/fmt/values.rules', 'let quote', 'say', 0, 'string.quoted.double.rules'],
  ['tests/data/fmt/values.rules', 'let flag', 'true', 0, 'constant.language.boolean.rules'],
  ['tests/data/fmt/values.rules', 'let nothing', 'none', 0, 'constant.language.null.rules'],
  ['tests/data/fmt/values.rules', 'let big', '1E6', 0, 'constant.numeric.rules'],
  ['tests/data/fmt/values.rules', 'let neg', '-3', 0, 'constant.numeric.rules'],
  ['tests/data/fmt/values.rules', 'let half', '.5', 0, 'constant.numeric.rules'],
  ['tests/data/fmt/values.rules', 'prune Conv2d', '-1.5e-3', 0, 'constant.numeric.rules'],
  ['tests/data/fmt/values.rules', 'fuse_names', '"', 0, 'punctuation.definition.string.begin.rules'],
  ['tests/data/fmt/values.rules', 'fuse_names', 'conv1', 0, 'string.quoted.double.rules'],
  ['tests/data/fmt/selectors.rules', 'prune re"layer', 're', 0, 'storage.type.string.regexp.rules'],
  ['tests/data/fmt/selectors.rules', 'prune re"layer', 'layer\\d+\\.conv\\d', 0, 'string.regexp.quoted.double.rules'],
  ['tests/data/fmt/selectors.rules', 'prune re"layer', 'weight', 0, 'variable.other.property.target.rules'],
  ['tests/data/fmt/selectors.rules', 'quantize re"quote', 'bias', 0, 'variable.other.property.target.rules'],
  ['tests/data/fmt/selectors.rules', 'except layer1.0', 'except', 0, 'keyword.control.clause.rules'],
  ['tests/data/fmt/selectors.rules', 'except layer1.0', ',', 0, 'punctuation.separator.comma.rules'],
  ['tests/data/fmt/selectors.rules', 'exclude classifier', 'from', 0, 'keyword.control.clause.rules'],
  ['tests/data/fmt/selectors.rules', 'exclude classifier', 'quantize', 0, 'keyword.control.mode.rules'],
  ['tests/data/fmt/selectors.rules', 'distill layer4', 'distill', 0, 'keyword.control.mode.rules'],
  ['tests/data/fmt/selectors.rules', 'distill layer4', '_output_', 0, 'variable.other.property.target.rules'],
  ['tests/data/fmt/selectors.rules', 'quantize Linear', '_input_1', 0, 'variable.other.property.target.rules'],
  ['tests/data/fmt/messy_spacing.rules', ';;', ';', 1, 'punctuation.terminator.statement.rules'],
  ['tests/data/fmt/messy_spacing.rules', 'prune fc.weight \\', '\\', 0, 'constant.character.escape.line-continuation.rules'],
  ['tests/data/fmt/messy_spacing.rules', 'granularity=out_channel', 'granularity', 0, 'entity.other.attribute-name.key.rules'],
  ['tests/data/compile_errors/missing_include.rules', 'include "', 'include', 0, 'keyword.control.statement.rules'],
  ['tests/data/compile_errors/missing_include.rules', 'include "', 'base/missing.rules', 0, 'string.quoted.double.rules'],
  ['tests/data/parse_errors/unterminated_string.rules', 'include', '"base.rules', 0, 'invalid.illegal.unterminated-string.rules'],
];

async function loadGrammar() {
  const wasm = fs.readFileSync(require.resolve('vscode-oniguruma/release/onig.wasm'));
  await oniguruma.loadWASM(wasm.buffer.slice(wasm.byteOffset, wasm.byteOffset + wasm.byteLength));
  const registry = new textmate.Registry({
    onigLib: Promise.resolve({
      createOnigScanner: (patterns) => new oniguruma.OnigScanner(patterns),
      createOnigString: (text) => new oniguruma.OnigString(text),
    }),
    loadGrammar: async () => textmate.parseRawGrammar(fs.readFileSync(GRAMMAR, 'utf8'), GRAMMAR),
  });
  return registry.loadGrammar('source.rules');
}

// The keywords of the language and the words that start a statement, read from the Lark
// grammar, so that a keyword added there and forgotten here fails this test.
function larkKeywords() {
  const text = fs.readFileSync(LARK, 'utf8');
  const terminals = new Map();
  for (const [, name, word] of text.matchAll(/^([A-Z_]+)(?:\.\d+)?\s*:\s*"([a-z]+)"\s*$/gm)) {
    terminals.set(name, word);
  }
  const rules = new Map();
  for (const [, name, body] of text.matchAll(/^([a-z_]+)\s*:\s*(.+)$/gm)) rules.set(name, body);
  const starters = new Set();
  for (const [name, body] of rules) {
    if (!name.endsWith('_stmt')) continue;
    // The first symbol: a terminal, a group of terminals written inline (PRUNE | QUANTIZE), or a rule.
    const group = /^\(([^)]*)\)/.exec(body.trim());
    const first = group ? group[1] : body.trim().split(/\s+/)[0];
    const symbols = group ? first.split(/[\s|]+/) : terminals.has(first) ? [first] : (rules.get(first) || '').split(/[\s|]+/);
    for (const symbol of symbols) if (terminals.has(symbol)) starters.add(terminals.get(symbol));
  }
  return { keywords: new Set(terminals.values()), starters };
}

function exampleFiles() {
  const found = [];
  const walk = (folder) => {
    for (const entry of fs.readdirSync(folder, { withFileTypes: true })) {
      const full = path.join(folder, entry.name);
      if (entry.isDirectory()) walk(full);
      else if (entry.name.endsWith('.rules')) found.push(full);
    }
  };
  for (const folder of EXAMPLE_FOLDERS) walk(path.join(REPO, folder));
  return found.sort();
}

// For each line, whether a statement is complete at its end: outside comments and strings
// every [ and { is closed, and no backslash continues the line. A line that starts with a
// statement keyword starts afresh, as the parser recovers from an unclosed [ or {.
function statementEndsAtLineEnds(lines, starters) {
  let depth = 0;
  return lines.map((line) => {
    const first = /^\s*([A-Za-z_]\w*)(?![\w.*{])/.exec(line);
    if (first && starters.has(first[1])) depth = 0;
    let i = 0;
    while (i < line.length && line[i] !== '#') {
      const c = line[i];
      if (c === '"') {
        i += 1;
        while (i < line.length && line[i] !== '"') i += line[i] === '\\' ? 2 : 1;
      } else if (c === '[' || c === '{') depth += 1;
      else if ((c === ']' || c === '}') && depth > 0) depth -= 1;
      i += 1;
    }
    const continued = i >= line.length && line.endsWith('\\');
    return depth === 0 && !continued;
  });
}

function tokenizeFile(grammar, file) {
  const lines = fs.readFileSync(file, 'utf8').split(/\r?\n/);
  let state = textmate.INITIAL;
  return lines.map((text) => {
    const result = grammar.tokenizeLine(text, state);
    state = result.ruleStack;
    const tokens = result.tokens.map((t) => ({
      text: text.slice(t.startIndex, t.endIndex),
      scopes: t.scopes,
    }));
    return { text, tokens, depth: state.depth };
  });
}

function checkStatementEnds(relative, lines, starters, failures) {
  const expected = statementEndsAtLineEnds(lines.map((l) => l.text), starters);
  lines.forEach((line, index) => {
    const atRoot = line.depth === 1;
    if (atRoot !== expected[index]) {
      const want = expected[index] ? 'back at the root' : 'inside an open statement';
      failures.push(`${relative}:${index + 1}: the grammar should be ${want} at the end of: ${line.text}`);
    }
  });
}

function checkExpectedScopes(tokenized, failures) {
  for (const [file, needle, tokenText, occurrence, scope] of EXPECTED_SCOPES) {
    const lines = tokenized.get(file);
    const line = lines && lines.find((l) => l.text.includes(needle));
    const where = `${file}: token ${JSON.stringify(tokenText)} on the line with ${JSON.stringify(needle)}`;
    if (!line) {
      failures.push(`${where}: no such line`);
      continue;
    }
    const matching = line.tokens.filter((t) => t.text.trim() === tokenText);
    const token = matching[occurrence];
    if (!token) failures.push(`${where}: no such token (tokens: ${line.tokens.map((t) => JSON.stringify(t.text)).join(' ')})`);
    else if (!token.scopes.includes(scope)) failures.push(`${where}: scopes ${token.scopes.join(' ')}, expected ${scope}`);
  }
}

function checkKeywordsHighlighted(tokenized, keywords, failures) {
  const highlighted = new Set();
  for (const lines of tokenized.values()) {
    for (const line of lines) {
      for (const token of line.tokens) {
        if (token.scopes.some((s) => s.startsWith('keyword.control.'))) highlighted.add(token.text.trim());
      }
    }
  }
  for (const keyword of keywords) {
    if (!highlighted.has(keyword)) failures.push(`keyword '${keyword}' of ${path.relative(REPO, LARK)} is never highlighted as a keyword in the example files`);
  }
}

async function main() {
  const grammar = await loadGrammar();
  const { keywords, starters } = larkKeywords();
  const failures = [];
  const tokenized = new Map();
  let lineCount = 0;
  for (const file of exampleFiles()) {
    const relative = path.relative(REPO, file).split(path.sep).join('/');
    const lines = tokenizeFile(grammar, file);
    tokenized.set(relative, lines);
    lineCount += lines.length;
    checkStatementEnds(relative, lines, starters, failures);
  }
  if (tokenized.size === 0) failures.push(`no .rules file found under ${EXAMPLE_FOLDERS.join(', ')}`);
  if (starters.size === 0) failures.push(`no statement keyword read from ${LARK}`);
  checkExpectedScopes(tokenized, failures);
  checkKeywordsHighlighted(tokenized, keywords, failures);
  for (const failure of failures) console.error(`FAIL ${failure}`);
  console.log(
    `${tokenized.size} files, ${lineCount} lines tokenized; ${EXPECTED_SCOPES.length} scope checks, ` +
      `${keywords.size} keywords; ${failures.length} failures`,
  );
  process.exitCode = failures.length ? 1 : 0;
}

main().catch((error) => {
  console.error(error);
  process.exitCode = 1;
});
