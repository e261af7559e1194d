"""`python -m localcluster.nodeagent --kubeconfig K --node-name N --state-dir S --log-dir L`
(see `localcluster.nodeagent.agent`)."""

from __future__ import annotations

import sys

from localcluster.nodeagent.agent import main

sys.exit(main())
