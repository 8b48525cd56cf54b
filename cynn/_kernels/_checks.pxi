# The size check of the kernels' def entry points, shared by every kernel module that
# includes this file.  The module sets _FAMILY, the kernel family its messages name,
# before the include.

def _check(bint ok, str what):
    """Raise ValueError("<family> kernel: inconsistent <what>") unless ``ok``."""
    if not ok:
        raise ValueError(f"{_FAMILY} kernel: inconsistent {what}")
