"""Which keys exist and which values they take, in NNI 3.0's and the language's spellings: the key
table (keys) and the key sets derived from it (key_sets), the value checks (checks, key_checks,
granularity), config_list validation (config_list) and the settings registry (registry).
Imports only the root modules (diagnostics, codes, vocab); torch-free."""
