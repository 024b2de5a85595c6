"""Training twinseek's embedders on sentence-transformers: data builders, the compositional loss, trainers, the
GVE curriculum and mined negatives. An optional extra (``twinseek[train]``): nothing of it is imported by search.

Public API (heavy modules import torch and sentence-transformers; import them directly):

* ``twinseek.embedders.data``: ``build_triplets``, ``twin_pairs``, ``LeakFilter``, sentence sources, JSONL I/O
* ``twinseek.embedders.losses``: ``CompositionalInfoNCELoss`` (a sentence-transformers loss)
* ``twinseek.embedders.trainer``: ``train_text``, ``train_twin``, ``retrieval_overrides``
* ``twinseek.embedders.curriculum``: ``ModalityPyramid`` and the batch samplers; ``twinseek.embedders.mining``:
  ``mine_twin_negatives``
* ``twinseek.embedders.cli``: ``train_app`` (``twinseek train ...``)
"""
