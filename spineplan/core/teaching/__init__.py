"""Teaching on a plan: the storyboard of a rehearsal, its playback, practice scoring,
teaching sets and presentation anonymising, one module each. Pure: no Qt, no VTK.

- ``plans``: a plan dict as teaching reads it (trajectory, checks);
- ``storyboard``: :func:`rehearsal_steps` (narration, tip, camera, layers, structures at risk);
- ``playback``: :func:`playback_frames` (steps interpolated into frames);
- ``scoring``: :func:`score_attempt` (a resident's plan against the reference);
- ``sets``: :func:`write_teaching_set` / :func:`read_teaching_set`, :func:`resident_view`;
- ``anonymise``: :func:`anonymise_for_presentation`.
"""

from .anonymise import *  # noqa: F401,F403
from .plans import *  # noqa: F401,F403
from .playback import *  # noqa: F401,F403
from .scoring import *  # noqa: F401,F403
from .sets import *  # noqa: F401,F403
from .storyboard import *  # noqa: F401,F403
from . import anonymise, plans, playback, scoring, sets, storyboard

__all__ = (anonymise.__all__ + plans.__all__ + playback.__all__ + scoring.__all__ + sets.__all__
           + storyboard.__all__)
