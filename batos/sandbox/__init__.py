"""The sandbox: installed methods run in locked-down worker processes.

``pool`` is the kernel's side (warm workers, the call protocol, replacing a
worker that dies or runs over); ``worker`` is the process; ``lockdown`` its
OS limits (rlimits, no file descriptors, a seccomp filter).  The language
layer is ``batos.restricted``; values cross as ``batos.plain`` data.
"""
