"""A hard cap on a run's spend, shared by every backend's client.

Before a request is sent it reserves its worst-case cost (its prompt and max_tokens at the
model's price); the reservation is settled to the actual cost when the answer comes, or
released when no answer does. Reservations count against the cap, so requests in flight
together never pass it (a request waiting in a batch file keeps its reservation until its
answer is taken). The first refusal closes the budget: nothing more is sent and the run is
told once (`on_exhausted`: it stops admitting seeds); a refused request's item is not done
(`NotSent`), and the run ends when the work in flight has."""

from __future__ import annotations

from typing import Callable


class Budget:
    def __init__(self, cap_usd: float, spent_usd: float = 0.0,
                 on_exhausted: Callable[[], None] | None = None) -> None:
        self.cap = cap_usd
        self.spent = spent_usd  # earlier sessions' spend included: the cap is the run's
        self.reserved = 0.0
        self.outstanding = 0  # reservations not yet settled or released
        self.closed = False
        self.refused = 0  # requests not sent once closed
        self.on_exhausted = on_exhausted

    def reserve(self, worst_case_usd: float) -> bool:
        """Room for a request that may cost `worst_case_usd`? If so it is reserved."""
        if not self.closed and self.spent + self.reserved + worst_case_usd <= self.cap:
            self.reserved += worst_case_usd
            self.outstanding += 1
            return True
        self.refused += 1
        if not self.closed:
            self.closed = True
            if self.on_exhausted is not None:
                self.on_exhausted()
        return False

    def settle(self, reserved_usd: float, actual_usd: float) -> None:
        """The request was answered and cost `actual_usd` (at most what it reserved)."""
        self.spent += actual_usd
        self.release(reserved_usd)

    def release(self, reserved_usd: float) -> None:
        """The request was not answered (failed, aborted, cancelled)."""
        self.reserved = max(0.0, self.reserved - reserved_usd)
        self.outstanding -= 1
        if self.outstanding == 0:
            self.reserved = 0.0  # no float dust left over

    def reached(self) -> str:
        """Why the run stopped, once closed."""
        return (f"the budget of ${self.cap:.4f} is reached: ${self.spent:.4f} spent; "
                f"{self.refused} request(s) not sent (each could cost more than the "
                f"${self.remaining:.4f} left); resume with a higher --budget-usd")

    @property
    def remaining(self) -> float:
        return max(0.0, self.cap - self.spent)

    def as_dict(self) -> dict[str, float | bool]:
        return {"cap_usd": self.cap, "spent_usd": round(self.spent, 6),
                "reserved_usd": round(self.reserved, 6), "reached": self.closed}
