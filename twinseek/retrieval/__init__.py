"""Retrieval: from a query's sub-queries to a ranked candidate list.

- :mod:`~twinseek.retrieval.vectors`: the faiss facade; :mod:`~twinseek.retrieval.catalogue`: store-backed
  catalogues on it; :mod:`~twinseek.retrieval.components`: the twin-component catalogue;
- :mod:`~twinseek.retrieval.encoders`: text encoders of components and queries;
- :mod:`~twinseek.retrieval.decompose`: the query decomposer (an LLM, or rules) and its cache;
- :mod:`~twinseek.retrieval.dense`, :mod:`~twinseek.retrieval.compositional`: the two retrievers;
  :mod:`~twinseek.retrieval.fusion`: fusing their rankings; :mod:`~twinseek.retrieval.stages`: the retrieve stage;
- :mod:`~twinseek.retrieval.ecr`: embedding-centric reasoning texts; :mod:`~twinseek.retrieval.rerank`: rerankers.

Only :mod:`~twinseek.retrieval.decompose` and :mod:`~twinseek.retrieval.rerank` talk to an LLM, through the
:class:`~twinseek.llm.base.ChatModel` interface.
"""
