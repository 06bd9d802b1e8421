"""GUI sessions: bound to a browser id, in memory, idle expiry, bounded count."""

from __future__ import annotations

from swarmdeploy.gui.session import Operator, SessionStore

ADMIN = Operator("admin", "admin", "bootstrap admin key")
VIEWER = Operator("ops", "viewer", "key ops (1)")


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_signed_in_browser_gets_its_own_key_others_none() -> None:
    store = SessionStore(clock=Clock())
    store.sign_in("b1", "key-1", ADMIN)
    session = store.get("b1")
    assert session is not None and session.api_key == "key-1"
    assert store.get("b2") is None and store.get(None) is None


def test_idle_session_expires_but_use_keeps_it_alive() -> None:
    clock = Clock()
    store = SessionStore(idle_s=100, clock=clock)
    store.sign_in("b1", "k", ADMIN)
    clock.now = 90
    assert store.get("b1") is not None
    clock.now = 180
    assert store.get("b1") is not None  # used at 90: idle 90 s only
    clock.now = 281
    assert store.get("b1") is None


def test_sign_out_forgets_the_key() -> None:
    store = SessionStore(clock=Clock())
    store.sign_in("b1", "k", ADMIN)
    store.sign_out("b1")
    assert store.get("b1") is None and len(store) == 0


def test_store_is_bounded_dropping_the_least_recently_used() -> None:
    clock = Clock()
    store = SessionStore(max_sessions=2, clock=clock)
    store.sign_in("a", "k", ADMIN)
    clock.now = 1
    store.sign_in("b", "k", ADMIN)
    clock.now = 2
    assert store.get("a") is not None  # a is now more recent than b
    store.sign_in("c", "k", ADMIN)
    assert len(store) == 2 and store.get("b") is None and store.get("a") is not None


def test_roles_order_viewer_operator_admin() -> None:
    assert ADMIN.allows("operator") and ADMIN.allows("viewer")
    assert VIEWER.allows("viewer") and not VIEWER.allows("operator")
    assert not Operator("x", "nonsense", "x").allows("viewer")
