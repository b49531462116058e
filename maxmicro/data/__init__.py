"""MA-52 data: video decoding, the TFDS build, and the grain input pipeline.

Modules: `video` (decode/encode mp4), `transforms` (sampling and augmentation),
`synthetic` (a fake MA-52 on disk), `ma52_layout` (the download's lists),
`build` (`prepare_ma52`), `records` (fast reading of the built records),
`pipeline` (train and eval iterators). Nothing is imported here, so that
`maxmicro.data.video` stays light for decode worker processes.
"""
