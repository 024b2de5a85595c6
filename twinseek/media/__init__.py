"""Media: decoding videos into sampled frames (:mod:`~twinseek.media.decode`), and mask files, mask geometry,
key frames and overlays (:mod:`~twinseek.media.masks`). Every other package reads frames and masks through here."""
