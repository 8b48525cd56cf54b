"""cynn's layers, one file per family."""
from . import activation, conv, dropout, linear, normalization, pooling, reshape
from .activation import *  # noqa: F401,F403
from .conv import *  # noqa: F401,F403
from .dropout import *  # noqa: F401,F403
from .linear import *  # noqa: F401,F403
from .normalization import *  # noqa: F401,F403
from .pooling import *  # noqa: F401,F403
from .reshape import *  # noqa: F401,F403

# Each family file lists its public layers once, in its own __all__.
__all__ = [name for family in (activation, conv, dropout, linear, normalization, pooling, reshape)
           for name in family.__all__]
