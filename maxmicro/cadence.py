"""Which steps of a run log, evaluate and save."""

import dataclasses


@dataclasses.dataclass(frozen=True)
class Cadence:
  """Which steps log, evaluate and save."""
  first_step: int
  last_step: int
  log_every: int
  eval_every: int  # 0: at the end only.
  save_every: int

  def logs(self, step):
    return (step % self.log_every == 0 or step == self.last_step or
            step == self.first_step)

  def evaluates(self, step):
    return step == self.last_step or bool(
        self.eval_every and step % self.eval_every == 0)

  def saves(self, step):
    return self.evaluates(step) or step % self.save_every == 0

  @classmethod
  def of(cls, train_config, *, start_step, total_steps, steps_per_epoch):
    """From `config.train`: evaluations every `eval_every_epochs`; saves
    every `checkpoint_every_steps`, None meaning once per epoch (of the
    data this run trains on, known only now)."""
    return cls(first_step=start_step + 1, last_step=total_steps,
               log_every=train_config.log_every_steps,
               eval_every=int(round((train_config.eval_every_epochs or 0) *
                                    steps_per_epoch)),
               save_every=(train_config.checkpoint_every_steps or
                           steps_per_epoch))
