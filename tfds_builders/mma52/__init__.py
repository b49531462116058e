"""The MMA-52 TFDS builder; see mma52.py."""

from tfds_builders.mma52.mma52 import Mma52
from tfds_builders.mma52.mma52 import Mma52Config

__all__ = ['Mma52', 'Mma52Config']
