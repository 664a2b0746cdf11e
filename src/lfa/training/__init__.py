"""Training one job: the loop (:mod:`~lfa.training.train`), its resume state, the device, GPU slots and the
predictions it writes."""
