"""Training twinseek's embedders: losses, data builders, trainers, the GVE curriculum and mined negatives.

Public API (heavy modules import torch; import them directly):

* ``twinseek.embedders.losses``: ``InfoNCELoss``, ``CompositionalInfoNCELoss``, ``CachedInfoNCELoss``
* ``twinseek.embedders.data``: ``build_triplets``, ``twin_pairs``, ``LeakFilter``, sentence sources, JSONL I/O
* ``twinseek.embedders.trainer``: ``train_text``, ``train_twin``, ``retrieval_overrides``
* ``twinseek.embedders.curriculum``: ``ModalityPyramid``; ``twinseek.embedders.mining``: ``mine_hard_negatives``
* ``twinseek.embedders.cli``: ``train_app`` (``twinseek train ...``)
"""
