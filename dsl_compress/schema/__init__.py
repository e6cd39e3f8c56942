"""Which setting keys exist and which values they take (NNI 3.0 and the DSL's spellings); torch-free."""
