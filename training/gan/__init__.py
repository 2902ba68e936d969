"""The learned aging network trained from the prototype teacher (issue 14; DESIGN.md, "The second
design of the aging model"): ``nets`` (the generator and the critic), ``losses`` (one function per
loss), ``pairs`` (the teacher making training pairs on the fly), ``loop`` (training, resume points),
``export`` (the "aging2" checkpoint kind for training/export.py's registry)."""
