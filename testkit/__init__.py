"""What the tests and the benchmarks share, importable from both (the repository root is on the path:
pytest's ``pythonpath``, the bench scripts' own folder's parent): the contract-honouring stand-in models
(``contract_model``), the corpus of bad files (``corpus``) and the GUI tests' helpers (``gui``).
Not shipped: the package is not installed and the bundle never imports it."""
