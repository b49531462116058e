"""The MA-52 TFDS builder; see ma52.py."""

from tfds_builders.ma52.ma52 import Ma52
from tfds_builders.ma52.ma52 import Ma52Config

__all__ = ['Ma52', 'Ma52Config']
