"""Multi-label temporal action detection on MMA-52: the numeric core.

`targets` assigns ground truth to the points of the detector's pyramid
(`maxmicro.models.detector`), `losses` scores its outputs against them, and
`postprocess` turns its scores into segments in seconds on the host.
`features` extracts the detector's input once, with the backbone `backbones`
opens (a recognition workdir or ImageNet weights), and `provenance` records
in a detector's workdir which features it was trained on.
"""
