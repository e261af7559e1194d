from __future__ import annotations

import kopf

from workerfleet.operator import main


def test_no_handler_puts_a_finalizer_on_pools_or_monitors() -> None:
    registry = kopf.get_default_registry()
    spawning = [
        h for h in registry._spawning.get_all_handlers() if h.id in ("pool_tick", "monitor_tick")
    ]
    assert len(spawning) == 2
    assert not any(h.requires_finalizer for h in spawning)
    assert not any(h.requires_finalizer for h in registry._changing.get_all_handlers())
    assert main.configure is not None
