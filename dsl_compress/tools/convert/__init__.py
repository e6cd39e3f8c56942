"""`dsl-compress convert`: settings written for other tools (NNI config_lists, llm-compressor
recipes, ModelOpt quant_cfg) turned into .rules that select exactly what those tools select."""
