"""Search spaces: what an architecture is, its graph form, canonical key and string form."""

from nag.spaces.base import SearchSpace
from nag.spaces.cell import CellSpace
from nag.spaces.macro import MacroSpace
from nag.spaces.mbv3 import MBV3Space
from nag.spaces.nb101 import NB101Space
from nag.spaces.nb201 import NB201Space
from nag.spaces.nbgraph import NBGraphSpace
from nag.spaces.registry import build_space, register_space, resolve_space

for _space in (CellSpace, MBV3Space, MacroSpace, NB101Space, NB201Space, NBGraphSpace):
    register_space(_space)

__all__ = [
    "CellSpace",
    "MBV3Space",
    "MacroSpace",
    "NB101Space",
    "NB201Space",
    "NBGraphSpace",
    "SearchSpace",
    "build_space",
    "register_space",
    "resolve_space",
]
