"""Formal proofs of the blocks with SymbiYosys (``yowasp-sby``) and Amaranth ``Assert``/``Assume``/
``Cover``.

Every proof is a *wrapper* component (this package) that instantiates a block unchanged and adds
the properties only when elaborated for ``platform == "formal"``; :mod:`.sby` turns the wrapper
into RTLIL and runs SymbiYosys on it; :mod:`.suite` lists the proofs (``make formal`` runs all,
``tests/test_formal.py`` a quick subset). See ``docs/verification.md``.
"""
