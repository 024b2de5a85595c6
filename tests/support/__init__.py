"""Scaffolding shared by the tests (not tests themselves): synthetic clips, the scripted LLM server, tiny models,
small stores and agents. ``tests/`` is on ``sys.path`` (pytest's ``pythonpath``), so a test imports
``from support.synthetic import Scene``; no test module imports another."""
