"""Which features a detector was trained on, recorded in its workdir.

A features directory can be extracted again, by another backbone, checkpoint
step or stride, after a detector was trained on it; the detector's numbers
mean nothing on other features. So training writes the identity of its
features (`backbones.Backbone.identity`: backbone source and model,
preprocessing, dataset, stride) to `<workdir>/features_identity.json`, and
resuming, eval, submit (which read a features directory) and predict (which
computes features with the backbone) refuse features of another identity.
Workdirs trained before the record existed have none; they are not checked.
"""

import json
import os

import jax

from maxmicro.data import detection_pipeline

RECORD_NAME = 'features_identity.json'


def record_path(workdir):
  return os.path.join(workdir, RECORD_NAME)


def read(workdir):
  """The identity the workdir's detector was trained on, or None."""
  path = record_path(workdir)
  if not os.path.exists(path):
    return None
  with open(path) as file:
    return json.load(file)['identity']


def record(workdir, identity):
  """At the start of training: writes the record (process 0), or refuses
  to resume on features other than those the checkpoints were trained on.

  Raises:
    detection_pipeline.FeaturesError: the workdir records other features.
  """
  if read(workdir) is not None:
    check(workdir, identity, what='the features this run reads',
          remedy='Train in a new workdir, or extract the recorded '
          f'features again; delete {record_path(workdir)} only if the '
          'workdir holds no checkpoint.')
    return
  if jax.process_index() != 0:
    return
  os.makedirs(workdir, exist_ok=True)
  temporary = record_path(workdir) + '.tmp'
  with open(temporary, 'w') as file:
    json.dump({'identity': identity}, file, indent=1, sort_keys=True)
  os.replace(temporary, record_path(workdir))


def check(workdir, identity, *, what, remedy, ignore=()):
  """Refuses `identity` unless it is the one recorded in `workdir`.

  Args:
    workdir: a detection workdir; without a record, nothing is checked.
    identity: the identity of the features about to be used.
    what: those features, for the message.
    remedy: what the user can do, for the message.
    ignore: identity fields that do not matter here.

  Returns:
    Whether there was a record to check against.

  Raises:
    detection_pipeline.FeaturesError: naming every differing field.
  """
  recorded = read(workdir)
  if recorded is None:
    return False
  differing = detection_pipeline.identity_differences(recorded, identity,
                                                      ignore)
  if differing:
    raise detection_pipeline.FeaturesError(
        f'the detector in {workdir} was trained on other features than '
        f'{what}: it was trained with ' + '; '.join(differing) + '. The '
        'detector only means something on the features it learnt from. '
        + remedy)
  return True
