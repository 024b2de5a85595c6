"""The LLM runtime: one OpenAI-compatible client for every LLM twinseek talks to.

- :mod:`~twinseek.llm.client`: :class:`~twinseek.llm.client.LLMClient` and :func:`~twinseek.llm.client.open_llm`;
- :mod:`~twinseek.llm.base`: the errors, the message type and the :class:`~twinseek.llm.base.ChatModel` interface;
- :mod:`~twinseek.llm.deadline`: a search's deadline and the client bounded by it;
- :mod:`~twinseek.llm.cancel`: cancelling a search's requests;
- :mod:`~twinseek.llm.embedded` and :mod:`~twinseek.llm.server`: the embedded tier's model files and llama.cpp
  server process (:mod:`~twinseek.llm.serve` is that process's entry point).
"""
