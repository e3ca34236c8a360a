"""What the validation pool's forkserver imports when it starts, and only it (by name, with
``set_forkserver_preload``; ``serve`` itself never imports this module).

The forkserver is the process ``serve`` starts once, which forks every validation worker.
Here it asks to die with ``serve`` and has each worker die with it, so a ``kill -9`` of
``serve`` takes the whole pool down. Should ``serve`` die before the forkserver asks, the
forkserver exits by itself: no worker exists yet, so its "alive" pipe from ``serve`` is at
EOF. The resource tracker needs nothing: it exits at EOF of its pipe, once ``serve`` and
the workers, which hold it, are gone. The payload checks are imported once here, so a
worker starts with them.
"""

from __future__ import annotations

import remediator.ingest.payload  # noqa: F401 - imported once here, inherited by every worker
from remediator.core.orphans import children_die_with_me, die_with_parent

die_with_parent()
children_die_with_me()
