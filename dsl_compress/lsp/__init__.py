"""The language server (`dsl-compress lsp`): lint's diagnostics as you type, hover, completion,
definitions, symbols and formatting for .rules files, over stdio on pygls (an optional extra).

Every answer comes from the stages below it (the parser, the key table, lint, explain CODE);
nothing here decides what a rule means.
"""
