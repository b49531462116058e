"""The MA-52 taxonomy: 52 micro-actions in 7 body parts.

Index order is the official action id order (0-51) of the MA-52 list files.
"""

import numpy as np

# (action id order) name, code, body-part id.
_ACTIONS = (
    ('shaking body', 'A1', 0),
    ('sitting straightly', 'A3', 0),
    ('shrugging', 'A4', 0),
    ('turning around', 'A2', 0),
    ('rising up', 'A5', 0),
    ('bowing head', 'B5', 1),
    ('head up', 'B6', 1),
    ('tilting head', 'B4', 1),
    ('turning head', 'B3', 1),
    ('nodding', 'B1', 1),
    ('shaking head', 'B2', 1),
    ('scratching arms', 'C6', 2),
    ('playing objects', 'C8', 2),
    ('putting hands together', 'C9', 2),
    ('rubbing hands', 'C13', 2),
    ('pointing oneself', 'C11', 2),
    ('clenching fist', 'C12', 2),
    ('stretching arms', 'C4', 2),
    ('retracting arms', 'C10', 2),
    ('waving', 'C5', 2),
    ('spreading hands', 'C7', 2),
    ('hands touching fingers', 'C3', 2),
    ('other finger movements', 'C2', 2),
    ('illustrative gestures', 'C1', 2),
    ('shaking legs', 'D3', 3),
    ('curling legs', 'D7', 3),
    ('spread legs', 'D6', 3),
    ('closing legs', 'D5', 3),
    ('crossing legs', 'D8', 3),
    ('stretching feet', 'D4', 3),
    ('retracting feet', 'D2', 3),
    ('tiptoe', 'D1', 3),
    ('scratching or touching neck', 'E2', 4),
    ('scratching or touching chest', 'E1', 4),
    ('scratching or touching back', 'E3', 4),
    ('scratching or touching shoulder', 'E6', 4),
    ('arms akimbo', 'E4', 4),
    ('crossing arms', 'E5', 4),
    ('playing or tidying hair', 'F3', 5),
    ('scratching or touching hindbrain', 'F4', 5),
    ('scratching or touching forehead', 'F7', 5),
    ('scratching or touching face', 'F2', 5),
    ('rubbing eyes', 'F6', 5),
    ('touching nose', 'F1', 5),
    ('touching ears', 'F8', 5),
    ('covering face', 'F10', 5),
    ('covering mouth', 'F9', 5),
    ('pushing glasses', 'F5', 5),
    ('patting legs', 'G2', 6),
    ('touching legs', 'G1', 6),
    ('scratching legs', 'G3', 6),
    ('scratching feet', 'G4', 6),
)

ACTION_NAMES = tuple(name for name, _, _ in _ACTIONS)
ACTION_CODES = tuple(code for _, code, _ in _ACTIONS)
BODY_NAMES = ('body', 'head', 'upper limb', 'lower limb', 'body-hand',
              'head-hand', 'leg-hand')
ACTION_TO_BODY = np.array([body for _, _, body in _ACTIONS], dtype=np.int32)
ACTION_TO_BODY.setflags(write=False)

NUM_ACTIONS = len(ACTION_NAMES)  # 52
NUM_BODY_PARTS = len(BODY_NAMES)  # 7
