"""Moved to `lab.train.lm`; this name keeps earlier imports working for one release."""

from lab.train.lm import *  # noqa: F401,F403
from lab.train.lm import (DTYPES, LMTrainConfig, TokenStream, autocast, evaluate_text, lr_at,  # noqa: F401
                          resolve_device, stream_batch, train_lm, train_steps)
